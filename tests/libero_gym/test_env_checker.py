"""Every registered id (ids come from the registry): it builds, resets and steps within its spaces; Gymnasium's
env checker on one id per suite and scene family, and on every id in the slow run."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from libero_gym import suites
from libero_gym.registration import all_env_ids, suite_env_ids

FULL_CHECK_IDS = set(suite_env_ids()) | {
    next(task.env_id for task in suites.TASKS if task.scene_family == family)
    for family in sorted({task.scene_family for task in suites.TASKS})
}
"""Gymnasium's checker in the default run: each suite's id and the first task of each scene family. Its checks
(API, seeding, determinism) run the same env code for every id; what differs per id, the scene, is built and
stepped for every id by test_every_id_builds_resets_and_steps."""


@pytest.mark.filterwarnings("ignore::UserWarning")  # unbounded Box bounds of state observations
@pytest.mark.parametrize(
    "env_id", [pytest.param(env_id, marks=[] if env_id in FULL_CHECK_IDS else [pytest.mark.slow])
               for env_id in all_env_ids()],
)
def test_check_env(env_id: str) -> None:
    env = gym.make(env_id, obs_mode="state", max_episode_steps=20)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()


def _assert_equal(a: dict[str, Any], b: dict[str, Any]) -> None:
    assert a.keys() == b.keys()
    for key in a:
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)


@pytest.mark.parametrize("env_id", all_env_ids())
def test_every_id_builds_resets_and_steps(env_id: str) -> None:
    """The id's scene builds; a seeded reset is repeatable; reset and step observations lie in the spaces."""
    env = gym.make(env_id, obs_mode="state", max_episode_steps=20)
    try:
        obs, info = env.reset(seed=0)
        assert env.observation_space.contains(obs), env_id
        assert isinstance(info, dict)
        again, _ = env.reset(seed=0)
        _assert_equal(obs, again)
        obs, reward, terminated, truncated, info = env.step(np.zeros(env.action_space.shape, np.float32))
        assert env.observation_space.contains(obs), env_id
        assert np.isscalar(reward) and np.isfinite(reward)
        assert isinstance(terminated, bool | np.bool_) and isinstance(truncated, bool | np.bool_)
    finally:
        env.close()
