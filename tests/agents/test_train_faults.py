"""Training survives faults, on real LIBERO: a SIGKILLed async worker, a SIGKILLed `train` command.

Small runs: LIBERO-Goal task 0, state observations, 40-step episodes, a few hundred env steps.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

import agents.train
import cli
from agents.checkpoint import read_meta
from agents.configs import TrainConfig
from agents.train import train
from tests.agents.conftest import SMALL_DIFFUSION, SMALL_GAUSSIAN, agent_config, agent_flags

REPO = Path(__file__).resolve().parents[2]


def _csv_rows(run_dir: Path) -> list[dict[str, str]]:
    rows: list[dict[str, str]] = []
    for path in sorted((run_dir / "logs").glob("progress*.csv")):
        with open(path) as handle:
            rows += list(csv.DictReader(handle))
    return rows


def test_train_survives_a_killed_worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """diffusion-ppo on 2 async chunk-env workers; worker 0 is SIGKILLed before the 3rd chunk step.

    The run completes its planned steps, the cut episode is dropped (not in the episode stats),
    and the summary, the logs and the printed summary show it.
    """
    make_env = agents.train.make_env
    killed: list[int] = []
    steps = [0]  # vector steps so far

    def make_env_that_kills(*args: Any, **kwargs: Any) -> Any:
        vec_env = make_env(*args, **kwargs)
        step_async = vec_env.step_async

        def step_async_killing(actions: Any) -> None:
            if not killed and steps[0] == 2:
                pid = vec_env.vec_env.processes[0].pid  # SB3VecEnv -> ResilientAsyncVectorEnv -> worker 0
                os.kill(pid, signal.SIGKILL)
                killed.append(pid)
            steps[0] += 1
            step_async(actions)

        vec_env.step_async = step_async_killing
        return vec_env

    monkeypatch.setattr(agents.train, "make_env", make_env_that_kills)
    run_dir = tmp_path / "run"
    config = TrainConfig(
        agent=agent_config("diffusion-ppo", SMALL_DIFFUSION), env="LIBERO-Goal-v0", task_id=(0,), max_episode_steps=40, num_envs=2,
        vectorization="async", total_timesteps=128, run_dir=run_dir, checkpoint_every=64,
        progress=False, device="cpu",
    )  # fmt: skip
    result = train(config)
    assert killed
    assert result.num_timesteps >= 128 and read_meta(run_dir)["num_timesteps"] == result.num_timesteps
    assert result.dropped_episodes >= 1 and result.worker_restarts >= 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["dropped_episodes"] >= 1 and summary["worker_restarts"] >= 1
    rows = _csv_rows(run_dir)
    logged = [float(row["rollout/dropped_episodes"]) for row in rows if row.get("rollout/dropped_episodes")]
    assert logged and max(logged) >= 1
    assert result.ep_len_mean in (None, 40.0)  # whole (truncated) episodes only: no cut one in the mean
    agents.train.print_summary(result)


def test_killed_train_command_resumes(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`cli.py train --resume RUN_DIR` is SIGKILLed after its first checkpoint; the same command
    run again finishes the planned steps from that checkpoint, with a readable log."""
    run_dir = tmp_path / "run"
    total = 256  # 4 rollouts of 2 envs x n_steps 32: killed after the first checkpoint (64), three more to resume
    argv = [
        sys.executable, str(REPO / "cli.py"), "train", *agent_flags("gaussian-ppo", SMALL_GAUSSIAN), "--env", "LIBERO-Goal-v0",
        "--task-id", "0", "--max-episode-steps", "40", "--num-envs", "2", "--vectorization", "sync",
        "--total-timesteps", str(total), "--checkpoint-every", "64",
        "--no-progress", "--device", "cpu", "--resume", str(run_dir),
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    first = subprocess.Popen(argv, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while not list((run_dir / "checkpoints").glob("step_*/agent.json")):
        assert first.poll() is None, first.communicate()[0].decode()
        assert time.monotonic() < deadline, "no checkpoint after 300 s"
        time.sleep(0.05)
    first.send_signal(signal.SIGKILL)
    first.communicate()
    assert first.returncode == -signal.SIGKILL
    assert not (run_dir / "summary.json").exists()  # killed mid-run, not after it
    killed_at = read_meta(run_dir)["num_timesteps"]
    assert 0 < killed_at < total

    # The same command again; it needs no process of its own (the kill above did), so it runs in this one.
    monkeypatch.chdir(tmp_path)
    code = cli.main(argv[2:])
    second = capsys.readouterr()
    assert code == 0, second.out + second.err
    assert f"trained gaussian-ppo on LIBERO-Goal-v0 (state): {total} env steps" in second.out
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_timesteps"] == total and summary["steps_this_run"] == total - killed_at
    assert read_meta(run_dir)["num_timesteps"] == total
    logs = run_dir / "logs"
    assert (logs / "progress.csv").exists() and (logs / f"progress-resumed-{killed_at:012d}.csv").exists()
    steps = [int(float(row["time/total_timesteps"])) for row in _csv_rows(run_dir) if row.get("time/total_timesteps")]
    assert max(steps) == total and all(s <= total for s in steps)


def test_progress_bar_shows_dropped_episodes() -> None:
    from types import SimpleNamespace

    from agents.train import _stats_text

    model = SimpleNamespace(ep_success_buffer=[1.0, 0.0], ep_info_buffer=[{"l": 40}, {"l": 20}])
    assert _stats_text(model, SimpleNamespace(dropped_episodes=2)) == "success 50% ep_len 30 dropped 2"
    assert _stats_text(model, SimpleNamespace(dropped_episodes=0)) == "success 50% ep_len 30"
