"""`cli.py stats`, `export` and `collect` from the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import cli
from libero_gym.data.stats import run_stats


def test_stats_compares_sources_and_writes_plots(collected, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (ours,) = collected.export.files
    other = tmp_path / "other"
    other.mkdir()
    (other / ours.name).write_bytes(ours.read_bytes())
    plots = tmp_path / "plots"
    metrics_json = tmp_path / "metrics.json"
    code = cli.main(["stats", str(ours), str(other / ours.name), "--plots", str(plots), "--json-out", str(metrics_json)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "open_the_middle_drawer_of_the_cabinet" in printed and "overall" in printed
    assert "action var @ norm. time" in printed
    pngs = sorted(p.name for p in plots.glob("*.png"))
    assert "metrics.png" in pngs and any(name.startswith("actions_") for name in pngs)
    assert all((plots / name).stat().st_size > 1000 for name in pngs)
    table = json.loads(metrics_json.read_text())
    row = table["overall"]
    assert set(row) == {collected.out.name, "other"}
    a, b = row[collected.out.name], row["other"]
    assert a == b  # same data, same numbers
    assert a["episodes"] == 3 and a["length"] == 30


def test_stats_table_matches_metrics(collected) -> None:
    from libero_gym.data import metrics as M
    from libero_gym.data.dataset import read_dataset

    (path,) = collected.export.files
    table = run_stats([str(path)], plots_dir=None)
    data = read_dataset(path, images=False)
    # Over the policy's steps: the recorded settle steps are left out.
    expected = M.summarize([e.actions[e.policy_steps] for e in data.episodes],
                           [e.obs["ee_pos"][e.policy_steps] for e in data.episodes],
                           [e.success for e in data.episodes])
    assert table["overall"][collected.out.name] == pytest.approx(expected, nan_ok=True)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["collect", "--out", "{tmp}/c", "--env", "LIBERO-Nope-v0"], "env must be a libero-gym id"),
        (["collect", "--out", "{tmp}/c", "--policy", "checkpoint"], "needs --checkpoint"),
        (["collect", "--out", "{tmp}/c", "--task-id", "99"], "task_id for libero_goal"),
        (["collect", "--out", "{tmp}/c", "--episodes", "0"], "episodes must be >= 1"),
        (["collect", "--out", "{tmp}/c", "--num-workers", "0"], "num_workers must be >= 1"),
        (["export", "{tmp}/nothing"], "no collected episodes"),
        (["stats", "{tmp}/missing.hdf5"], "no such file"),
    ],
)
def test_bad_input_is_one_line_exit_2(argv: list[str], message: str, tmp_path: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    args = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "c").exists(), "nothing written"


def test_resume_with_other_settings_is_refused(collected, capsys: pytest.CaptureFixture[str]) -> None:
    before = sorted(p.name for p in (collected.out / "episodes").iterdir())
    argv = ["collect", "--out", str(collected.out), "--policy", "random", "--task-id", "0", "--episodes", "3",
            "--keep", "all", "--image-size", "64", "--max-episode-steps", "30", "--seed", "8", "--resume"]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "other settings" in err[0] and "seed: 7 -> 8" in err[0]
    assert sorted(p.name for p in (collected.out / "episodes").iterdir()) == before
