"""LeRobotDataset v3.0 export on real collected episodes: layout, every frame read back, stats, bad input.

The source is the shared real collection (``tests/libero_gym/data/conftest.py``: LIBERO-Goal task 0,
3 random-policy episodes of 10 settle + 30 steps, 64x64 cameras). Two exports of it:

- MP4 (the default) from the collection folder, all episodes in one file per camera;
- PNG in parquet (``video=False``) from the exported LIBERO HDF5 file, with tiny file
  size limits and ``chunks_size=2``, so every episode lands in its own data file and the
  files spread over two chunk folders.

Everything is read back with the readers LeRobot itself uses: ``pyarrow`` /
``datasets.Dataset.from_parquet`` for the parquet files, ``pandas.read_parquet`` for
``meta/tasks.parquet``, PyAV for the MP4s. Nothing here reads through
:mod:`libero_gym.data.lerobot`, so the writer is not checked against itself.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest

from libero_gym.data.dataset import iter_episodes, read_dataset, write_dataset
from tests.libero_gym.data.conftest import EPISODES, IMAGE_SIZE, SETTLE_STEPS, STEPS

REPO = Path(__file__).resolve().parents[3]
FPS = 20
TOLERANCE_S = 1e-4
"""LeRobot's default ``tolerance_s``: a decoded frame's timestamp must be this close to the query."""
MP4_MAX_MEAN_ABS_ERROR = 12.0
"""Per-frame mean |decoded - source| in 0..255 levels that AV1 at CRF 30 (LeRobot's default) stays under.

Measured on these 64x64 renders (both cameras, 90 frames each): mean 3.4, worst frame 5.2.
CRF 30 with 4:2:0 chroma subsampling is lossy by design; 12 leaves margin for other
encoder builds. A frame from the wrong place is caught by the alignment check of
test_mp4_frames_are_the_episodes_frames, an upside-down one by its error (> 24)."""
CAMERAS = {"observation.images.image": "agentview_rgb", "observation.images.image2": "eye_in_hand_rgb"}
INFO_KEYS = {
    "codebase_version", "robot_type", "total_episodes", "total_frames", "total_tasks", "chunks_size",
    "data_files_size_in_mb", "video_files_size_in_mb", "fps", "splits", "data_path", "video_path", "features",
}
"""``meta/info.json`` keys of LeRobot's v3.0 ``DatasetInfo`` (0.4.4 and 0.6.2; ``tools`` is optional)."""
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
EPISODE_COLUMNS = {"episode_index", "tasks", "length", "data/chunk_index", "data/file_index", "dataset_from_index",
                   "dataset_to_index", "meta/episodes/chunk_index", "meta/episodes/file_index"}
VIDEO_COLUMNS = ("chunk_index", "file_index", "from_timestamp", "to_timestamp")
STAT_KEYS = {"min", "max", "mean", "std", "count", "q01", "q10", "q50", "q90", "q99"}
NUMERIC = ("observation.state", "action", "timestamp", "frame_index", "episode_index", "index", "task_index")
LENGTH = STEPS  # settle steps dropped by default


# ---------------------------------------------------------------------- fixtures
@pytest.fixture(scope="module")
def exports(collected, tmp_path_factory) -> dict[str, Path]:
    from libero_gym.data.lerobot import export_lerobot

    root = tmp_path_factory.mktemp("lerobot")
    mp4 = export_lerobot(collected.out, root / "mp4")
    (libero_file,) = collected.export.files
    png = export_lerobot(libero_file, root / "png", video=False, chunks_size=2,
                         data_files_size_in_mb=1e-6, video_files_size_in_mb=1e-6)
    assert (mp4.episodes, mp4.frames, png.episodes, png.frames) == (EPISODES, EPISODES * LENGTH) * 2
    return {"mp4": mp4.root, "png": png.root}


@pytest.fixture(scope="module")
def sources(collected) -> list[Any]:
    """The source demos, in export order (episode index order)."""
    (libero_file,) = collected.export.files
    return list(iter_episodes(libero_file))


def _info(root: Path) -> dict[str, Any]:
    return json.loads((root / "meta" / "info.json").read_text())


def _episodes(root: Path) -> list[dict[str, Any]]:
    rows = []
    for path in sorted((root / "meta" / "episodes").glob("*/*.parquet")):
        rows.extend(pq.read_table(path).to_pylist())
    return sorted(rows, key=lambda row: row["episode_index"])


def _rows(root: Path, episode: dict[str, Any]) -> dict[str, Any]:
    """The episode's rows of its data file, as columns."""
    path = root / DATA_PATH.format(chunk_index=episode["data/chunk_index"], file_index=episode["data/file_index"])
    table = pq.read_table(path)
    index = np.asarray(table.column("index"))
    mask = (index >= episode["dataset_from_index"]) & (index < episode["dataset_to_index"])
    return {name: table.column(name).filter(mask).to_pylist() for name in table.column_names}


def _png(data: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def _decode(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """All frames of an MP4 (N, H, W, 3) and their timestamps in seconds, with PyAV."""
    import av

    frames, times = [], []
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        for frame in container.decode(stream):
            frames.append(frame.to_ndarray(format="rgb24"))
            times.append(float(frame.pts * stream.time_base))
    return np.stack(frames), np.asarray(times)


def _hf_features(features: dict[str, Any]) -> Any:
    """LeRobot's ``get_hf_features_from_features`` (datasets/feature_utils.py), restated."""
    import datasets

    out = {}
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue
        if feature["dtype"] == "image":
            out[key] = datasets.Image()
        elif feature["shape"] == [1]:
            out[key] = datasets.Value(dtype=feature["dtype"])
        else:
            out[key] = datasets.Sequence(length=feature["shape"][0], feature=datasets.Value(dtype=feature["dtype"]))
    return datasets.Features(out)


# ---------------------------------------------------------------------- layout
@pytest.mark.parametrize("kind", ["mp4", "png"])
def test_info_and_layout_follow_v3(exports, kind) -> None:
    import datasets
    import pandas

    root = exports[kind]
    info = _info(root)
    assert set(info) == INFO_KEYS
    assert info["codebase_version"] == "v3.0" and info["fps"] == FPS and info["robot_type"] == "panda"
    assert (info["total_episodes"], info["total_frames"], info["total_tasks"]) == (EPISODES, EPISODES * LENGTH, 1)
    assert info["splits"] == {"train": f"0:{EPISODES}"}
    assert info["data_path"] == DATA_PATH
    assert info["video_path"] == (VIDEO_PATH if kind == "mp4" else None)
    features = info["features"]
    assert list(features)[:2] == list(CAMERAS)
    assert set(features) == {*CAMERAS, *NUMERIC}
    for key in CAMERAS:
        assert features[key]["dtype"] == ("video" if kind == "mp4" else "image")
        assert features[key]["shape"] == [IMAGE_SIZE, IMAGE_SIZE, 3]
        assert features[key]["names"] == ["height", "width", "channels"]
    assert features["observation.state"]["dtype"] == "float32" and features["observation.state"]["shape"] == [8]
    assert features["action"]["dtype"] == "float32" and features["action"]["shape"] == [7]
    assert len(features["observation.state"]["names"]) == 8 and len(features["action"]["names"]) == 7
    assert features["timestamp"] == {"dtype": "float32", "shape": [1], "names": None}
    for key in ("frame_index", "episode_index", "index", "task_index"):
        assert features[key] == {"dtype": "int64", "shape": [1], "names": None}
    if kind == "mp4":
        for key in CAMERAS:
            video = features[key]["info"]
            assert (video["video.height"], video["video.width"], video["video.fps"]) == (IMAGE_SIZE, IMAGE_SIZE, FPS)
            assert video["video.codec"] == "av1" and video["video.pix_fmt"] == "yuv420p"
            assert video["video.channels"] == 3 and video["has_audio"] is False
            assert video["video.is_depth_map"] is False and video["is_depth_map"] is False

    # Every file is one of the templates, at a position the episode rows name; nothing else.
    episodes = _episodes(root)
    expected = {"meta/info.json", "meta/stats.json", "meta/tasks.parquet",
                "README.md", "dataset_statistics.json"}  # the dataset card (libero_gym.data.card)
    for row in episodes:
        assert EPISODE_COLUMNS <= set(row)
        expected.add(DATA_PATH.format(chunk_index=row["data/chunk_index"], file_index=row["data/file_index"]))
        expected.add(EPISODES_PATH.format(chunk_index=row["meta/episodes/chunk_index"],
                                          file_index=row["meta/episodes/file_index"]))
        for key in CAMERAS if kind == "mp4" else ():
            assert {f"videos/{key}/{name}" for name in VIDEO_COLUMNS} <= set(row)
            expected.add(VIDEO_PATH.format(video_key=key, chunk_index=row[f"videos/{key}/chunk_index"],
                                           file_index=row[f"videos/{key}/file_index"]))
    written = {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file()}
    assert written == expected
    assert not [p for p in root.parent.iterdir() if ".tmp-" in p.name], "no temporary folder left beside"
    if kind == "png":  # tiny size limits: one episode per data file, chunk folders of chunks_size=2 files
        positions = [(row["data/chunk_index"], row["data/file_index"]) for row in episodes]
        assert positions == [(0, 0), (0, 1), (1, 0)]
    else:  # v3.0: many episodes per file
        assert {(row["data/chunk_index"], row["data/file_index"]) for row in episodes} == {(0, 0)}

    # The parquet files load the way LeRobot loads them (datasets, with the features from info.json).
    hf_features = _hf_features(features)
    data_files = sorted(str(p) for p in (root / "data").glob("*/*.parquet"))
    for path in data_files:
        assert pq.read_schema(path).remove_metadata() == hf_features.arrow_schema.remove_metadata()
    loaded = datasets.Dataset.from_parquet(data_files, features=hf_features)
    assert len(loaded) == EPISODES * LENGTH and loaded["index"] == list(range(EPISODES * LENGTH))
    assert datasets.Dataset.from_parquet(data_files).features == hf_features  # restored from the schema metadata
    tasks = pandas.read_parquet(root / "meta" / "tasks.parquet")  # LeRobot's load_tasks
    assert tasks.index.name == "task" and list(tasks.columns) == ["task_index"]
    assert tasks.loc["open the middle drawer of the cabinet", "task_index"] == 0


# ---------------------------------------------------------------------- every frame back
def _check_numeric(rows: dict[str, Any], source: Any, episode: dict[str, Any]) -> None:
    steps = slice(SETTLE_STEPS, None)
    np.testing.assert_array_equal(np.asarray(rows["action"]), source.actions[steps].astype(np.float32))
    state = np.concatenate([source.obs["ee_states"], source.obs["gripper_states"]], axis=1)[steps]
    np.testing.assert_array_equal(np.asarray(rows["observation.state"]), state.astype(np.float32))
    assert rows["frame_index"] == list(range(LENGTH))
    np.testing.assert_array_equal(rows["timestamp"], (np.arange(LENGTH) / FPS).astype(np.float32))
    assert rows["index"] == list(range(episode["dataset_from_index"], episode["dataset_to_index"]))
    assert set(rows["episode_index"]) == {episode["episode_index"]} and set(rows["task_index"]) == {0}


@pytest.mark.parametrize("kind", ["mp4", "png"])
def test_every_frame_reads_back(exports, sources, kind) -> None:
    """Actions and states exactly (as float32), PNG images exactly (upright), provenance per episode."""
    root = exports[kind]
    episodes = _episodes(root)
    assert [row["episode_index"] for row in episodes] == list(range(EPISODES))
    start = 0
    for row, source in zip(episodes, sources):
        assert (row["length"], row["dataset_from_index"], row["dataset_to_index"]) == (LENGTH, start, start + LENGTH)
        assert row["tasks"] == ["open the middle drawer of the cabinet"]
        start += LENGTH
        rows = _rows(root, row)
        _check_numeric(rows, source, row)
        if kind == "png":
            for key, libero_key in CAMERAS.items():
                assert all(cell["path"] is None for cell in rows[key])
                frames = np.stack([_png(cell["bytes"]) for cell in rows[key]])
                np.testing.assert_array_equal(frames, source.obs[libero_key][SETTLE_STEPS:, ::-1, ::-1])
        else:
            assert not any(key in rows for key in CAMERAS)
        # Provenance: where the episode came from and how it was made.
        assert row["libero_gym/policy"] == "random" and row["libero_gym/suite"] == "libero_goal"
        assert row["libero_gym/checkpoint"] == "" and row["libero_gym/sampling"] == ""
        assert row["libero_gym/task_id"] == 0
        assert row["libero_gym/success"] == source.success
        assert row["libero_gym/seed"] == source.attrs["seed"]
        assert row["libero_gym/init_state_id"] == source.attrs["init_state_id"]
        np.testing.assert_array_equal(row["libero_gym/init_state"], source.init_state)
        assert row["libero_gym/settle_steps_dropped"] == SETTLE_STEPS
        assert Path(row["libero_gym/source_file"]).exists() and row["libero_gym/source_demo"].startswith("demo_")


def test_mp4_frames_are_the_episodes_frames(exports, sources) -> None:
    """Each episode's video frames sit at from_timestamp + timestamp and match the source within codec tolerance.

    Alignment is checked beyond the error bound: against the source shifted by one or two
    frames either way, the decoded episode is further off than against its own frames (on
    average over the episode: the agentview camera changes by ~1 level between steps, less
    than the codec's error, so single frames cannot tell; the wrist camera changes by 5-40).
    """
    root = exports["mp4"]
    episodes = _episodes(root)
    errors = []
    for key, libero_key in CAMERAS.items():
        decoded, times = _decode(root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0))
        assert len(decoded) == EPISODES * LENGTH
        np.testing.assert_allclose(times, np.arange(len(decoded)) / FPS, atol=TOLERANCE_S)
        for row, source in zip(episodes, sources):
            assert row[f"videos/{key}/from_timestamp"] == pytest.approx(row["dataset_from_index"] / FPS)
            assert row[f"videos/{key}/to_timestamp"] == pytest.approx(row["dataset_to_index"] / FPS)
            query = row[f"videos/{key}/from_timestamp"] + np.asarray(_rows(root, row)["timestamp"], dtype=np.float64)
            positions = np.abs(times[None, :] - query[:, None]).argmin(axis=1)
            assert np.abs(times[positions] - query).max() < TOLERANCE_S  # what LeRobot's decoder checks
            frames = decoded[positions].astype(np.int16)
            want = source.obs[libero_key][SETTLE_STEPS:, ::-1, ::-1].astype(np.int16)
            error = np.abs(frames - want).mean(axis=(1, 2, 3))
            errors.append(error)
            assert error.max() < MP4_MAX_MEAN_ABS_ERROR, (key, error.max())
            shifted = {shift: np.abs(frames[max(0, shift):LENGTH + min(0, shift)]
                                     - want[max(0, -shift):LENGTH - max(0, shift)]).mean() for shift in (-2, -1, 1, 2)}
            assert all(value > error.mean() for value in shifted.values()), (key, error.mean(), shifted)
        if key == "observation.images.image2":  # upside down (LIBERO's raw render) would be far off
            raw = sources[0].obs[libero_key][SETTLE_STEPS:].astype(np.int16)
            assert np.abs(decoded[:LENGTH].astype(np.int16) - raw).mean() > 2 * MP4_MAX_MEAN_ABS_ERROR
    print(f"MP4 mean abs error per frame: mean {np.mean(np.concatenate(errors)):.2f}, "
          f"max {np.max(np.concatenate(errors)):.2f}")


def test_video_files_roll_over(collected, tmp_path) -> None:
    """Past the MP4 size limit a camera's next episode starts a new file, timestamps from 0 again."""
    from libero_gym.data.lerobot import export_lerobot

    root = export_lerobot(collected.out, tmp_path / "out", chunks_size=2, video_files_size_in_mb=1e-6).root
    for row in _episodes(root):
        position = (row["episode_index"] // 2, row["episode_index"] % 2)
        for key in CAMERAS:
            assert (row[f"videos/{key}/chunk_index"], row[f"videos/{key}/file_index"]) == position
            assert row[f"videos/{key}/from_timestamp"] == 0 and row[f"videos/{key}/to_timestamp"] == LENGTH / FPS
            frames, times = _decode(root / VIDEO_PATH.format(video_key=key, chunk_index=position[0],
                                                             file_index=position[1]))
            assert len(frames) == LENGTH and times[0] == 0


# ---------------------------------------------------------------------- stats
def _bracket(values: np.ndarray, q: float) -> tuple[np.ndarray, np.ndarray]:
    """Where a histogram estimate of quantile q of ``values`` (N, D) may fall: one sample either side."""
    n = len(values)
    ordered = np.sort(values, axis=0)
    low = ordered[max(0, int(np.floor(q * n)) - 1)]
    high = ordered[min(n - 1, int(np.ceil(q * n)))]
    width = (ordered[-1] - ordered[0]) / 5000 + 1e-6  # one histogram bin
    return low - width, high + width


def _check_mean_std(mean: Any, std: Any, values: np.ndarray) -> None:
    """mean and std within float32 rounding of LeRobot's arithmetic, which this export reproduces.

    LeRobot sums in float32 along the frame axis (numpy's plain, not pairwise, reduction
    there: error up to ~n float32 epsilons) and takes the variance as E[x^2] - E[x]^2,
    which cancels when the spread is small next to the value (end-effector height ~1 m,
    std ~0.02 m). The bounds are those of that arithmetic, not of the data.
    """
    values = values.astype(np.float64)
    eps = max(8, len(values)) * np.finfo(np.float32).eps
    assert np.all(np.abs(np.asarray(mean).ravel() - values.mean(axis=0)) <= eps * np.abs(values).max(axis=0) + 1e-12)
    assert np.all(np.abs(np.asarray(std).ravel() ** 2 - values.var(axis=0)) <= eps * np.mean(values**2, axis=0) + 1e-12)


def _check_stats(stats: dict[str, Any], values: np.ndarray, count: int) -> None:
    assert set(stats) == STAT_KEYS
    assert stats["count"] == [count]
    np.testing.assert_array_equal(stats["min"], values.min(axis=0))
    np.testing.assert_array_equal(stats["max"], values.max(axis=0))
    _check_mean_std(stats["mean"], stats["std"], values)
    for q in (0.01, 0.10, 0.50, 0.90, 0.99):
        low, high = _bracket(values, q)
        assert np.all(low <= stats[f"q{int(q * 100):02d}"]) and np.all(stats[f"q{int(q * 100):02d}"] <= high), q


@pytest.mark.parametrize("kind", ["mp4", "png"])
def test_stats_match_the_data(exports, sources, kind) -> None:
    """Per-episode stats (meta/episodes) and dataset stats (meta/stats.json) recomputed from what was read back."""
    root = exports[kind]
    episodes = _episodes(root)
    everything: dict[str, list[np.ndarray]] = {key: [] for key in NUMERIC}
    for row, source in zip(episodes, sources):
        rows = _rows(root, row)
        for key in NUMERIC:
            values = np.asarray(rows[key]).reshape(LENGTH, -1)
            everything[key].append(values)
            _check_stats({name: row[f"stats/{key}/{name}"] for name in STAT_KEYS}, values, LENGTH)
        for key, libero_key in CAMERAS.items():  # LeRobot: per channel over all sampled pixels, / 255, (3, 1, 1)
            pixels = source.obs[libero_key][SETTLE_STEPS:].reshape(-1, 3).astype(np.float64) / 255
            stats = {name: row[f"stats/{key}/{name}"] for name in STAT_KEYS}
            assert np.asarray(stats["mean"]).shape == (3, 1, 1) and stats["count"] == [LENGTH]
            _check_mean_std(stats["mean"], stats["std"], pixels)
            np.testing.assert_allclose(np.asarray(stats["min"]).ravel(), pixels.min(axis=0))
            np.testing.assert_allclose(np.asarray(stats["max"]).ravel(), pixels.max(axis=0))
    dataset = json.loads((root / "meta" / "stats.json").read_text())
    assert set(dataset) == {*NUMERIC, *CAMERAS}
    for key in NUMERIC:
        values = np.concatenate(everything[key])
        stats = dataset[key]
        assert set(stats) == STAT_KEYS and stats["count"] == [EPISODES * LENGTH]
        np.testing.assert_array_equal(stats["min"], values.min(axis=0))
        np.testing.assert_array_equal(stats["max"], values.max(axis=0))
        _check_mean_std(stats["mean"], stats["std"], values)
        for name in ("q01", "q10", "q50", "q90", "q99"):  # LeRobot's envelope of the episodes' estimates
            per_episode = np.stack([row[f"stats/{key}/{name}"] for row in episodes])
            envelope = per_episode.min(axis=0) if int(name[1:]) <= 50 else per_episode.max(axis=0)
            np.testing.assert_allclose(stats[name], envelope)
    for key in CAMERAS:
        assert np.asarray(dataset[key]["mean"]).shape == (3, 1, 1) and dataset[key]["count"] == [EPISODES * LENGTH]


# ---------------------------------------------------------------------- bad input
def _run(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``cli.main(argv)`` from the repo root (tests/test_cli.py runs the same table-driven checks as processes
    too); return (exit code, stderr without robosuite's import warnings)."""
    import cli

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    code = cli.main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip() and not line.startswith("[robosuite")]
    return code, "\n".join(lines)


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def bad_inputs(collected, tmp_path_factory) -> Path:
    """An HDF5 file without images, and a folder holding two files of different image sizes."""
    (libero_file,) = collected.export.files
    data = read_dataset(libero_file)
    fx = tmp_path_factory.mktemp("lerobot_bad")
    no_images = read_dataset(libero_file, images=False)
    write_dataset(fx / "no_images_demo.hdf5", no_images.episodes[:1], data.task, provenance=data.provenance)
    (fx / "mixed").mkdir()
    write_dataset(fx / "mixed" / "a_demo.hdf5", data.episodes[:1], data.task, provenance=data.provenance)
    small = data.episodes[1]
    small.obs = {**small.obs, **{key: small.obs[key][:, ::2, ::2] for key in CAMERAS.values()}}
    write_dataset(fx / "mixed" / "b_demo.hdf5", [small], data.task, provenance=data.provenance)
    return fx


@pytest.mark.parametrize(
    "case, message",
    [
        ("out-holds-a-dataset", "already holds a LeRobot dataset"),
        ("hdf5-without-images", "has no camera images"),
        ("mixed-image-sizes", "mixed image sizes"),
    ],
)
def test_bad_input_is_one_line_and_writes_nothing(exports, bad_inputs, collected, tmp_path, case, message, capsys,
                                                  monkeypatch) -> None:
    out = tmp_path / "out"
    if case == "out-holds-a-dataset":
        out = exports["png"]
        argv = ["export", str(collected.out), "--format", "lerobot", "--out", str(out)]
    elif case == "hdf5-without-images":
        argv = ["export", str(bad_inputs / "no_images_demo.hdf5"), "--format", "lerobot", "--out", str(out)]
    else:
        argv = ["export", str(bad_inputs / "mixed"), "--format", "lerobot", "--out", str(out)]
    before = _tree(out) if out.exists() else None
    code, stderr = _run(argv, capsys, monkeypatch)
    assert code == 2, stderr
    assert len(stderr.splitlines()) == 1 and message in stderr and "Traceback" not in stderr, stderr
    assert (_tree(out) if out.exists() else None) == before
    assert not [p for p in out.parent.iterdir() if ".tmp-" in p.name]


def test_a_failure_midway_leaves_nothing(collected, tmp_path, monkeypatch) -> None:
    """An error after some episodes were written (here: the third) removes the temporary folder; no OUT."""
    from libero_gym.data import lerobot

    calls = []
    add = lerobot._Writer.add

    def failing_add(self, *args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return add(self, *args, **kwargs)

    monkeypatch.setattr(lerobot._Writer, "add", failing_add)
    with pytest.raises(OSError, match="disk full"):
        lerobot.export_lerobot(collected.out, tmp_path / "out")
    assert len(calls) == 3
    assert list(tmp_path.iterdir()) == []


def test_settle_steps_kept_on_request(collected, tmp_path, sources) -> None:
    from libero_gym.data.lerobot import export_lerobot

    result = export_lerobot(collected.out, tmp_path / "out", video=False, settle_steps=True)
    assert result.frames == EPISODES * (SETTLE_STEPS + STEPS)
    row = _episodes(result.root)[0]
    assert row["length"] == SETTLE_STEPS + STEPS and row["libero_gym/settle_steps_dropped"] == 0
    actions = np.asarray(_rows(result.root, row)["action"])
    np.testing.assert_array_equal(actions, sources[0].actions.astype(np.float32))
    np.testing.assert_array_equal(actions[:SETTLE_STEPS], [[0, 0, 0, 0, 0, 0, -1]] * SETTLE_STEPS)


def test_formats_parse_with_one_clear_error() -> None:
    from libero_gym.data.export import FORMATS, check_formats
    from libero_gym.errors import InvalidInputError

    assert FORMATS == ("hdf5", "lerobot", "rlds")
    assert check_formats("hdf5,lerobot") == ("hdf5", "lerobot")
    assert check_formats(" lerobot , lerobot") == ("lerobot",)
    with pytest.raises(InvalidInputError, match=re.escape("format must be one of ['hdf5', 'lerobot', 'rlds']")):
        check_formats("hdf5,zarr")
    with pytest.raises(InvalidInputError):
        check_formats("")


def test_exports_a_file_written_like_libero_human_datasets(tmp_path) -> None:
    """LIBERO's released files (no provenance, no settle steps, no success flag) export as they are."""
    import h5py

    from libero_gym.data.lerobot import export_lerobot

    rng = np.random.default_rng(3)
    steps, size = 12, 32
    path = tmp_path / "open_the_middle_drawer_of_the_cabinet_demo.hdf5"
    arrays = {
        "actions": rng.uniform(-1, 1, (steps, 7)), "states": rng.normal(size=(steps, 20)),
        "robot_states": rng.normal(size=(steps, 9)), "rewards": np.zeros(steps, np.uint8),
        "dones": np.zeros(steps, np.uint8),
        "obs/agentview_rgb": rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8),
        "obs/eye_in_hand_rgb": rng.integers(0, 256, (steps, size, size, 3), dtype=np.uint8),
        "obs/gripper_states": rng.normal(size=(steps, 2)), "obs/joint_states": rng.normal(size=(steps, 7)),
        "obs/ee_states": rng.normal(size=(steps, 6)), "obs/ee_pos": rng.normal(size=(steps, 3)),
        "obs/ee_ori": rng.normal(size=(steps, 3)),
    }
    with h5py.File(path, "w") as file:
        data = file.create_group("data")
        data.attrs.update({
            "env_name": "Libero_Tabletop_Manipulation", "env_args": '{"type": 1, "env_kwargs": {}}',
            "problem_info": '{"problem_name": "libero_tabletop_manipulation", '
                            '"language_instruction": "open the middle drawer of the cabinet"}',
            "bddl_file_name": "chiliocosm/bddl_files/libero_goal/open_the_middle_drawer_of_the_cabinet.bddl",
            "macros_image_convention": "opengl", "tag": "libero-v1", "num_demos": 1, "total": steps,
        })
        demo = data.create_group("demo_0")
        for key, value in arrays.items():
            demo.create_dataset(key, data=value)
        demo.attrs.update({"num_samples": steps, "init_state": arrays["states"][0], "model_file": "<mujoco/>"})
    root = export_lerobot(path, tmp_path / "out", video=False).root
    (row,) = _episodes(root)
    assert row["length"] == steps and row["libero_gym/settle_steps_dropped"] == 0
    assert row["libero_gym/policy"] == "unknown" and row["libero_gym/success"] is None
    assert row["libero_gym/seed"] == -1 and row["libero_gym/init_state_id"] == -1
    rows = _rows(root, row)
    np.testing.assert_array_equal(np.asarray(rows["action"]), arrays["actions"].astype(np.float32))
    state = np.concatenate([arrays["obs/ee_states"], arrays["obs/gripper_states"]], axis=1).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(rows["observation.state"]), state)
    frames = np.stack([_png(cell["bytes"]) for cell in rows["observation.images.image2"]])
    np.testing.assert_array_equal(frames, arrays["obs/eye_in_hand_rgb"][:, ::-1, ::-1])
    assert _info(root)["features"]["observation.images.image"]["shape"] == [size, size, 3]
