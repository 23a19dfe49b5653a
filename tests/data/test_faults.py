"""Fault injection: a collection worker killed mid-episode is replaced, its episode dropped and redone."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

import libero_gym  # noqa: F401
from libero_gym.data.collect import CollectPlan, finished_summaries, run_collection, shard_path
from libero_gym.data.dataset import read_dataset, validate_dataset
from libero_gym.data.policies import PolicySpec
from libero_gym.data.replay import replay_episode
from tests.data.conftest import ENV_ID, TASK_ID

STEPS = 20


def test_sigkilled_worker_is_replaced_and_its_episode_dropped(tmp_path: Path) -> None:
    out = tmp_path / "collection"
    plan = CollectPlan(
        env_id=ENV_ID, task_ids=(TASK_ID,), out_dir=str(out),
        policy=PolicySpec("tests.data.crash_policy:CrashOncePolicy", checkpoint=str(tmp_path)),
        episodes=3, until_successes=False, keep="all", image_size=64, images=False, max_episode_steps=STEPS,
        seed=3, max_episodes=3, provenance={},
    )
    result = run_collection(plan, num_workers=2, progress=False)
    assert (tmp_path / "crashed").exists(), "the fault was injected"
    assert result.dropped == 1
    assert result.skipped == []
    assert result.kept == [0, 1, 2]
    assert sorted(finished_summaries(out)) == [0, 1, 2]
    assert not list((out / "episodes").glob(".*tmp*"))
    env = gym.make(ENV_ID, task_id=TASK_ID, max_episode_steps=STEPS)
    try:
        for index in result.kept:
            validate_dataset(shard_path(out, index), require_images=False)
            (episode,) = read_dataset(shard_path(out, index)).episodes
            assert episode.num_samples == STEPS
            np.testing.assert_array_equal(replay_episode(env, episode).states, episode.states)
    finally:
        env.close()
