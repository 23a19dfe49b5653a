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
from tests.libero_gym.data.conftest import ENV_ID, SETTLE_STEPS, TASK_ID

STEPS = 20


def test_dead_or_failing_workers_are_replaced_and_their_episodes_dropped(tmp_path: Path) -> None:
    out = tmp_path / "collection"
    plan = CollectPlan(
        env_id=ENV_ID, task_ids=(TASK_ID,), out_dir=str(out),
        policy=PolicySpec("tests.libero_gym.data.crash_policy:CrashOncePolicy", checkpoint=str(tmp_path)),
        episodes=3, until_successes=False, keep="all", image_size=64, images=False, max_episode_steps=STEPS,
        seed=3, max_episodes=3, provenance={},
    )
    result = run_collection(plan, num_workers=2, progress=False)
    assert (tmp_path / "crashed").exists() and (tmp_path / "raised").exists(), "both faults were injected"
    assert result.dropped == 2  # one SIGKILL, one exception: each episode dropped, then redone
    assert result.skipped == []
    assert result.kept == [0, 1, 2]
    assert sorted(finished_summaries(out)) == [0, 1, 2]
    assert not list((out / "episodes").glob(".*tmp*"))
    env = gym.make(ENV_ID, task_id=TASK_ID, max_episode_steps=STEPS)
    try:
        for index in result.kept:
            validate_dataset(shard_path(out, index), require_images=False)
            (episode,) = read_dataset(shard_path(out, index)).episodes
            assert episode.num_samples == SETTLE_STEPS + STEPS
            np.testing.assert_array_equal(replay_episode(env, episode).states, episode.states)
    finally:
        env.close()


def test_sigkilled_collect_resumes_to_exactly_n(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys
    import time

    import cli

    repo = Path(__file__).resolve().parents[3]
    out = tmp_path / "collection"
    args = ["collect", "--policy", "random", "--env", ENV_ID, "--task-id", str(TASK_ID), "--episodes", "3",
            "--keep", "all", "--no-images", "--max-episode-steps", str(STEPS), "--num-workers", "1",
            "--out", str(out), "--no-progress", "--seed", "11"]
    proc = subprocess.Popen([sys.executable, str(repo / "cli.py"), *args], env={**os.environ, "PYTHONPATH": str(repo)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None and not (out / "episodes" / "ep_000000.json").exists():
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    before = finished_summaries(out)
    assert 1 <= len(before) < 3, "killed after the first episode, before the last"
    assert cli.main([*args, "--resume"]) == 0
    after = finished_summaries(out)
    assert sorted(after) == [0, 1, 2]
    assert [after[i]["seed"] for i in range(3)] == [11, 12, 13]
    for index in before:  # finished episodes were kept, not redone
        assert after[index] == before[index]
    (exported,) = out.glob("*_demo.hdf5")
    data = read_dataset(exported, images=False)
    assert [e.attrs["episode_index"] for e in data.episodes] == [0, 1, 2]
