"""Every id is registered, cheaply, and a pickled spec re-creates the same env."""

from __future__ import annotations

import pickle
import subprocess
import sys

import gymnasium as gym
import numpy as np
import pytest

import libero_gym
from libero_gym.registration import all_env_ids, suite_env_ids, task_env_ids


def test_all_ids_registered() -> None:
    ids = all_env_ids()
    assert len(task_env_ids()) == 130
    assert set(suite_env_ids()) == {f"LIBERO-{n}-v0" for n in ("Spatial", "Object", "Goal", "10", "Long", "90")}
    for env_id in ids:
        assert env_id in gym.registry
    assert gym.spec("LIBERO-Long-v0").kwargs == gym.spec("LIBERO-10-v0").kwargs
    assert gym.spec("LIBERO-Goal-v0").max_episode_steps == libero_gym.MAX_EPISODE_STEPS["libero_goal"]
    assert gym.spec("LIBERO-90-Task89-v0").kwargs == {"suite": "libero_90", "task_id": 89}


def test_import_is_light() -> None:
    code = "import sys, libero_gym; print(any(m in sys.modules for m in ('mujoco', 'robosuite', 'libero', 'torch')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_make_is_lazy() -> None:
    env = gym.make("LIBERO-Goal-Task2-v0")
    assert env.unwrapped._libero_env is None  # nothing built before reset
    assert env.unwrapped.language_instruction == "put the wine bottle on top of the cabinet"
    env.close()


def test_pickled_spec_recreates_the_same_env() -> None:
    env = gym.make("LIBERO-Object-v0", task_id=4, max_episode_steps=30)
    spec = pickle.loads(pickle.dumps(env.spec))
    clone = gym.make(spec)
    try:
        assert clone.spec == env.spec
        assert clone.unwrapped.task == env.unwrapped.task
        obs_a, _ = env.reset(seed=7)
        obs_b, _ = clone.reset(seed=7)
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
    finally:
        env.close()
        clone.close()


@pytest.mark.parametrize(
    "env_id,kwargs,match",
    [
        ("LIBERO-Goal-Task99-v0", {}, "LIBERO-Goal-Task99"),
        ("LIBERO-Goal-v0", {"task_id": 10}, r"task_id for libero_goal must be an int in \[0, 9\]"),
        ("LIBERO-Goal-v0", {"obs_mode": "rgbd"}, r"obs_mode must be one of \['state', 'pixels', 'both'\]"),
        ("LIBERO-Goal-v0", {"reset_mode": "soft"}, r"reset_mode must be one of"),
        ("LIBERO-Goal-v0", {"image_size": 3}, r"image_size must be an int in \[16, 1024\]"),
        ("LIBERO-Goal-v0", {"render_mode": "rgb"}, r"render_mode must be one of"),
    ],
)
def test_bad_make_arguments(env_id: str, kwargs: dict, match: str) -> None:
    with pytest.raises((ValueError, gym.error.Error), match=match):
        gym.make(env_id, **kwargs)
