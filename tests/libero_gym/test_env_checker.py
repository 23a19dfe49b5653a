"""Gymnasium's env checker on every registered id (ids come from the registry)."""

from __future__ import annotations

import gymnasium as gym
import pytest
from gymnasium.utils.env_checker import check_env

from libero_gym.registration import all_env_ids


@pytest.mark.filterwarnings("ignore::UserWarning")  # unbounded Box bounds of state observations
@pytest.mark.parametrize("env_id", all_env_ids())
def test_check_env(env_id: str) -> None:
    env = gym.make(env_id, obs_mode="state", max_episode_steps=20)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
