"""EnvConfig, the one env description, and the one env-id lookup (registration.resolve_env)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from libero_gym.env_config import EnvConfig
from libero_gym.errors import InvalidInputError
from libero_gym.registration import lookup_env, resolve_env, suite_env_id


def test_json_round_trip_and_old_checkpoints() -> None:
    config = EnvConfig.resolve("LIBERO-Goal-v0", (3, 1), obs_mode="pixels", image_size=64, max_episode_steps=50,
                               chunk_size=4)  # fmt: skip
    assert EnvConfig.from_json(json.loads(json.dumps(config.to_json()))) == config
    # agent.json's "env" as EnvInfo wrote it (before chunk envs: no chunk_size)
    old = {"env_id": "LIBERO-Goal-v0", "task_ids": [0], "obs_mode": "state", "image_size": None, "max_episode_steps": None}
    assert EnvConfig.from_json(old) == EnvConfig("LIBERO-Goal-v0", (0,), "state")


def test_lookup_once() -> None:
    assert lookup_env("LIBERO-Goal-v0") == ("libero_goal", None)
    assert lookup_env("LIBERO-Long-v0") == ("libero_10", None)  # an alias
    assert lookup_env("LIBERO-Goal-Task3-v0") == ("libero_goal", 3)
    assert resolve_env("LIBERO-Goal-Task3-v0", (0,)) == ("libero_goal", (3,))
    assert resolve_env("LIBERO-Goal-v0", (2, 5)) == ("libero_goal", (2, 5))
    assert suite_env_id("libero_goal") == "LIBERO-Goal-v0"
    with pytest.raises(InvalidInputError, match="env must be a libero-gym id"):
        lookup_env("LIBERO-Nope-v0")
    with pytest.raises(InvalidInputError, match="single-task id"):
        resolve_env("LIBERO-Goal-Task3-v0", (5,))
    assert resolve_env("LIBERO-Goal-Task3-v0", (5,), strict=False) == ("libero_goal", (3,))
    with pytest.raises(InvalidInputError, match=r"task_id for libero_goal must be an int in \[0, 9\]"):
        resolve_env("LIBERO-Goal-v0", (10,))
    with pytest.raises(InvalidInputError, match="at least one"):
        resolve_env("LIBERO-Goal-v0", ())


def test_make_and_make_vec_use_the_description() -> None:
    config = EnvConfig.resolve("LIBERO-Goal-v0", (2,), max_episode_steps=12, chunk_size=4)
    env = config.make()
    try:
        assert env.action_space.shape == (4, 7) and env.unwrapped.step_limit == 12
        assert env.unwrapped.task.index == 2
    finally:
        env.close()
    single = EnvConfig.resolve("LIBERO-Goal-Task3-v0")
    assert single.single_task and "task_id" not in single.gym_kwargs() and single.suite == "libero_goal"
    vec = EnvConfig("LIBERO-Goal-v0", (0,), max_episode_steps=5).make_vec(2, "sync")
    try:
        observation_space, action_space = EnvConfig("LIBERO-Goal-v0", (0,)).spaces()
        assert vec.single_action_space == action_space and vec.num_envs == 2
        assert np.all(vec.single_action_space.high == 1.0)
    finally:
        vec.close()
