"""Action chunks (LiberoEnv.step_chunk, chunk_size): same results as single steps, no renders in between."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from libero_gym.env import ACTION_DIM
from libero_gym.errors import InvalidInputError
from libero_gym.vector import make_vec

TASK = "LIBERO-Goal-Task0-v0"  # "open the middle drawer of the cabinet"
MIDDLE_DRAWER_QPOS = 38
"""qpos address of wooden_cabinet_1_middle_level in that scene (a slide joint, range [-0.16, 0.01] m)."""
DRAWER_OPEN = -0.15
"""Slide position (m) at which the task's Open goal holds."""


def _actions(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, ACTION_DIM)).astype(np.float32)


def _assert_obs_equal(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("obs_mode", ["state", "pixels"])
def test_chunk_equals_single_steps(obs_mode: str) -> None:
    env = gym.make(TASK, obs_mode=obs_mode, image_size=32)
    u = env.unwrapped
    try:
        actions = _actions(11)
        env.reset(seed=5)
        chunked = []
        for chunk in (actions[:8], actions[8:]):
            obs, reward, terminated, truncated, info = u.step_chunk(chunk)
            assert info["chunk_steps"] == len(chunk)
            chunked.append((obs, reward, terminated, truncated, u.get_sim_state()))
        assert u.elapsed_steps == 11

        env.reset(seed=5)
        single = []
        for action in actions:
            single.append((*env.step(action)[:4], u.get_sim_state()))
        for got, want in zip(chunked, (single[7], single[10])):
            _assert_obs_equal(got[0], want[0])
            assert got[1:4] == want[1:4]
            np.testing.assert_array_equal(got[4], want[4])
    finally:
        env.close()


def _drawer_open_state(u: gym.Env) -> np.ndarray:
    state = u.get_sim_state()
    state[1 + MIDDLE_DRAWER_QPOS] = DRAWER_OPEN  # flattened state: time, qpos, qvel
    return state


@pytest.mark.parametrize("obs_mode", ["state", "pixels"])
def test_chunk_stops_at_success(obs_mode: str) -> None:
    """Success on the first of 8 actions: one action runs, its observation is returned."""
    env = gym.make(TASK, obs_mode=obs_mode, image_size=32)
    u = env.unwrapped
    noop = np.tile(np.array([0, 0, 0, 0, 0, 0, -1.0], dtype=np.float32), (8, 1))
    try:
        env.reset(seed=2)
        env.step(noop[0])  # the first sample after a reset is a settle step's: use a later one
        start = _drawer_open_state(u)
        u.set_sim_state(start)
        assert u.check_success()
        obs, reward, terminated, truncated, info = u.step_chunk(noop)
        assert (info["chunk_steps"], reward, terminated, truncated, info["is_success"]) == (1, 1.0, True, False, True)
        state = u.get_sim_state()

        env.reset(seed=2)
        env.step(noop[0])
        u.set_sim_state(start)
        want, want_reward, want_terminated, *_ = env.step(noop[0])
        _assert_obs_equal(obs, want)
        assert (want_reward, want_terminated) == (1.0, True)
        np.testing.assert_array_equal(state, u.get_sim_state())
    finally:
        env.close()


def test_chunk_truncates_at_step_limit() -> None:
    env = gym.make(TASK, step_limit=10)
    u = env.unwrapped
    try:
        env.reset(seed=0)
        ran = []
        for _ in range(3):
            _, _, terminated, truncated, info = u.step_chunk(_actions(4))
            ran.append((info["chunk_steps"], terminated, truncated))
        assert ran == [(4, False, False), (4, False, False), (2, False, True)]
        assert u.elapsed_steps == 10
        env.reset(seed=0)
        assert u.elapsed_steps == 0
    finally:
        env.close()


def test_chunk_size_makes_chunks_the_action() -> None:
    env = gym.make(TASK, chunk_size=4, step_limit=6)
    try:
        assert env.action_space.shape == (4, ACTION_DIM)
        env.reset(seed=0)
        _, _, _, truncated, info = env.step(_actions(4))
        assert (info["chunk_steps"], truncated) == (4, False)
        _, _, _, truncated, info = env.step(_actions(4))
        assert (info["chunk_steps"], truncated) == (2, True)
        with pytest.raises(InvalidInputError):
            env.unwrapped.step_chunk(np.zeros((4, 6)))
        with pytest.raises(InvalidInputError):
            env.unwrapped.step_chunk(np.full((2, 7), np.nan))
    finally:
        env.close()


def test_vector_env_steps_chunks() -> None:
    """Async workers step (num_envs, Ta, 7) chunks; observations come back through shared memory."""
    envs = make_vec(TASK, num_envs=2, chunk_size=3)
    try:
        assert envs.action_space.shape == (2, 3, ACTION_DIM)
        envs.reset(seed=0)
        obs, reward, terminated, truncated, info = envs.step(np.stack([_actions(3, seed=1), _actions(3, seed=2)]))
        assert obs["proprio"].shape == (2, 39)
        np.testing.assert_array_equal(info["chunk_steps"], [3, 3])
        assert not np.any(terminated) and not np.any(truncated)
    finally:
        envs.close()


def test_pixels_render_only_returned_observations() -> None:
    """A reset renders the two cameras once (its observation); a chunk of 8 renders them once."""
    env = gym.make(TASK, obs_mode="pixels", image_size=32)
    u = env.unwrapped
    try:
        env.reset(seed=0)  # builds the simulator
        sim = u.sim
        render = sim.render
        calls = []

        def counting_render(*args: object, **kwargs: object) -> np.ndarray:
            calls.append(kwargs.get("camera_name"))
            return render(*args, **kwargs)

        sim.render = counting_render
        env.reset(seed=1)
        assert len(calls) == 2, calls
        calls.clear()
        u.step_chunk(_actions(8))
        assert len(calls) == 2, calls
        calls.clear()
        env.step(_actions(1)[0])
        assert len(calls) == 2, calls
    finally:
        env.close()
