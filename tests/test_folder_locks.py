"""Commands lock the folder they write: a second writer exits 2 at once and touches nothing.

Two real ``collect`` commands on one ``--out`` (real LIBERO, scripted expert), and each
writing command (``collect``, ``export``, ``train``, ``pretrain``) against a folder whose
lock another process holds.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path

import h5py
import pytest

from agents.configs import PretrainConfig, TrainConfig
from agents.pretrain import pretrain
from agents.train import train
from libero_gym.data.commands import CollectConfig, ExportConfig, collect, export
from libero_gym.locking import FolderInUseError
from tests.libero_gym.test_locking import hold_lock

REPO = Path(__file__).resolve().parents[1]
NOISE = re.compile(r"^\[robosuite WARNING\]")
"""robosuite's macro-file warnings at import: library noise, not the command's message."""


def _lines(stderr: str) -> list[str]:
    plain = re.sub(r"\x1b\[[0-9;]*m", "", stderr)
    return [line for line in plain.splitlines() if line.strip() and not NOISE.match(line)]


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def test_two_collects_on_one_folder(tmp_path: Path) -> None:
    """Started at once on the same --out: one collects, the other exits 2 naming the folder and the
    first one's PID; the folder ends with exactly the first run's episodes."""
    out = tmp_path / "demos"
    argv = [sys.executable, str(REPO / "cli.py"), "collect", "--policy", "scripted", "--env", "LIBERO-Goal-v0",
            "--task-id", "0", "--episodes", "3", "--keep", "all", "--max-episode-steps", "20", "--no-images",
            "--no-progress", "--out", str(out)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    procs = [subprocess.Popen(argv, cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    results = [proc.communicate(timeout=600) for proc in procs]
    codes = sorted(proc.returncode for proc in procs)
    assert codes == [0, 2], [(proc.returncode, err[-2000:]) for proc, (_, err) in zip(procs, results, strict=True)]
    winner, loser = (0, 1) if procs[0].returncode == 0 else (1, 0)
    lines = _lines(results[loser][1])
    assert len(lines) == 1 and lines[0].startswith("error:"), lines
    assert str(out) in lines[0] and f"PID {procs[winner].pid}" in lines[0], lines[0]
    assert "collected 3 episodes" in results[winner][0] and "collected" not in results[loser][0]

    shards = sorted(p.name for p in (out / "episodes").glob("ep_*.hdf5"))
    assert shards == ["ep_000000.hdf5", "ep_000001.hdf5", "ep_000002.hdf5"]
    (exported,) = out.glob("*_demo.hdf5")
    with h5py.File(exported, "r") as handle:
        assert sorted(handle["data"].keys()) == ["demo_0", "demo_1", "demo_2"]
    assert not (out / ".lock").exists()


@pytest.mark.parametrize("command", ["collect", "export", "train", "train-resume", "pretrain"])
def test_commands_refuse_a_locked_folder(tmp_path: Path, command: str) -> None:
    """Each writing command fails with FolderInUseError before it reads or writes the folder
    (a pretrain with a missing dataset shows that the lock comes before the inputs are read)."""
    folder = tmp_path / "out"
    run = {
        "collect": lambda: collect(CollectConfig(out=str(folder), episodes=1, images=False, progress=False)),
        "export": lambda: export(ExportConfig(collection=str(tmp_path / "collection"), out=str(folder))),
        "train": lambda: train(TrainConfig(run_dir=folder, total_timesteps=64, progress=False)),
        "train-resume": lambda: train(TrainConfig(resume=folder, total_timesteps=64, progress=False)),
        "pretrain": lambda: pretrain(PretrainConfig(dataset=(tmp_path / "missing.hdf5",), run_dir=folder)),
    }[command]
    (tmp_path / "collection").mkdir()
    with hold_lock(folder) as holder:
        (folder / "checkpoints").mkdir()
        (folder / "checkpoints" / "note.txt").write_text("the first run's")
        before = _snapshot(folder)
        start = time.monotonic()
        with pytest.raises(FolderInUseError, match=f"PID {holder.pid}"):
            run()
        assert time.monotonic() - start < 30, "the command did work before it checked the lock"
        assert _snapshot(folder) == before


@pytest.mark.timeout(120)  # past this, the command started real work instead of refusing
def test_train_cli_on_a_locked_run_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI (``cli.main``, what ``python cli.py`` runs): one `error:` line naming the folder and the holder's
    PID, exit 2."""
    import cli

    run_dir = tmp_path / "run"
    argv = ["train", "--agent", "gaussian-ppo", "--resume", str(run_dir), "--no-progress"]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("COLUMNS", "200")
    with hold_lock(run_dir) as holder:
        code = cli.main(argv)
    lines = _lines(capsys.readouterr().err)
    assert code == 2 and len(lines) == 1, (code, lines)
    assert lines[0] == (f"error: run folder '{run_dir}' is in use by another process (PID {holder.pid}); "
                        "wait for it to end or choose another folder")
