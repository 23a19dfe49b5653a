"""The fast physics path against raw LIBERO: identical simulator states, rewards and success flags."""

from __future__ import annotations

import os

import gymnasium as gym
import numpy as np
import pytest

from libero_gym import suites
from libero_gym.env import ACTION_DIM, SETTLE_ACTION
from tests.conftest import suites_where_default

STEPS = 200
"""Control steps per sequence (the fidelity check runs 200 random and 200 smooth actions per suite)."""


def _random_actions(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (STEPS, ACTION_DIM))


def _smooth_actions(seed: int) -> np.ndarray:
    """Slowly varying moves with gripper closes and opens, like a scripted policy's."""
    rng = np.random.default_rng(seed)
    t = np.arange(STEPS)[:, None] / 20.0
    phase = rng.uniform(0, 2 * np.pi, (1, 6))
    arm = 0.5 * np.sin(t * rng.uniform(0.5, 2.0, (1, 6)) + phase)
    gripper = np.where((np.arange(STEPS) // 40) % 2 == 0, -1.0, 1.0)[:, None]
    return np.concatenate([arm, gripper], axis=1)


@pytest.mark.parametrize("suite", suites_where_default("libero_spatial", "libero_90"))
def test_fast_physics_equals_raw_libero(suite: str) -> None:
    """Same init state and 200 actions (random, then smooth): bit-identical states and flags."""
    from libero_gym.libero_config import import_libero

    libero_pkg = import_libero()
    from libero.libero.envs.env_wrapper import ControlEnv

    task = suites.get_suite(suite)[2 % len(suites.get_suite(suite))]
    env = gym.make(task.env_id, physics="fast", max_episode_steps=10**6)
    raw = ControlEnv(
        bddl_file_name=os.path.join(libero_pkg.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file),
        has_renderer=False,
        has_offscreen_renderer=False,
        use_camera_obs=False,
    )
    u = env.unwrapped
    try:
        assert u._stepper is None  # built at reset
        for init_state_id, actions in ((4, _random_actions(0)), (9, _smooth_actions(1))):
            obs, _ = env.reset(seed=0, options={"init_state_id": init_state_id})
            assert u._stepper is not None and u._stepper.fast
            raw.reset()
            # The scene layout (fixture poses, outside the state) is copied, as in test_env.
            raw.sim.model.body_pos[:] = u.sim.model.body_pos
            raw.sim.model.body_quat[:] = u.sim.model.body_quat
            for robot in raw.env.robots:
                robot.gripper.current_action = np.zeros(robot.gripper.dof)
            raw_obs = raw.set_init_state(u.init_states()[init_state_id])
            for _ in range(u.settle_steps):
                raw_obs, *_ = raw.step(SETTLE_ACTION)
            np.testing.assert_array_equal(u.get_sim_state(), raw.get_sim_state())
            np.testing.assert_array_equal(obs["proprio"], u._observation(raw_obs)["proprio"])
            for action in actions:
                obs, reward, terminated, _, info = env.step(action.astype(np.float32))
                raw_obs, raw_reward, raw_done, _ = raw.step(action.astype(np.float32).astype(np.float64))
                np.testing.assert_array_equal(u.get_sim_state(), raw.get_sim_state())
                assert reward == raw_reward and terminated == bool(raw_done) == info["is_success"]
            mine = obs
            theirs = u._observation(raw_obs)
            for key in mine:
                np.testing.assert_array_equal(mine[key], theirs[key], err_msg=key)
    finally:
        env.close()
        raw.close()


def test_upstream_physics_is_selectable() -> None:
    """physics="upstream" steps through LIBERO's own step; both paths give the same states."""
    task = suites.get_suite("libero_spatial")[0]
    fast = gym.make(task.env_id, physics="fast")
    upstream = gym.make(task.env_id, physics="upstream")
    try:
        fast.reset(seed=3)
        upstream.reset(seed=3)
        for action in _random_actions(2)[:30].astype(np.float32):
            a = fast.step(action)
            b = upstream.step(action)
            assert a[1:4] == b[1:4]
            np.testing.assert_array_equal(fast.unwrapped.get_sim_state(), upstream.unwrapped.get_sim_state())
            np.testing.assert_array_equal(a[0]["object"], b[0]["object"])
        with pytest.raises(ValueError):
            gym.make(task.env_id, physics="turbo")
    finally:
        fast.close()
        upstream.close()
