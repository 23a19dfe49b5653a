"""Vector envs: async workers step, autoreset, close cleanly, and agree with sync."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import libero_gym  # noqa: F401
from libero_gym.errors import InvalidInputError
from libero_gym.vector import make_vec


def _actions(n: int, num_envs: int) -> np.ndarray:
    return np.random.default_rng(0).uniform(-1, 1, (n, num_envs, 7)).astype(np.float32)


def test_async_two_workers_step_autoreset_close() -> None:
    envs = gym.make_vec("LIBERO-Goal-v0", num_envs=2, vectorization_mode="async", task_id=[0, 1],
                        max_episode_steps=5)
    try:
        obs, info = envs.reset(seed=[0, 1])
        assert obs["proprio"].shape == (2, 39) and obs["object"].shape[0] == 2
        truncations = 0
        for step, action in enumerate(_actions(7, 2)):
            obs, reward, terminated, truncated, info = envs.step(action)
            assert envs.observation_space.contains(obs)
            truncations += int(truncated.sum())
            if step == 4:
                assert truncated.all()  # the step limit ends both episodes together
            if step == 5:  # NEXT_STEP autoreset: this step only reset the sub-envs
                assert not truncated.any() and (reward == 0).all()
        assert truncations == 2
    finally:
        envs.close()
    assert envs.closed


def test_init_state_ids_are_dealt_round_robin() -> None:
    envs = make_vec("LIBERO-Goal-v0", 2, vectorization_mode="sync", init_state_ids=[0, 1, 2, 3, 4], settle_steps=0)
    try:
        _, info = envs.reset(seed=0)
        assert list(info["init_state_id"]) == [0, 1]
        _, info = envs.reset()
        assert list(info["init_state_id"]) == [2, 3]
        _, info = envs.reset()
        assert list(info["init_state_id"]) == [4, 1]  # worker 0 owns [0, 2, 4], worker 1 [1, 3]
    finally:
        envs.close()
    with pytest.raises(InvalidInputError, match="at least num_envs"):
        make_vec("LIBERO-Goal-v0", 3, vectorization_mode="sync", init_state_ids=[0, 1])


def test_sync_and_async_agree() -> None:
    kwargs = dict(num_envs=2, task_id=[2, 3], task_per_worker=True, max_episode_steps=8)
    sync = make_vec("LIBERO-Spatial-v0", vectorization_mode="sync", **kwargs)
    async_ = make_vec("LIBERO-Spatial-v0", vectorization_mode="async", **kwargs)
    try:
        a, info_a = sync.reset(seed=5)
        b, info_b = async_.reset(seed=5)
        np.testing.assert_array_equal(info_a["task_id"], [2, 3])
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
        for action in _actions(10, 2):
            a = sync.step(action)
            b = async_.step(action)
            for key in a[0]:
                np.testing.assert_array_equal(a[0][key], b[0][key])
            for x, y in zip(a[1:4], b[1:4]):
                np.testing.assert_array_equal(x, y)
    finally:
        sync.close()
        async_.close()


def test_make_vec_entry_point_and_errors() -> None:
    envs = gym.make_vec("LIBERO-Object-Task1-v0", num_envs=1)  # through the vector entry point
    try:
        obs, info = envs.reset(seed=0)
        assert obs["task_index"].tolist() == [1]
    finally:
        envs.close()
    with pytest.raises(InvalidInputError, match="num_envs"):
        make_vec("LIBERO-Goal-v0", num_envs=0)
    with pytest.raises(InvalidInputError, match="vectorization_mode must be one of"):
        make_vec("LIBERO-Goal-v0", num_envs=1, vectorization_mode="threads")
    with pytest.raises(InvalidInputError, match="libero-gym id"):
        make_vec("CartPole-v1", num_envs=1)
