"""Atomic writes and clear errors for files that are not valid LIBERO datasets."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from libero_gym import suites
from libero_gym.data import dataset as ds
from libero_gym.data.collect import shard_path, summary_path
from libero_gym.data.export import export_collection
from libero_gym.errors import DatasetError

REPO = Path(__file__).resolve().parents[3]
TASK = suites.get_task("libero_goal", 0)


def _episode(rng: np.random.Generator, steps: int, size: int, state_dim: int = 79) -> ds.Episode:
    pos = rng.normal(size=(steps, 3))
    return ds.Episode(
        actions=rng.uniform(-1, 1, (steps, 7)),
        states=rng.normal(size=(steps, state_dim)),
        robot_states=rng.normal(size=(steps, 9)),
        rewards=np.zeros(steps, np.uint8),
        dones=np.eye(1, steps, steps - 1, dtype=np.uint8)[0],
        obs={
            "agentview_rgb": rng.integers(0, 255, (steps, size, size, 3), dtype=np.uint8),
            "eye_in_hand_rgb": rng.integers(0, 255, (steps, size, size, 3), dtype=np.uint8),
            "gripper_states": rng.normal(size=(steps, 2)),
            "joint_states": rng.normal(size=(steps, 7)),
            "ee_states": np.hstack([pos, rng.normal(size=(steps, 3))]),
            "ee_pos": pos,
            "ee_ori": rng.normal(size=(steps, 3)),
        },
        init_state=np.zeros(state_dim),
        model_file="<mujoco/>",
        attrs={"success": True, "init_state_id": 0, "seed": 0, "episode_index": 0},
    )


def _synthetic_collection(folder: Path, episodes: int, steps: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for index in range(episodes):
        ds.write_dataset(shard_path(folder, index), [_episode(rng, steps, size)], TASK)
        ds.write_json_atomic(
            summary_path(folder, index),
            {"index": index, "seed": index, "task_id": 0, "suite": "libero_goal", "init_state_id": 0,
             "success": True, "length": steps, "kept": True, "images": True},
        )


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_sigkill_during_export_leaves_previous_file_intact(tmp_path: Path) -> None:
    collection = tmp_path / "collection"
    _synthetic_collection(collection, episodes=6, steps=200, size=96)  # ~66 MB of images to export
    (good,) = export_collection(collection).files
    before = _sha(good)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, str(REPO / "cli.py"), "export", str(collection)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    killed_mid_write = False
    while time.monotonic() < deadline and proc.poll() is None:
        temporaries = list(collection.glob(f".{good.name}.tmp-*"))
        if temporaries and temporaries[0].stat().st_size > 1_000_000:
            proc.send_signal(signal.SIGKILL)
            killed_mid_write = True
            break
        time.sleep(0.001)
    proc.wait(timeout=30)
    assert killed_mid_write, "export finished before it could be killed mid-write; make the data larger"
    assert proc.returncode == -signal.SIGKILL
    assert _sha(good) == before, "the previous file changed"
    ds.validate_dataset(good)
    assert len(ds.read_dataset(good, images=False).episodes) == 6
    assert ds.remove_stale_temporaries(collection) >= 1  # the killed writer's temporary, cleaned up


def test_failed_write_leaves_no_file(tmp_path: Path) -> None:
    def broken():
        yield _episode(np.random.default_rng(0), 5, 16)
        raise RuntimeError("disk on fire")

    target = tmp_path / "x_demo.hdf5"
    with pytest.raises(RuntimeError):
        ds.write_dataset(target, broken(), TASK)
    assert list(tmp_path.iterdir()) == []


@pytest.fixture()
def good_file(tmp_path: Path) -> Path:
    rng = np.random.default_rng(1)
    return ds.write_dataset(tmp_path / "good_demo.hdf5", [_episode(rng, 20, 16), _episode(rng, 25, 16)], TASK)


def test_valid_file_reads(good_file: Path) -> None:
    ds.validate_dataset(good_file)
    data = ds.read_dataset(good_file)
    assert [e.num_samples for e in data.episodes] == [20, 25]
    assert data.task == TASK


def test_truncated_file_is_a_dataset_error(good_file: Path, tmp_path: Path) -> None:
    truncated = tmp_path / "truncated_demo.hdf5"
    shutil.copy(good_file, truncated)
    with open(truncated, "r+b") as handle:
        handle.truncate(truncated.stat().st_size // 2)
    with pytest.raises(DatasetError, match="truncated|corrupt"):
        ds.validate_dataset(truncated)
    with pytest.raises(DatasetError):
        ds.read_dataset(truncated)


def test_foreign_hdf5_is_a_dataset_error(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign.hdf5"
    with h5py.File(foreign, "w") as file:
        file.create_dataset("images", data=np.zeros((3, 4)))
    with pytest.raises(DatasetError, match="not a LIBERO dataset"):
        ds.read_dataset(foreign)


def test_non_hdf5_is_a_dataset_error(tmp_path: Path) -> None:
    text = tmp_path / "notes_demo.hdf5"
    text.write_text("not hdf5 at all")
    with pytest.raises(DatasetError, match="not an HDF5 file"):
        ds.validate_dataset(text)
    with pytest.raises(DatasetError, match="no such file"):
        ds.read_dataset(tmp_path / "missing.hdf5")


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda f: f.__delitem__("data/demo_1/obs/ee_pos"), "lacks"),
        (lambda f: f.__delitem__("data/demo_0/actions"), "lacks"),
        (lambda f: f["data"].attrs.__delitem__("problem_info"), "lacks attributes"),
        (lambda f: f["data/demo_0"].attrs.__delitem__("init_state"), "lacks attributes"),
        (lambda f: f["data"].attrs.__setitem__("num_demos", 5), "num_demos"),
        (lambda f: f["data"].attrs.__setitem__("total", 1), "total"),
        (lambda f: (f.__delitem__("data/demo_0/rewards"),
                    f.create_dataset("data/demo_0/rewards", data=np.zeros(20))), "dtype"),
        (lambda f: (f.__delitem__("data/demo_0/rewards"),
                    f.create_dataset("data/demo_0/rewards", data=np.zeros(19, np.uint8))), "shape"),
        (lambda f: f["data/demo_0"].attrs.__setitem__("settle_steps", 20), "settle_steps"),
        (lambda f: f["data/demo_0"].attrs.__setitem__("settle_steps", -1), "settle_steps"),
    ],
)
def test_layout_defects_are_named(good_file: Path, edit, message: str) -> None:
    with h5py.File(good_file, "r+") as file:
        edit(file)
    with pytest.raises(DatasetError, match=message):
        ds.validate_dataset(good_file)


def test_cli_reports_bad_dataset_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import cli

    text = tmp_path / "bad.hdf5"
    text.write_text("nope")
    assert cli.main(["stats", str(text), "--plots", ""]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not an HDF5 file" in err[0]


def test_reads_a_file_written_like_libero_human_datasets(tmp_path: Path) -> None:
    """LIBERO's released files: no bddl_file_content, no provenance, no success flag, robomimic env_args."""
    rng = np.random.default_rng(2)
    path = tmp_path / "open_the_middle_drawer_of_the_cabinet_demo.hdf5"
    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        data.attrs["env_name"] = "Libero_Tabletop_Manipulation"
        data.attrs["env_args"] = '{"type": 1, "env_name": "Libero_Tabletop_Manipulation", "env_kwargs": {}}'
        data.attrs["problem_info"] = (
            '{"problem_name": "libero_tabletop_manipulation", "domain_name": "robosuite", '
            '"language_instruction": "open the middle drawer of the cabinet"}'
        )
        data.attrs["bddl_file_name"] = "chiliocosm/bddl_files/libero_goal/open_the_middle_drawer_of_the_cabinet.bddl"
        data.attrs["macros_image_convention"] = "opengl"
        data.attrs["tag"] = "libero-v1"
        data.attrs["num_demos"] = 1
        data.attrs["total"] = 12
        episode = _episode(rng, 12, 8)
        demo = data.create_group("demo_0")
        for key in ("actions", "states", "robot_states", "rewards", "dones"):
            demo.create_dataset(key, data=getattr(episode, key))
        demo["rewards"][-1] = 1
        for key, value in episode.obs.items():
            demo.create_dataset(f"obs/{key}", data=value)
        demo.attrs["num_samples"] = 12
        demo.attrs["init_state"] = episode.states[0]
        demo.attrs["model_file"] = "<mujoco/>"
    read = ds.read_dataset(path)
    assert read.task == TASK  # resolved from the BDDL path
    assert read.provenance == {}
    assert read.episodes[0].success is None  # not recorded; stats falls back to rewards
    assert read.language_instruction == "open the middle drawer of the cabinet"
