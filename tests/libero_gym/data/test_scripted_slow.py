"""Slow: the scripted expert through `cli.py collect` until 2 successes, 128 px images, then replay."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import cli
import libero_gym  # noqa: F401
from libero_gym.data.dataset import read_dataset, validate_dataset
from libero_gym.data.replay import replay_episode


@pytest.mark.slow
def test_scripted_collection_until_successes(tmp_path: Path) -> None:
    out = tmp_path / "goal0"
    code = cli.main(["collect", "--policy", "scripted", "--env", "LIBERO-Goal-v0", "--task-id", "0",
                     "--episodes", "2", "--until-successes", "--keep", "success", "--num-workers", "2",
                     "--image-size", "128", "--out", str(out), "--no-progress"])
    assert code == 0
    (path,) = out.glob("*_demo.hdf5")
    validate_dataset(path)
    data = read_dataset(path)
    assert len(data.episodes) == 2 and all(e.success for e in data.episodes)
    assert data.episodes[0].obs["agentview_rgb"].shape[1:] == (128, 128, 3)
    assert data.provenance["agent"] == "scripted"
    env = gym.make("LIBERO-Goal-v0", task_id=0)
    try:
        for episode in data.episodes:
            result = replay_episode(env, episode)
            np.testing.assert_array_equal(result.states, episode.states)
            assert result.success
    finally:
        env.close()
