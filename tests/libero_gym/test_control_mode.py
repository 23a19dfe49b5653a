"""``control_mode="absolute"``: end-effector pose targets on the real simulator, and where the mode is recorded."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import libero_gym  # noqa: F401
from libero_gym import control, suites
from libero_gym.data.libero_metadata import env_args_for
from libero_gym.errors import InvalidInputError

TASK = "LIBERO-Goal-Task0-v0"


def _ee_pose(env: gym.Env) -> tuple[np.ndarray, np.ndarray]:
    u = env.unwrapped
    site = u.sim.model.site_name2id(u.libero_env.env.robots[0].controller.eef_name)
    return np.array(u.sim.data.site_xpos[site]), np.array(u.sim.data.site_xmat[site]).reshape(3, 3)


def test_absolute_targets_hold_and_move_the_end_effector() -> None:
    env = gym.make(TASK, control_mode="absolute")
    try:
        assert env.action_space.shape == (7,)
        assert env.action_space.high[:3].tolist() == [control.POSITION_LIMIT] * 3
        env.reset(seed=0)
        start, start_rot = _ee_pose(env)
        hold = control.hold_action(env.unwrapped.libero_env.env)
        np.testing.assert_allclose(hold[:3], start)
        for _ in range(10):
            env.step(hold)
        assert np.linalg.norm(_ee_pose(env)[0] - start) < 0.005  # a fixed target holds the pose
        target = hold.copy()
        target[2] += 0.08  # 8 cm up, same orientation: in delta mode 1.6 steps of full action
        for _ in range(40):
            env.step(target)
        position, rotation = _ee_pose(env)
        np.testing.assert_allclose(position, target[:3], atol=0.01)
        angle = np.arccos(np.clip((np.trace(rotation.T @ start_rot) - 1) / 2, -1, 1))
        assert angle < np.deg2rad(3)
        assert env.unwrapped.libero_env.env.robots[0].controller.use_delta is False
    finally:
        env.close()


def test_absolute_mode_same_states_in_fast_and_upstream_physics() -> None:
    envs = [gym.make(TASK, control_mode="absolute", physics=p) for p in ("fast", "upstream")]
    try:
        for env in envs:
            env.reset(seed=4)
        np.testing.assert_array_equal(envs[0].unwrapped.get_sim_state(), envs[1].unwrapped.get_sim_state())
        hold = control.hold_action(envs[0].unwrapped.libero_env.env)
        offsets = np.random.default_rng(0).uniform(-0.05, 0.05, (15, 3))
        for offset in offsets:
            action = hold.copy()
            action[:3] += offset
            action[6] = np.sign(offset[0])
            for env in envs:
                env.step(action)
            np.testing.assert_array_equal(envs[0].unwrapped.get_sim_state(), envs[1].unwrapped.get_sim_state())
    finally:
        for env in envs:
            env.close()


def test_control_mode_is_recorded_for_exports() -> None:
    env = gym.make(TASK, control_mode="absolute")
    default = gym.make(TASK)
    try:
        assert env.spec.kwargs["control_mode"] == "absolute"
        assert env.unwrapped.metadata["control_mode"] == "absolute"
        assert default.unwrapped.metadata["control_mode"] == "delta"
        assert type(default.unwrapped).metadata.get("control_mode") is None  # the class's own dict is untouched
    finally:
        env.close()
        default.close()
    task = suites.get_task("libero_goal", 0)
    mode = "absolute"
    assert env_args_for(task, 0, control_mode=mode)["env_kwargs"]["controller_configs"]["control_delta"] is False
    assert env_args_for(task, 0)["env_kwargs"]["controller_configs"]["control_delta"] is True


def test_bad_control_mode() -> None:
    with pytest.raises(InvalidInputError, match=r"control_mode must be one of \['delta', 'absolute'\], got 'abs'"):
        gym.make(TASK, control_mode="abs")
