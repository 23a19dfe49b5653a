"""RLDS export on real collected episodes: read back through TFDS as OpenVLA reads it, step for step.

The source is the shared real collection (``tests/libero_gym/data/conftest.py``: LIBERO-Goal task 0,
3 random-policy episodes of 10 settle + 30 steps, 64x64 cameras). Two exports of it:

- ``jpeg``: the defaults (JPEG images, settle steps dropped), from the collection folder;
- ``png``: PNG images, settle steps kept for the no-op filter to judge, a tiny shard size (one
  episode per TFRecord file), from the exported LIBERO HDF5 file.

The reading tests use TensorFlow Datasets itself (``tfds.builder_from_directory(...).as_dataset``
and ``tfds.builder(name, data_dir=...)``, OpenVLA's call), in a process of their own
(``rlds_reader.py``), and skip where the ``rlds`` extra is not installed; the layout, card and
statistics tests need no TensorFlow.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from libero_gym.data.dataset import iter_episodes
from libero_gym.data.noops import noop_mask
from tests.libero_gym.data.conftest import EPISODES, IMAGE_SIZE, SETTLE_STEPS, STEPS

REPO = Path(__file__).resolve().parents[3]
NAMES = {"jpeg": "goal_jpeg", "png": "goal_png"}
JPEG_MAX_MEAN_ABS_ERROR = 6.0
"""Per-frame mean |decoded - source| in 0..255 levels for JPEG at quality 95 (measured on these 64 px
renders: mean 2.5, worst frame 3.0). An upside-down frame is off by > 20, a frame of the wrong step by > 2."""
STEP_KEYS = {"observation", "action", "discount", "reward", "is_first", "is_last", "is_terminal",
             "language_instruction"}


@pytest.fixture(scope="module")
def exports(collected, tmp_path_factory) -> dict[str, Any]:
    from libero_gym.data.pipeline import StepOptions
    from libero_gym.data.rlds import export_rlds

    root = tmp_path_factory.mktemp("rlds")
    (libero_file,) = collected.export.files
    jpeg = export_rlds(collected.out, root / "jpeg", name=NAMES["jpeg"], command="libero-gym export test")
    png = export_rlds(libero_file, root / "png", name=NAMES["png"], image_encoding="png", shard_size_mb=1e-6,
                      options=StepOptions(settle_steps=True, filter_noops=True))
    return {"jpeg": jpeg, "png": png}


@pytest.fixture(scope="module")
def expected(collected) -> dict[str, list[dict[str, np.ndarray]]]:
    """Per export, per episode: the source rows it should hold (settle steps or no-ops removed)."""
    (libero_file,) = collected.export.files
    out: dict[str, list[dict[str, np.ndarray]]] = {"jpeg": [], "png": []}
    for episode in iter_episodes(libero_file):
        rows = {"jpeg": np.arange(SETTLE_STEPS, episode.num_samples),
                "png": np.flatnonzero(~noop_mask(episode.actions))}
        for kind, keep in rows.items():
            out[kind].append({
                "keep": keep,
                "state": np.concatenate([episode.obs["ee_states"], episode.obs["gripper_states"]], 1)[keep],
                "joint_state": episode.obs["joint_states"][keep],
                "action": episode.actions[keep],
                "image": episode.obs["agentview_rgb"][keep][:, ::-1, ::-1],
                "wrist_image": episode.obs["eye_in_hand_rgb"][keep][:, ::-1, ::-1],
                "success": bool(episode.success),
                "rewards": episode.rewards,
            })
    return out


# ---------------------------------------------------------------------- without TensorFlow
def test_layout_card_and_statistics(exports, expected) -> None:
    from libero_gym.data.rlds import VERSION, features_json

    for kind, result in exports.items():
        name = NAMES[kind]
        builder = result.root / name / VERSION
        assert result.builder_dir == builder and result.episodes == EPISODES
        shards = sorted(p.name for p in builder.glob(f"{name}-train.tfrecord-*"))
        assert shards == [f"{name}-train.tfrecord-{i:05d}-of-{len(shards):05d}" for i in range(len(shards))]
        assert len(shards) == (1 if kind == "jpeg" else EPISODES)  # one episode per shard past the tiny limit
        assert {p.name for p in result.root.iterdir()} == {"README.md", "dataset_statistics.json", name}
        assert {p.name for p in builder.iterdir()} == {"dataset_info.json", "features.json", *shards}
        info = json.loads((builder / "dataset_info.json").read_text())
        assert info["name"] == name and info["version"] == VERSION and info["fileFormat"] == "tfrecord"
        (split,) = info["splits"]
        assert split["name"] == "train" and sum(int(n) for n in split["shardLengths"]) == EPISODES
        assert int(split["numBytes"]) == sum((builder / s).stat().st_size for s in shards)
        encoding = "jpeg" if kind == "jpeg" else "png"
        assert json.loads((builder / "features.json").read_text()) == features_json((IMAGE_SIZE, IMAGE_SIZE), encoding)

        # statistics: OpenVLA's layout, recomputed from the source rows
        stats = json.loads((result.root / "dataset_statistics.json").read_text())[name]
        actions = np.concatenate([e["action"] for e in expected[kind]]).astype(np.float32)
        states = np.concatenate([e["state"] for e in expected[kind]]).astype(np.float32)
        assert stats["num_trajectories"] == EPISODES and stats["num_transitions"] == len(actions)
        for key, values in (("action", actions), ("proprio", states)):
            np.testing.assert_allclose(stats[key]["mean"], values.mean(0), rtol=1e-6)
            np.testing.assert_allclose(stats[key]["std"], values.std(0), rtol=1e-5)
            np.testing.assert_array_equal(stats[key]["min"], values.min(0))
            np.testing.assert_array_equal(stats[key]["max"], values.max(0))
            np.testing.assert_allclose(stats[key]["q01"], np.quantile(values, 0.01, axis=0), rtol=1e-6)
            np.testing.assert_allclose(stats[key]["q99"], np.quantile(values, 0.99, axis=0), rtol=1e-6)
        assert stats["action"]["mask"] == [True] * 6 + [False]

        card = (result.root / "README.md").read_text()
        for heading in ("## How it was made", "## Features", "## Normalisation statistics", "## Episodes"):
            assert heading in card
        assert "**upright**" in card and "`random`" in card and "libero-gym commit" in card
        if kind == "jpeg":  # from the collection folder: its collect-time success rate
            assert "policy success while collecting" in card
    assert "`libero-gym export test`" in (exports["jpeg"].root / "README.md").read_text()
    # the filter judged the kept settle steps: all of them go (no action kept before them), counted per episode
    dropped = [r.noops_dropped for r in exports["png"].records]
    assert dropped == [SETTLE_STEPS + STEPS - len(e["keep"]) for e in expected["png"]]
    assert all(d >= SETTLE_STEPS for d in dropped)
    assert [r.noops_dropped for r in exports["jpeg"].records] == [0] * EPISODES


def test_tfrecord_framing_is_crc32c_checked() -> None:
    """The framing TensorFlow's reader checks: little-endian length, masked CRC32C of it, data, masked CRC32C."""
    import struct

    import google_crc32c

    from libero_gym.data.rlds import _masked_crc, tfrecord_frame

    assert google_crc32c.value(b"123456789") == 0xE3069283  # the CRC-32C check value (RFC 3720)
    frame = tfrecord_frame(b"hello")
    (length,) = struct.unpack("<Q", frame[:8])
    assert length == 5 and frame[12:17] == b"hello"
    assert struct.unpack("<I", frame[8:12])[0] == _masked_crc(frame[:8])
    assert struct.unpack("<I", frame[17:])[0] == _masked_crc(b"hello")


# ---------------------------------------------------------------------- through TFDS
@pytest.fixture(scope="module")
def tfds_read(exports, tmp_path_factory) -> Path:
    """Both exports read by TensorFlow Datasets in a process of its own (``rlds_reader.py``: TensorFlow's
    runtime and MuJoCo's EGL rendering crash in one process, and test workers render)."""
    import importlib.util

    from libero_gym.data.rlds import FEATURE_DOCS

    python = os.environ.get("LIBERO_GYM_TFDS_PYTHON")
    if not python:
        if importlib.util.find_spec("tensorflow_datasets") is None:
            pytest.skip("no TensorFlow Datasets: set LIBERO_GYM_TFDS_PYTHON (make test builds .venv-tfds)")
        python = sys.executable
    out = tmp_path_factory.mktemp("tfds_read")
    docs = out / "feature_docs.json"
    docs.write_text(json.dumps(FEATURE_DOCS))
    pairs = [f"{NAMES[kind]}={result.root}" for kind, result in exports.items()]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([python, str(Path(__file__).with_name("rlds_reader.py")), str(out), str(docs), *pairs],
                          capture_output=True, text=True, timeout=600, cwd=REPO, env=env)
    assert proc.returncode == 0 and proc.stdout.strip().endswith("done"), proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_tfds_reads_every_step_as_the_source(exports, expected, tfds_read, kind) -> None:
    name, result = NAMES[kind], exports[kind]
    read = json.loads((tfds_read / f"{name}.json").read_text())
    assert read["from_directory"] == read["by_name"] == EPISODES  # builder_from_directory, and OpenVLA's call
    arrays = np.load(tfds_read / f"{name}.npz")
    errors = []
    for index, (episode, want) in enumerate(zip(read["episodes"], expected[kind], strict=True)):
        assert set(episode["step_keys"]) == STEP_KEYS
        assert episode["observation_keys"] == ["image", "joint_state", "state", "wrist_image"]
        # the collection's shards hold one demo each; the exported LIBERO file holds them all
        assert episode["demo"] == ("demo_0" if kind == "jpeg" else f"demo_{index}")
        assert episode["file_path"].endswith(".hdf5") and Path(episode["file_path"]).is_absolute()
        assert episode["noops_dropped"] == result.records[index].noops_dropped
        assert episode["language"] == ["open the middle drawer of the cabinet"]
        length = len(want["keep"])
        assert episode["steps"] == length

        def got(key: str) -> np.ndarray:
            return arrays[f"{index}/{key}"]

        for key in ("state", "joint_state", "action"):
            assert got(key).dtype == np.float32
            np.testing.assert_array_equal(got(key), want[key].astype(np.float32))
        np.testing.assert_array_equal(got("discount"), np.ones(length, np.float32))
        np.testing.assert_array_equal(got("reward"), want["rewards"][want["keep"]].astype(np.float32))
        last = np.arange(length) == length - 1
        np.testing.assert_array_equal(got("is_first"), np.arange(length) == 0)
        np.testing.assert_array_equal(got("is_last"), last)
        np.testing.assert_array_equal(got("is_terminal"), last & want["success"])
        for key in ("image", "wrist_image"):
            frames = got(key)
            assert frames.shape == (length, IMAGE_SIZE, IMAGE_SIZE, 3) and frames.dtype == np.uint8
            if kind == "png":
                np.testing.assert_array_equal(frames, want[key])  # exact, upright
            else:
                error = np.abs(frames.astype(float) - want[key]).mean(axis=(1, 2, 3))
                assert error.max() < JPEG_MAX_MEAN_ABS_ERROR, (index, key, error.max())
                flipped = np.abs(frames.astype(float) - want[key][:, ::-1, ::-1]).mean()
                assert flipped > 4 * error.mean(), (key, flipped, error.mean())  # upright, not LIBERO's way up
                errors.append(error)
    if errors:
        print(f"JPEG mean abs error per frame: mean {np.mean(np.concatenate(errors)):.2f}, "
              f"max {np.max(np.concatenate(errors)):.2f}")


@pytest.mark.parametrize("kind", ["jpeg", "png"])
def test_features_and_examples_are_what_tfds_writes(tfds_read, kind) -> None:
    """Our features.json equals what TFDS writes for the same FeaturesDict built with its API, and a
    stored record parses to the very tf.train.Example TFDS serialises from the same values."""
    from libero_gym.data.rlds import features_json

    name = NAMES[kind]
    reference = json.loads((tfds_read / f"{name}.reference" / "features.json").read_text())
    assert features_json((IMAGE_SIZE, IMAGE_SIZE), kind) == reference
    example = json.loads((tfds_read / f"{name}.example.json").read_text())
    assert example["equal"], example["keys"]


# ---------------------------------------------------------------------- images rendered at export
def test_images_rendered_at_export_are_the_collected_ones(collected, tmp_path) -> None:
    """Rendering the stored states at export (--image-size) gives the frames collect stored, pixel for pixel."""
    from libero_gym.data.collect import shard_path
    from libero_gym.data.dataset import read_dataset
    from libero_gym.data.render import EpisodeRenderer

    source = shard_path(collected.out, collected.result.kept[0])
    stored = read_dataset(source)
    every = slice(None, None, 4)  # 10 of the 40 states, across the episode: rendering is ~0.2 s of CPU a state
    no_images = read_dataset(source, images=False).episodes[0]
    no_images.states = no_images.states[every]
    with EpisodeRenderer(IMAGE_SIZE) as renderer:
        rendered = renderer.render(no_images, stored.task, source)
    for key in ("agentview_rgb", "eye_in_hand_rgb"):
        assert len(rendered.obs[key]) == 10
        np.testing.assert_array_equal(rendered.obs[key], stored.episodes[0].obs[key][every])


# ---------------------------------------------------------------------- bad input
@pytest.mark.parametrize("case", ["unknown-format", "not-a-dataset", "out-in-the-way", "bad-name", "flag-of-another-format"])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(collected, tmp_path, capsys, case) -> None:
    import cli

    out = tmp_path / "out"
    argv = ["export", str(collected.out), "--format", "rlds", "--out", str(out)]
    message = {"unknown-format": "Expected one of ('hdf5', 'lerobot', 'rlds')",
               "not-a-dataset": "export takes a collection folder, a LIBERO HDF5 file, or a folder of them",
               "out-in-the-way": "already holds files", "bad-name": "snake case",
               "flag-of-another-format": "formats are hdf5, lerobot, rlds"}[case]
    if case == "unknown-format":
        argv[3] = "tfrecord"
    elif case == "not-a-dataset":
        (tmp_path / "notes.hdf5").write_text("not a dataset")
        argv[1] = str(tmp_path / "notes.hdf5")
    elif case == "out-in-the-way":
        out.mkdir()
        (out / "keep.txt").write_text("mine")
    elif case == "bad-name":
        argv += ["--name", "Goal-Set"]
    else:
        argv += ["--compression", "gzip"]
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    assert cli.main(argv) == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], lines
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before
