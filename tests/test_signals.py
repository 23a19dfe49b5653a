"""SIGTERM (what Slurm and Kubernetes send before SIGKILL) stops a command as Ctrl-C does.

Real commands on real LIBERO, as subprocesses that lead their own process group: ``train`` (2 async
workers) gets SIGTERM on its whole process group, as Slurm sends it; ``collect`` gets it
on its main process only, as Kubernetes sends it. Each must exit 143 within 30 s with the
one line ``terminated`` on stderr and no traceback, leave no process behind, keep what
it finished (a checkpoint; the written episodes), and resume from it (the resume, which
needs no signal, runs in process through ``cli.main``).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import cli
from agents.checkpoint import read_meta
from libero_gym.data.collect import finished_summaries
from libero_gym.signals import EXIT_TERMINATED, Terminated, sigterm_raises
from tests.agents.conftest import SMALL_GAUSSIAN, agent_flags

REPO = Path(__file__).resolve().parents[1]
EXIT_WITHIN_S = 30
"""Slurm's default KillWait between SIGTERM and SIGKILL is 30 s (Kubernetes' grace period too)."""
PROGRESS_TIMEOUT_S = 300
"""Generous: worker start-up on a loaded 2-core machine."""
NOISE = re.compile(r"^\[robosuite WARNING\]")
"""robosuite's macro-file warnings at import: library noise, not the command's message."""


def _start(argv: list[str], cwd: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    return subprocess.Popen([sys.executable, str(REPO / "cli.py"), *argv], cwd=cwd, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _wait_for(proc: subprocess.Popen[str], ready: Callable[[], bool]) -> None:
    deadline = time.monotonic() + PROGRESS_TIMEOUT_S
    while not ready():
        if proc.poll() is not None:
            pytest.fail(f"exited {proc.returncode} before making progress: {proc.communicate()[1][-3000:]}")
        if time.monotonic() > deadline:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail(f"no progress after {PROGRESS_TIMEOUT_S} s")
        time.sleep(0.05)


def _live_group_members(pgid: int) -> list[str]:
    """Command lines of the processes of group ``pgid`` that still run (zombies, which an init
    that does not reap would keep, excluded)."""
    members = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...
            if int(fields[2]) == pgid and fields[0] != "Z":
                members.append((stat.parent / "cmdline").read_text().replace("\0", " ")[:120])
        except (OSError, IndexError, ValueError):  # exited meanwhile
            continue
    return members


def _terminate(proc: subprocess.Popen[str], whole_group: bool) -> tuple[str, str]:
    """SIGTERM it; assert exit 143 within EXIT_WITHIN_S, one line, nothing left running."""
    start = time.monotonic()
    if whole_group:
        os.killpg(proc.pid, signal.SIGTERM)
    else:
        proc.send_signal(signal.SIGTERM)
    try:
        out, err = proc.communicate(timeout=EXIT_WITHIN_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        pytest.fail(f"still running {EXIT_WITHIN_S} s after SIGTERM")
    seconds = time.monotonic() - start
    lines = [line for line in re.sub(r"\x1b\[[0-9;]*m", "", err).splitlines() if line.strip() and not NOISE.match(line)]
    assert proc.returncode == EXIT_TERMINATED, (proc.returncode, err[-3000:])
    assert "Traceback" not in err and lines == ["terminated"], err[-3000:]
    # Its workers, forkserver and resource tracker are in its process group: all gone soon after.
    deadline = time.monotonic() + 10
    while members := _live_group_members(proc.pid):
        assert time.monotonic() < deadline, f"processes of the command outlived it: {members}"
        time.sleep(0.1)
    print(f"exited {seconds:.1f} s after SIGTERM")
    return out, err


def test_sigterm_to_the_process_group_checkpoints_train_and_resume_continues(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = tmp_path / "run"
    common = ["train", *agent_flags("gaussian-ppo", SMALL_GAUSSIAN), "--env", "LIBERO-Goal-v0", "--task-id", "0",
              "--max-episode-steps", "40", "--num-envs", "2",
              "--no-progress", "--device", "cpu"]  # fmt: skip
    proc = _start([*common, "--vectorization", "async", "--total-timesteps", "100000", "--checkpoint-every", "64",
                   "--run-dir", str(run_dir)], tmp_path)
    checkpoints = run_dir / "checkpoints"
    _wait_for(proc, lambda: any(checkpoints.glob("step_*/agent.json")))
    saved_before = max(int(p.parent.name.split("_")[1]) for p in checkpoints.glob("step_*/agent.json"))

    _terminate(proc, whole_group=True)
    assert not (run_dir / "summary.json").exists()
    stopped_at = read_meta(run_dir)["num_timesteps"]  # the newest valid checkpoint: written at SIGTERM
    assert stopped_at >= saved_before and stopped_at > 0
    assert not (run_dir / ".lock").exists()

    total = stopped_at + 64  # one more rollout (2 envs x n_steps 32)
    # The resume needs no signal: the same command in this process (the SIGTERM above needed a real one).
    monkeypatch.chdir(tmp_path)
    code = cli.main([*common, "--vectorization", "sync", "--total-timesteps", str(total), "--resume", str(run_dir)])
    assert code == 0, capsys.readouterr().err[-3000:]
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["num_timesteps"] == total and summary["steps_this_run"] == total - stopped_at


def test_sigterm_to_collect_keeps_finished_episodes_and_resume_completes(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    out = tmp_path / "demos"
    argv = ["collect", "--policy", "scripted", "--env", "LIBERO-Goal-v0", "--task-id", "0", "--episodes", "6",
            "--keep", "all", "--max-episode-steps", "20", "--no-images", "--no-progress", "--num-workers", "1",
            "--out", str(out)]  # fmt: skip
    proc = _start(argv, tmp_path)
    _wait_for(proc, lambda: any((out / "episodes").glob("ep_*.json")))

    stdout, _ = _terminate(proc, whole_group=False)
    assert "collected" not in stdout and not list(out.glob("*_demo.hdf5"))  # no export of a partial collection
    kept = finished_summaries(out)  # only episodes whose files are complete and valid count
    assert 1 <= len(kept) < 6, sorted(kept)
    files = {p: p.read_bytes() for i in kept for p in (out / "episodes").glob(f"ep_{i:06d}.*")}

    # The resume needs no signal: the same command in this process.
    monkeypatch.chdir(tmp_path)
    code = cli.main([*argv, "--resume"])
    captured = capsys.readouterr()
    assert code == 0, captured.err[-3000:]
    assert "collected 6 episodes" in captured.out
    assert sorted(finished_summaries(out)) == list(range(6))
    assert all(path.read_bytes() == data for path, data in files.items()), "resume rewrote finished episodes"


def test_vector_env_workers_leave_signals_to_the_parent(capfd: pytest.CaptureFixture[str]) -> None:
    """Ctrl-C (SIGINT to the group) does not reach the workers; SIGTERM ends them silently; closing the
    env with dead workers and a step in flight neither raises nor restarts them."""
    import numpy as np

    from libero_gym.vector import make_vector_env

    envs = make_vector_env(2, suite="libero_goal", task_id=0, obs_mode="state", restart_dead_workers=True)
    try:
        envs.reset(seed=0)
        for process in envs.processes:
            os.kill(process.pid, signal.SIGINT)
        try:
            envs.step(np.zeros((2, 7), dtype=np.float32))  # both still answer
        except KeyboardInterrupt:  # the workers' own KeyboardInterrupt, propagated (not a real Ctrl-C)
            pytest.fail("SIGINT interrupted the workers instead of leaving Ctrl-C to the parent")
        assert all(p.is_alive() for p in envs.processes) and envs.num_restarts == 0
        envs.step_async(np.zeros((2, 7), dtype=np.float32))
        for process in envs.processes:
            os.kill(process.pid, signal.SIGTERM)
            process.join(10)
            assert process.exitcode == -signal.SIGTERM
    finally:
        start = time.monotonic()
        envs.close()
    assert time.monotonic() - start < 10 and envs.num_restarts == 0
    assert all(not p.is_alive() for p in envs.processes)
    assert "Traceback" not in capfd.readouterr().err


def test_sigterm_raises_terminated_once() -> None:
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated), sigterm_raises():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)
    assert isinstance(Terminated(), KeyboardInterrupt)
    with sigterm_raises():
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        except Terminated:
            os.kill(os.getpid(), signal.SIGTERM)  # during the cleanup: ignored
            time.sleep(0.1)
    assert signal.getsignal(signal.SIGTERM) == previous
