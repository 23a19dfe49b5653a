"""Export LIBERO-layout episodes as a LeRobotDataset (codebase version v3.0).

The format that LeRobot's trainers (pi0 / pi0.5, SmolVLA, GR00T, ACT, diffusion)
load with ``LeRobotDataset(repo_id, root=...)``, and the one LeRobot's own LIBERO
datasets (``lerobot/libero``, ``HuggingFaceVLA/libero``) are in::

    OUT/
    +-- data/chunk-000/file-000.parquet      one row per frame, many episodes per file
    +-- videos/observation.images.image/chunk-000/file-000.mp4    (MP4 mode only)
    +-- videos/observation.images.image2/chunk-000/file-000.mp4
    +-- meta/info.json                        version, fps, features, path templates, totals
    +-- meta/stats.json                       per-feature stats over the whole dataset
    +-- meta/tasks.parquet                    task string (the index) -> task_index
    +-- meta/episodes/chunk-000/file-000.parquet   one row per episode: where its rows and
                                                   video frames are, its stats, our provenance

Features (the names of LeRobot's LIBERO datasets and env, ``docs/source/libero.mdx``):

=============================  ===========  ==========================================
feature                        dtype/shape  value
=============================  ===========  ==========================================
``observation.images.image``   (H, W, 3)    agentview camera, upright (LIBERO's render
                                            rotated 180 degrees, ``img[::-1, ::-1]``)
``observation.images.image2``  (H, W, 3)    wrist camera, upright
``observation.state``          float32 (8)  ee pos (3, m), ee axis-angle (3, rad),
                                            gripper qpos (2, m): our ``obs/ee_states``
                                            followed by ``obs/gripper_states``
``action``                     float32 (7)  the env's action (OSC_POSE delta + gripper)
``timestamp``                  float32 (1)  ``frame_index / fps``
``frame_index``                int64 (1)    step within the episode
``episode_index``              int64 (1)    episode within the dataset
``index``                      int64 (1)    frame within the dataset
``task_index``                 int64 (1)    row of ``meta/tasks.parquet`` (the language
                                            instruction)
=============================  ===========  ==========================================

Images are ``video`` features (MP4, LeRobot's default encoder settings: AV1 via
SVT-AV1, yuv420p, GOP 2, CRF 30; each episode encoded on its own and appended to
the camera's current file by stream copy, as LeRobot does) or, with ``video=False``,
``image`` features (PNG bytes in the parquet rows, as ``datasets.Image`` stores them).

Written field by field after LeRobot's v3.0 code (``src/lerobot/datasets/``:
``utils.py`` path templates and ``DatasetInfo``, ``dataset_metadata.py`` episode rows
and tasks, ``dataset_writer.py`` data files and video timestamps, ``compute_stats.py``
statistics, ``video_utils.py`` video info), checked against LeRobot v0.4.4 and the
main branch at 0.6.2 (commit 7427f31, August 2026). ``lerobot`` itself does not
install here: 0.5 and later need Python 3.12, 0.4.x pins torch < 2.11 and pulls
CUDA builds of torch and torchvision.

Settle steps: our demos start with the env reset's no-op settle steps (see
:mod:`libero_gym.data.dataset`). LeRobot's LIBERO env runs those itself before the
policy's first observation, so by default they are left out here (frame 0 is the
first observation the policy acted on); ``settle_steps=True`` keeps them.

Atomic: everything is written into a temporary folder beside ``out`` and renamed
onto it at the end; a failure (or a second export racing for the same ``out``)
leaves no partial dataset behind.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym.atomic_files import _fsync_dir
from libero_gym.data import card as card_lib
from libero_gym.data import dataset as ds
from libero_gym.data.pipeline import StepOptions, prepare_episode, read_demos, scan_files, state_vector
from libero_gym.data.render import EpisodeRenderer
from libero_gym.errors import DatasetError, InvalidInputError
from libero_gym.file_modes import set_default_mode

CODEBASE_VERSION = "v3.0"
"""LeRobot's dataset format version written here (``meta/info.json`` ``codebase_version``)."""
FPS = 20
"""LIBERO's control rate (robosuite ``control_freq=20``): one frame per env step."""
ROBOT_TYPE = "panda"
"""LIBERO's robot (Franka Panda), as LeRobot's LIBERO datasets record it."""
CHUNKS_SIZE = 1000
"""Files per ``chunk-XXX`` folder (LeRobot's ``DEFAULT_CHUNK_SIZE``)."""
DATA_FILES_SIZE_IN_MB = 100
"""Start a new data parquet file past this size (LeRobot's ``DEFAULT_DATA_FILE_SIZE_IN_MB``)."""
VIDEO_FILES_SIZE_IN_MB = 200
"""Start a new MP4 file past this size (LeRobot's ``DEFAULT_VIDEO_FILE_SIZE_IN_MB``)."""

CHUNK_FILE_PATTERN = "chunk-{chunk_index:03d}/file-{file_index:03d}"
DATA_PATH = "data/" + CHUNK_FILE_PATTERN + ".parquet"
"""``info.json`` ``data_path`` template (LeRobot's ``DEFAULT_DATA_PATH``)."""
VIDEO_PATH = "videos/{video_key}/" + CHUNK_FILE_PATTERN + ".mp4"
"""``info.json`` ``video_path`` template (LeRobot's ``DEFAULT_VIDEO_PATH``); ``null`` without videos."""
EPISODES_PATH = "meta/episodes/" + CHUNK_FILE_PATTERN + ".parquet"
"""Episode metadata files (LeRobot's ``DEFAULT_EPISODES_PATH``)."""
INFO_PATH = "meta/info.json"
STATS_PATH = "meta/stats.json"
TASKS_PATH = "meta/tasks.parquet"

CAMERAS: dict[str, str] = {
    "observation.images.image": "agentview_rgb",
    "observation.images.image2": "eye_in_hand_rgb",
}
"""LeRobot feature -> LIBERO ``obs/`` camera array."""
STATE_NAMES: tuple[str, ...] = (
    "eef_pos_x", "eef_pos_y", "eef_pos_z",
    "eef_axis_angle_x", "eef_axis_angle_y", "eef_axis_angle_z",
    "gripper_qpos_left", "gripper_qpos_right",
)
"""``observation.state`` components: ``obs/ee_states`` (6) then ``obs/gripper_states`` (2)."""
ACTION_NAMES: tuple[str, ...] = (
    "delta_x", "delta_y", "delta_z",
    "delta_axis_angle_x", "delta_axis_angle_y", "delta_axis_angle_z",
    "gripper",
)
"""``action`` components: OSC_POSE delta (position, axis-angle) and gripper (-1 open, +1 close)."""
DEFAULT_FEATURES: dict[str, dict[str, Any]] = {
    "timestamp": {"dtype": "float32", "shape": [1], "names": None},
    "frame_index": {"dtype": "int64", "shape": [1], "names": None},
    "episode_index": {"dtype": "int64", "shape": [1], "names": None},
    "index": {"dtype": "int64", "shape": [1], "names": None},
    "task_index": {"dtype": "int64", "shape": [1], "names": None},
}
"""Columns every LeRobotDataset has (LeRobot's ``DEFAULT_FEATURES``)."""

VCODEC = "libsvtav1"
"""LeRobot's default encoder (AV1; ``VideoEncoderConfig.vcodec``)."""
PIX_FMT = "yuv420p"
"""LeRobot's default pixel format."""
GOP = 2
"""Keyframe every 2 frames (LeRobot's default ``g``): cheap random access for training."""
CRF = 30
"""LeRobot's default quality (lower is better and bigger)."""
PRESET = 12
"""LeRobot's default SVT-AV1 preset (``LIBSVTAV1_DEFAULT_PRESET``; the fastest)."""
QUANTILES: tuple[float, ...] = (0.01, 0.10, 0.50, 0.90, 0.99)
"""Quantiles LeRobot's v3.0 stats carry (``DEFAULT_QUANTILES``), as ``q01``, ``q10``, ..."""
QUANTILE_BINS = 5000
"""Histogram bins LeRobot estimates quantiles from (``RunningQuantileStats``)."""
PROVENANCE_PREFIX = "libero_gym/"
"""Our columns in ``meta/episodes`` (LeRobot ignores columns it does not know)."""


# ---------------------------------------------------------------------- sources
@dataclasses.dataclass(frozen=True)
class SourceEpisode:
    """One demo to export: where it is and what the file says about it."""

    path: Path
    """The LIBERO-layout HDF5 file."""
    demo: str
    """Its group, ``demo_<i>``."""
    task: str
    """The language instruction (``problem_info``)."""
    provenance: dict[str, Any]
    """The file's ``libero_gym`` attribute (empty for LIBERO's own files)."""
    image_shape: tuple[int, int]
    """(H, W) of both cameras."""


@dataclasses.dataclass
class LeRobotExportResult:
    """What :func:`export_lerobot` wrote."""

    root: Path
    """The dataset folder."""
    episodes: int
    """Episodes written."""
    frames: int
    """Frames written."""
    tasks: list[str]
    """Task strings in ``task_index`` order."""
    video: bool
    """Images as MP4 (True) or PNG in the parquet rows (False)."""
    records: list[card_lib.EpisodeRecord] = dataclasses.field(default_factory=list)
    """Per episode: source, steps, no-ops dropped (the dataset card's table)."""


def find_sources(source: str | os.PathLike[str], *, only_success: bool = False) -> list[Path]:
    """The LIBERO HDF5 files behind ``source``, in export order.

    Args:
        source: a collection folder (``collect``'s output: its kept episodes in
            index order), a LIBERO-layout HDF5 file, or a folder of them
            (``*.hdf5``, sorted by name; e.g. LIBERO's ``libero_goal/``).
        only_success: from a collection folder, only the successful episodes.

    Raises:
        DatasetError: nothing to export there.
    """
    from libero_gym.data.collect import finished_summaries, shard_path

    path = Path(source)
    if not path.exists():
        raise DatasetError(f"{path}: no such file or folder (expected a collection folder or a LIBERO HDF5 file)")
    if path.is_file():
        return [path]
    if (path / "episodes").is_dir():
        summaries = finished_summaries(path)
        kept = [i for i in sorted(summaries)
                if summaries[i].get("kept") and (summaries[i].get("success") or not only_success)]
        if not kept:
            raise DatasetError(f"{path}: no kept episodes to export")
        return [shard_path(path, i) for i in kept]
    files = sorted(p for p in path.glob("*.hdf5") if not p.name.startswith("."))
    if not files:
        raise DatasetError(f"{path}: no collected episodes (episodes/) and no *.hdf5 files to export")
    return files


def scan_sources(paths: Sequence[Path]) -> list[SourceEpisode]:
    """Validate every file and list its demos; one image size for the whole dataset.

    Reads shapes and attributes only (no arrays), so bad input fails before
    anything is written.

    Raises:
        DatasetError: a file is not LIBERO's layout, has no camera images, or the
            image sizes differ.
    """
    import h5py

    episodes: list[SourceEpisode] = []
    for path in paths:
        ds.validate_dataset(path, require_images=False)
        with h5py.File(path, "r") as file:
            data = file["data"]
            task, provenance = ds.instruction_and_provenance(path, data)
            for demo in ds.demo_keys(data):
                obs = data[demo]["obs"]
                missing = [key for key in ds.IMAGE_KEYS if key not in obs]
                if missing:
                    raise DatasetError(
                        f"{path}: data/{demo} has no camera images ({', '.join('obs/' + k for k in missing)}); "
                        "LeRobot's LIBERO features need both cameras (collect with --images)"
                    )
                shapes = {tuple(obs[key].shape[1:3]) for key in ds.IMAGE_KEYS}
                if len(shapes) != 1:
                    raise DatasetError(f"{path}: data/{demo} cameras differ in size: {sorted(shapes)}")
                shape = shapes.pop()
                if episodes and shape != episodes[0].image_shape:
                    first = episodes[0]
                    raise DatasetError(
                        f"mixed image sizes: {first.path} data/{first.demo} is {first.image_shape[0]}x"
                        f"{first.image_shape[1]}, {path} data/{demo} is {shape[0]}x{shape[1]}; "
                        "a LeRobotDataset has one size per camera"
                    )
                episodes.append(SourceEpisode(path, demo, task, provenance, (int(shape[0]), int(shape[1]))))
    if not episodes:
        raise DatasetError("no demos to export")
    return episodes


# ---------------------------------------------------------------------- stats (LeRobot's compute_stats)
def feature_stats(values: np.ndarray) -> dict[str, np.ndarray]:
    """Stats of an (N, D) sample as LeRobot's ``RunningQuantileStats`` gives them for one batch.

    min, max, mean, std (population), count and the :data:`QUANTILES` estimated from a
    :data:`QUANTILE_BINS`-bin histogram per dimension with linear interpolation in the bin.
    Arithmetic in ``result_type(dtype, float32)`` as LeRobot's.
    """
    batch = values.reshape(-1, values.shape[-1])
    batch = batch.astype(np.result_type(batch.dtype, np.float32), copy=False)
    count = batch.shape[0]
    if count < 2:  # LeRobot's _compute_basic_stats: quantiles fall back to the mean
        mean = np.mean(batch, axis=0)
        stats = {"min": np.min(batch, axis=0), "max": np.max(batch, axis=0), "mean": mean,
                 "std": np.std(batch, axis=0), "count": np.array([count])}
        stats.update({_quantile_key(q): mean.copy() for q in QUANTILES})
        return stats
    mean = np.mean(batch, axis=0)
    mean_sq = np.mean(batch**2, axis=0)
    low, high = np.min(batch, axis=0), np.max(batch, axis=0)
    stats = {"min": low, "max": high, "mean": mean, "std": np.sqrt(np.maximum(0, mean_sq - mean**2)),
             "count": np.array([count])}
    quantiles = np.empty((len(QUANTILES), batch.shape[1]))
    for d in range(batch.shape[1]):
        edges = np.linspace(low[d] - 1e-10, high[d] + 1e-10, QUANTILE_BINS + 1)
        cumsum = np.cumsum(np.histogram(batch[:, d], bins=edges)[0])
        for i, q in enumerate(QUANTILES):
            quantiles[i, d] = _histogram_quantile(cumsum, edges, q * count)
    stats.update({_quantile_key(q): quantiles[i] for i, q in enumerate(QUANTILES)})
    return stats


def _quantile_key(q: float) -> str:
    return f"q{int(q * 100):02d}"


def _histogram_quantile(cumsum: np.ndarray, edges: np.ndarray, target: float) -> float:
    index = int(np.searchsorted(cumsum, target))
    if index == 0:
        return float(edges[0])
    if index >= len(cumsum):
        return float(edges[-1])
    before = cumsum[index - 1]
    in_bin = cumsum[index] - before
    if in_bin == 0:
        return float(edges[index])
    return float(edges[index] + (target - before) / in_bin * (edges[index + 1] - edges[index]))


def sample_indices(length: int) -> np.ndarray:
    """Frames LeRobot samples for image stats: all up to 100, then ``length**0.75`` (max 10000), evenly spaced."""
    count = max(min(100, length), min(int(length**0.75), 10_000))
    return np.round(np.linspace(0, length - 1, count)).astype(int)


def image_stats(frames: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel stats of (T, H, W, 3) uint8 frames in [0, 1], shaped (3, 1, 1), as LeRobot's.

    LeRobot samples :func:`sample_indices` frames, halves large images
    (side >= 300: every ``side // 150``-th pixel), and divides by 255; ``count`` is the
    number of sampled frames.
    """
    sampled = frames[sample_indices(len(frames))]
    height, width = sampled.shape[1:3]
    if max(height, width) >= 300:  # LeRobot's auto_downsample_height_width
        step = int(width / 150) if width > height else int(height / 150)
        sampled = sampled[:, ::step, ::step]
    stats = feature_stats(sampled.reshape(-1, sampled.shape[-1]))
    out = {key: value.reshape(-1, 1, 1) / 255.0 for key, value in stats.items() if key != "count"}
    out["count"] = np.array([len(sampled)])
    return out


def aggregate_stats(per_episode: Sequence[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Dataset stats of one feature from its episodes' (LeRobot's ``aggregate_feature_stats``).

    Count-weighted mean and pooled variance; min of mins, max of maxes; quantiles
    as LeRobot bounds them: the min of the episodes' values up to q50, the max above.
    """
    means = np.stack([s["mean"] for s in per_episode])
    variances = np.stack([s["std"] ** 2 for s in per_episode])
    counts = np.stack([s["count"] for s in per_episode])
    total = counts.sum(axis=0)
    weights = counts.reshape(counts.shape + (1,) * (means.ndim - counts.ndim))
    mean = (means * weights).sum(axis=0) / total
    variance = ((variances + (means - mean) ** 2) * weights).sum(axis=0) / total
    out = {
        "min": np.min(np.stack([s["min"] for s in per_episode]), axis=0),
        "max": np.max(np.stack([s["max"] for s in per_episode]), axis=0),
        "mean": mean,
        "std": np.sqrt(variance),
        "count": total,
    }
    for q in QUANTILES:
        key = _quantile_key(q)
        values = np.stack([s[key] for s in per_episode])
        out[key] = values.min(axis=0) if q <= 0.5 else values.max(axis=0)
    return out


# ---------------------------------------------------------------------- frames
def _png(frame: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(frame).save(buffer, format="png")
    return buffer.getvalue()


def episode_columns(episode: ds.Episode, *, settle_steps: bool) -> dict[str, np.ndarray]:
    """The per-frame arrays of one demo under LeRobot's names (images upright, uint8)."""
    start = 0 if settle_steps else episode.settle_steps
    columns: dict[str, np.ndarray] = {
        "observation.state": np.concatenate(
            [episode.obs["ee_states"], episode.obs["gripper_states"]], axis=1
        )[start:].astype(np.float32),
        "action": np.asarray(episode.actions[start:], dtype=np.float32),
    }
    for feature, key in CAMERAS.items():
        columns[feature] = np.ascontiguousarray(episode.obs[key][start:, ::-1, ::-1])  # upright, as LeRobot's LIBERO
    return columns


# ---------------------------------------------------------------------- writers
def _update_indices(chunk: int, file: int, chunks_size: int) -> tuple[int, int]:
    """Next (chunk, file) position (LeRobot's ``update_chunk_file_indices``)."""
    return (chunk + 1, 0) if file == chunks_size - 1 else (chunk, file + 1)


def encode_episode(frames: np.ndarray) -> bytes:
    """One episode's (T, H, W, 3) uint8 frames as an MP4 in memory, with LeRobot's encoder settings.

    LeRobot also encodes each episode on its own, then appends it to the camera's
    current file by stream copy (``concatenate_video_files``), so the episode's encoded
    size is known when deciding whether the file is full.
    """
    import av

    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp4") as container:
        stream = container.add_stream(VCODEC, FPS, options={"g": str(GOP), "crf": str(CRF), "preset": str(PRESET)})
        stream.pix_fmt = PIX_FMT
        stream.height, stream.width = frames.shape[1:3]
        for frame in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buffer.getvalue()


class _VideoFile:
    """One MP4 of one camera: episodes appended back to back by stream copy, timestamps continuing."""

    def __init__(self, path: Path) -> None:
        import av

        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self.frames = 0
        self.bytes = 0
        self._container = av.open(str(path), "w")
        self._stream: Any = None

    def append(self, segment: bytes) -> tuple[float, float]:
        """Append an episode encoded by :func:`encode_episode`; returns its (from, to) timestamps in this file."""
        import av

        start = self.frames
        with av.open(io.BytesIO(segment)) as source:
            stream = source.streams.video[0]
            if self._stream is None:
                self._stream = self._container.add_stream_from_template(stream, opaque=True)  # no re-encoding
            offset = round(start / FPS / stream.time_base)
            for packet in source.demux(stream):
                if packet.dts is None:  # the demuxer's empty end-of-stream packet
                    continue
                packet.pts += offset
                packet.dts += offset
                packet.stream = self._stream
                self._container.mux(packet)
            self.frames += stream.frames
        self.bytes += len(segment)
        return start / FPS, self.frames / FPS

    def close(self) -> None:
        self._container.close()


class _Writer:
    """Writes the dataset into ``root`` (a fresh folder), episode by episode."""

    def __init__(self, root: Path, image_shape: tuple[int, int], *, video: bool, chunks_size: int,
                 data_files_size_in_mb: float, video_files_size_in_mb: float) -> None:
        import pyarrow as pa

        self.root = root
        self.image_shape = image_shape
        self.video = video
        self.chunks_size = chunks_size
        self.data_limit = data_files_size_in_mb * 1024**2
        self.video_limit = video_files_size_in_mb * 1024**2
        self.features = lerobot_features(image_shape, video=video)
        self.schema = data_schema(self.features)
        self.tasks: dict[str, int] = {}
        self.episode_rows: list[dict[str, Any]] = []
        self.episode_stats: list[dict[str, dict[str, np.ndarray]]] = []
        self.frames = 0
        self._data_pos = (0, 0)
        self._data_writer: Any = None
        self._data_bytes = 0
        self._videos: dict[str, _VideoFile] = {}
        self._video_pos = {key: (0, 0) for key in CAMERAS}
        self._pa = pa

    # data files ---------------------------------------------------------
    def _data_file(self, incoming: int) -> tuple[int, int]:
        import pyarrow.parquet as pq

        if self._data_writer is not None and self._data_bytes + incoming >= self.data_limit:
            self._data_writer.close()
            self._data_writer = None
            self._data_pos = _update_indices(*self._data_pos, self.chunks_size)
        if self._data_writer is None:
            chunk, file = self._data_pos
            path = self.root / DATA_PATH.format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            # LeRobot's writer settings (dataset_writer._save_episode_data).
            self._data_writer = pq.ParquetWriter(path, self.schema, compression="snappy", use_dictionary=True)
            self._data_bytes = 0
        return self._data_pos

    def _video_file(self, key: str, incoming: int) -> tuple[int, int, _VideoFile]:
        current = self._videos.get(key)
        if current is not None and current.bytes + incoming >= self.video_limit:  # LeRobot's rule
            current.close()
            current = None
            self._video_pos[key] = _update_indices(*self._video_pos[key], self.chunks_size)
        if current is None:
            chunk, file = self._video_pos[key]
            path = self.root / VIDEO_PATH.format(video_key=key, chunk_index=chunk, file_index=file)
            current = self._videos[key] = _VideoFile(path)
        return (*self._video_pos[key], current)

    def add(self, source: SourceEpisode, episode: ds.Episode, *, settle_steps: bool, settle_dropped: int | None = None,
            noops_dropped: int = 0) -> None:
        """Append one episode: its rows, its video frames, its metadata row and stats.

        ``settle_dropped`` and ``noops_dropped`` record steps removed before this call
        (:func:`libero_gym.data.pipeline.prepare_episode`) in the episode row."""
        pa = self._pa
        columns = episode_columns(episode, settle_steps=settle_steps)
        length = len(columns["action"])
        if length < 1:
            raise DatasetError(f"{source.path}: data/{source.demo} has no steps after its settle steps")
        episode_index = len(self.episode_rows)
        task_index = self.tasks.setdefault(source.task, len(self.tasks))
        frame_index = np.arange(length, dtype=np.int64)
        numeric = {
            "observation.state": columns["observation.state"],
            "action": columns["action"],
            "timestamp": (frame_index / FPS).astype(np.float32),
            "frame_index": frame_index,
            "episode_index": np.full(length, episode_index, dtype=np.int64),
            "index": np.arange(self.frames, self.frames + length, dtype=np.int64),
            "task_index": np.full(length, task_index, dtype=np.int64),
        }
        # Stats as LeRobot's compute_episode_stats: vectors per dimension, scalars as (1,).
        stats = {key: feature_stats(value.reshape(length, -1)) for key, value in numeric.items()}
        stats.update({key: image_stats(columns[key]) for key in CAMERAS})
        arrays: dict[str, Any] = {}
        for key, field in zip(self.schema.names, self.schema):
            if key in CAMERAS:
                arrays[key] = pa.array([{"bytes": _png(f), "path": None} for f in columns[key]], type=field.type)
            elif pa.types.is_fixed_size_list(field.type):
                values = numeric[key]
                arrays[key] = pa.FixedSizeListArray.from_arrays(pa.array(values.reshape(-1)), values.shape[1])
            else:
                arrays[key] = pa.array(numeric[key], type=field.type)
        table = pa.Table.from_pydict(arrays, schema=self.schema)
        chunk, file = self._data_file(table.nbytes)
        self._data_writer.write_table(table)
        self._data_bytes += table.nbytes
        row: dict[str, Any] = {
            "episode_index": episode_index,
            "tasks": [source.task],
            "length": length,
            "data/chunk_index": chunk,
            "data/file_index": file,
            "dataset_from_index": self.frames,
            "dataset_to_index": self.frames + length,
        }
        if self.video:
            for key in CAMERAS:
                segment = encode_episode(columns[key])
                v_chunk, v_file, writer = self._video_file(key, len(segment))
                start, end = writer.append(segment)
                if round(end * FPS) - round(start * FPS) != length:  # an encoder that drops frames: a bug
                    raise RuntimeError(f"{source.path}: data/{source.demo}: the {key} video holds "
                                       f"{round((end - start) * FPS)} frames, expected {length}")
                row.update({f"videos/{key}/chunk_index": v_chunk, f"videos/{key}/file_index": v_file,
                            f"videos/{key}/from_timestamp": start, f"videos/{key}/to_timestamp": end})
        if settle_dropped is None:
            settle_dropped = 0 if settle_steps else episode.settle_steps
        row.update(_provenance_columns(source, episode, dropped=settle_dropped, noops=noops_dropped))
        self.episode_rows.append(row)
        self.episode_stats.append(stats)
        self.frames += length

    # finish ---------------------------------------------------------------
    def finish(self) -> None:
        """Close the files and write ``meta/``."""
        if self._data_writer is not None:
            self._data_writer.close()
        for writer in self._videos.values():
            writer.close()
        self._write_episodes()
        self._write_tasks()
        stats = {key: aggregate_stats([s[key] for s in self.episode_stats]) for key in self.episode_stats[0]}
        _write_json(self.root / STATS_PATH, _jsonable(stats))
        if self.video:
            for key in CAMERAS:
                self.features[key]["info"] = video_info(
                    self.root / VIDEO_PATH.format(video_key=key, chunk_index=0, file_index=0))
        info = {
            "codebase_version": CODEBASE_VERSION,
            "robot_type": ROBOT_TYPE,
            "total_episodes": len(self.episode_rows),
            "total_frames": self.frames,
            "total_tasks": len(self.tasks),
            "chunks_size": self.chunks_size,
            "data_files_size_in_mb": _mb(self.data_limit),
            "video_files_size_in_mb": _mb(self.video_limit),
            "fps": FPS,
            "splits": {"train": f"0:{len(self.episode_rows)}"},
            "data_path": DATA_PATH,
            "video_path": VIDEO_PATH if self.video else None,
            "features": self.features,
        }
        _write_json(self.root / INFO_PATH, info)

    def _write_episodes(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        rows = [
            {**row, **{f"stats/{key}/{name}": value.tolist() for key, feature in stats.items()
                       for name, value in feature.items()}}
            for row, stats in zip(self.episode_rows, self.episode_stats)
        ]
        columns = {key: [row[key] for row in rows] for key in rows[0]}
        types = _provenance_types()  # explicit: a column of all-None successes would be typed null
        table = pa.Table.from_pydict({key: pa.array(values, types.get(key)) for key, values in columns.items()})
        for position in range(0, len(rows), _EPISODE_ROWS_PER_FILE):  # one file is plenty below that
            chunk, file = _file_position(position // _EPISODE_ROWS_PER_FILE, self.chunks_size)
            path = self.root / EPISODES_PATH.format(chunk_index=chunk, file_index=file)
            path.parent.mkdir(parents=True, exist_ok=True)
            part = table.slice(position, _EPISODE_ROWS_PER_FILE)
            part = part.append_column("meta/episodes/chunk_index", pa.array([chunk] * part.num_rows, pa.int64()))
            part = part.append_column("meta/episodes/file_index", pa.array([file] * part.num_rows, pa.int64()))
            pq.write_table(part, path, compression="snappy")

    def _write_tasks(self) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        tasks = sorted(self.tasks, key=self.tasks.__getitem__)
        table = pa.table({"task_index": pa.array([self.tasks[t] for t in tasks], pa.int64()),
                          "task": pa.array(tasks, pa.string())})
        # LeRobot writes a pandas DataFrame indexed by the task string; this metadata is what
        # makes pandas.read_parquet (LeRobot's load_tasks) restore that index.
        table = table.replace_schema_metadata({b"pandas": json.dumps(_PANDAS_TASKS_METADATA).encode()})
        path = self.root / TASKS_PATH
        path.parent.mkdir(parents=True, exist_ok=True)
        pq.write_table(table, path)

    def abort(self) -> None:
        """Close open files (the temporary folder is removed by the caller)."""
        with contextlib.suppress(Exception):
            if self._data_writer is not None:
                self._data_writer.close()
        for writer in self._videos.values():
            with contextlib.suppress(Exception):
                writer.close()


_EPISODE_ROWS_PER_FILE = 10_000
"""Episode metadata rows per ``meta/episodes`` file (LeRobot rolls by size; ~1-5 kB a row
here, so 10000 rows stay within its 100 MB data file size)."""
_PANDAS_TASKS_METADATA: dict[str, Any] = {
    "index_columns": ["task"],
    "column_indexes": [{"name": None, "field_name": None, "pandas_type": "unicode", "numpy_type": "object",
                        "metadata": {"encoding": "UTF-8"}}],
    "columns": [
        {"name": "task_index", "field_name": "task_index", "pandas_type": "int64", "numpy_type": "int64",
         "metadata": None},
        {"name": "task", "field_name": "task", "pandas_type": "unicode", "numpy_type": "object", "metadata": None},
    ],
    "creator": {"library": "pyarrow", "version": "libero_gym"},
    "pandas_version": "2.2.3",
}


def _file_position(number: int, chunks_size: int) -> tuple[int, int]:
    return number // chunks_size, number % chunks_size


def _mb(size: float) -> int | float:
    value = size / 1024**2
    return int(value) if float(value).is_integer() else value


def _provenance_columns(source: SourceEpisode, episode: ds.Episode, *, dropped: int, noops: int) -> dict[str, Any]:
    prov = source.provenance
    attrs = episode.attrs
    success = episode.success
    values = {
        "source_file": str(source.path.resolve()),
        "source_demo": source.demo,
        "policy": str(prov.get("agent") or "unknown"),  # LIBERO's own files: human teleoperation, not recorded
        "checkpoint": str(prov.get("checkpoint") or ""),
        "sampling": str(prov.get("sampling") or ""),  # a trained agent's: deterministic or stochastic
        "suite": str(prov.get("suite", "")),
        "task_id": int(prov.get("task_id", -1)),
        "init_state_id": int(attrs.get("init_state_id", -1)),
        "seed": int(attrs.get("seed", -1)),
        "success": None if success is None else bool(success),
        "settle_steps_dropped": int(dropped),
        "noops_dropped": int(noops),
        "init_state": np.asarray(episode.init_state, dtype=np.float64).tolist(),
    }
    return {PROVENANCE_PREFIX + key: value for key, value in values.items()}


def _provenance_types() -> dict[str, Any]:
    import pyarrow as pa

    text = ("source_file", "source_demo", "policy", "checkpoint", "sampling", "suite")
    types: dict[str, Any] = {key: pa.string() for key in text}
    types.update({key: pa.int64() for key in ("task_id", "init_state_id", "seed", "settle_steps_dropped",
                                                 "noops_dropped")})
    types.update({"success": pa.bool_(), "init_state": pa.list_(pa.float64())})
    return {PROVENANCE_PREFIX + key: value for key, value in types.items()}




CARD_FEATURES: list[tuple[str, str, str]] = [
    ("observation.images.image", "video / image (H, W, 3)", "agentview camera, upright"),
    ("observation.images.image2", "video / image (H, W, 3)", "wrist (eye-in-hand) camera, upright"),
    ("observation.state", "float32 (8)", "ee position (3, m) and axis-angle (3, rad) in the robot base frame, "
     "gripper finger qpos (2, m); before the step's action"),
    ("action", "float32 (7)", "OSC_POSE delta (3 position, 3 axis-angle; [-1, 1]) + gripper (-1 open, +1 close)"),
    ("timestamp", "float32", "frame_index / 20 (s)"),
    ("frame_index, episode_index, index, task_index", "int64", "step, episode, frame in dataset, task"),
]
"""The card's feature rows for this format."""


# ---------------------------------------------------------------------- features / schema / info
def lerobot_features(image_shape: tuple[int, int], *, video: bool) -> dict[str, dict[str, Any]]:
    """The ``features`` of ``meta/info.json`` (video ``info`` is filled from the written files)."""
    height, width = image_shape
    features: dict[str, dict[str, Any]] = {}
    for key in CAMERAS:
        features[key] = {"dtype": "video" if video else "image", "shape": [height, width, 3],
                         "names": ["height", "width", "channels"]}
        if not video:
            features[key]["info"] = None
    features["observation.state"] = {"dtype": "float32", "shape": [len(STATE_NAMES)], "names": list(STATE_NAMES)}
    features["action"] = {"dtype": "float32", "shape": [len(ACTION_NAMES)], "names": list(ACTION_NAMES)}
    features.update({key: dict(value) for key, value in DEFAULT_FEATURES.items()})
    return features


def data_schema(features: dict[str, dict[str, Any]]) -> Any:
    """The Arrow schema of the data files: what ``datasets`` writes for LeRobot's ``hf_features``.

    ``image`` -> ``struct<bytes, path>`` (``datasets.Image``), shape (1,) -> the scalar,
    shape (n,) -> ``fixed_size_list[n]`` (``datasets.List(length=n)``); ``video``
    features are not in the parquet files. The ``huggingface`` schema metadata lets
    ``datasets`` restore the same features without being told.
    """
    import pyarrow as pa

    fields, hf = [], {}
    for key, feature in features.items():
        if feature["dtype"] == "video":
            continue
        if feature["dtype"] == "image":
            fields.append(pa.field(key, pa.struct([("bytes", pa.binary()), ("path", pa.string())])))
            hf[key] = {"_type": "Image"}
        elif list(feature["shape"]) == [1]:
            fields.append(pa.field(key, pa.from_numpy_dtype(np.dtype(feature["dtype"]))))
            hf[key] = {"dtype": feature["dtype"], "_type": "Value"}
        else:
            (length,) = feature["shape"]
            fields.append(pa.field(key, pa.list_(pa.from_numpy_dtype(np.dtype(feature["dtype"])), length)))
            hf[key] = {"feature": {"dtype": feature["dtype"], "_type": "Value"}, "length": length, "_type": "List"}
    return pa.schema(fields, metadata={b"huggingface": json.dumps({"info": {"features": hf}}).encode()})


def video_info(path: Path) -> dict[str, Any]:
    """A video feature's ``info``, probed from the file as LeRobot's ``get_video_info`` does.

    Keys of LeRobot 0.4 (``video.*``, ``video.is_depth_map``, ``has_audio``) plus the
    encoder settings and ``is_depth_map`` that LeRobot 0.6 adds.
    """
    import av

    with av.open(str(path), "r") as container:
        stream = container.streams.video[0]
        info = {
            "video.height": stream.height,
            "video.width": stream.width,
            "video.codec": stream.codec.canonical_name,
            "video.pix_fmt": stream.pix_fmt,
            "video.is_depth_map": False,
            "video.fps": int(stream.base_rate),
            "video.channels": 3,
            "has_audio": bool(container.streams.audio),
        }
    info.update({"video.g": GOP, "video.crf": CRF, "video.preset": PRESET, "is_depth_map": False})
    return info


def _jsonable(stats: dict[str, dict[str, np.ndarray]]) -> dict[str, dict[str, list]]:
    return {key: {name: np.asarray(value).tolist() for name, value in feature.items()}
            for key, feature in stats.items()}


def _write_json(path: Path, payload: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=4, ensure_ascii=False))


# ---------------------------------------------------------------------- entry point
def check_target(out: Path) -> None:
    """Raise unless ``out`` is absent or an empty folder (never merge into another dataset)."""
    if out.is_file():
        raise InvalidInputError(f"{out}: is a file; give a folder for the LeRobot dataset")
    if out.is_dir() and any(out.iterdir()):
        what = "a LeRobot dataset" if (out / INFO_PATH).exists() else "files"
        raise InvalidInputError(f"{out}: already holds {what}; give a new or empty folder (nothing was written)")


@contextlib.contextmanager
def _temporary_folder(out: Path) -> Iterator[Path]:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def export_lerobot(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    video: bool = True,
    settle_steps: bool = False,
    only_success: bool = False,
    filter_noops: bool = False,
    image_size: int | None = None,
    command: str = "",
    chunks_size: int = CHUNKS_SIZE,
    data_files_size_in_mb: float = DATA_FILES_SIZE_IN_MB,
    video_files_size_in_mb: float = VIDEO_FILES_SIZE_IN_MB,
) -> LeRobotExportResult:
    """Write LIBERO-layout episodes as a LeRobotDataset v3.0 in ``out``, atomically.

    Args:
        sources: collection folders, LIBERO HDF5 files, or folders of them (see
            :func:`find_sources`); their demos become episodes in this order.
        out: the dataset folder; must not exist or be empty.
        video: images as MP4 files (LeRobot's default) or PNG bytes in the parquet rows.
        settle_steps: keep each demo's leading settle steps (default: drop them, as
            LeRobot's LIBERO env runs them before the policy's first observation).
        only_success: from collection folders, only successful episodes.
        filter_noops: drop no-op steps by OpenVLA's rule (:mod:`libero_gym.data.noops`).
        image_size: render both cameras at this size from the stored states
            (:mod:`libero_gym.data.render`; default: the stored images).
        command: the command line, for the dataset card (:mod:`libero_gym.data.card`).
        chunks_size: files per ``chunk-XXX`` folder.
        data_files_size_in_mb: roll to a new data file past this (uncompressed Arrow) size.
        video_files_size_in_mb: roll to a new MP4 past about this size.

    Raises:
        DatasetError: a source is missing, not LIBERO's layout, without images, or of
            mixed image sizes.
        InvalidInputError: ``out`` holds something already (another dataset, files).
    """
    if chunks_size < 1 or data_files_size_in_mb <= 0 or video_files_size_in_mb <= 0:
        raise InvalidInputError("chunks_size and the file sizes must be positive")
    target = Path(out)
    check_target(target)
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    paths = [path for item in items for path in find_sources(item, only_success=only_success)]
    # Every file's task (to render); without rendering, scan_sources checks the stored images as well.
    files = {f.path: f for f in scan_files(list(dict.fromkeys(paths)), image_size=image_size or 1)}
    if image_size is None:
        episodes = scan_sources(paths)
    else:
        episodes = [SourceEpisode(path, demo, f.language, f.provenance, (image_size, image_size))
                    for path in paths for f in [files[path]] for demo in f.demos]
    options = StepOptions(settle_steps=settle_steps, filter_noops=filter_noops, image_size=image_size)
    if video:
        os.environ.setdefault("SVT_LOG", "1")  # SVT-AV1 prints its banner per stream otherwise; errors only
    records: list[card_lib.EpisodeRecord] = []
    actions: list[np.ndarray] = []
    states: list[np.ndarray] = []
    with _temporary_folder(target) as tmp, EpisodeRenderer(image_size or 0) as renderer:
        writer = _Writer(tmp, episodes[0].image_shape, video=video, chunks_size=chunks_size,
                         data_files_size_in_mb=data_files_size_in_mb, video_files_size_in_mb=video_files_size_in_mb)
        try:
            by_file: dict[Path, list[SourceEpisode]] = {}
            for source in episodes:
                by_file.setdefault(source.path, []).append(source)
            for path, wanted in by_file.items():
                demos = read_demos(path, [s.demo for s in wanted], images=image_size is None)
                for source, episode in zip(wanted, demos):
                    settle = episode.settle_steps
                    episode, record = prepare_episode(episode, options, task=files[path].task, renderer=renderer,
                                                      source=path, demo=source.demo)
                    writer.add(source, episode, settle_steps=True, settle_dropped=0 if settle_steps else settle,
                               noops_dropped=record.noops_dropped)
                    records.append(record)
                    actions.append(np.asarray(episode.actions, dtype=np.float32))
                    states.append(state_vector(episode))
            writer.finish()
        except BaseException:
            writer.abort()
            raise
        size = episodes[0].image_shape
        info = card_lib.CardInfo(
            title=target.name, format="a LeRobotDataset (codebase version v3.0)", command=command,
            features=CARD_FEATURES, filter_noops=filter_noops,
            images=(f"{size[0]}x{size[1]}, {'MP4 (AV1, yuv420p, CRF 30)' if video else 'PNG in the parquet rows'}, "
                    "**upright**: LIBERO's render rotated 180 degrees (`img[::-1, ::-1]`), as LeRobot's LIBERO "
                    "datasets and env" + (f"; rendered from the stored states at {image_size} px" if image_size else "")),
            settle_steps="kept" if settle_steps else "dropped (LeRobot's LIBERO env runs them before frame 0)",
            sources=[str(item) for item in items], provenance=list({id(s.provenance): s.provenance
                                                                   for s in episodes}.values()),
            collection_success=[c for item in items if (c := card_lib.collection_success(Path(item)))],
            tasks={task: sum(1 for s in episodes if s.task == task) for task in writer.tasks}, episodes=records,
        )
        card_lib.write_card(tmp, info, actions, states)
        _publish(tmp, target)
    return LeRobotExportResult(target, len(writer.episode_rows), writer.frames,
                               sorted(writer.tasks, key=writer.tasks.__getitem__), video, records)


def _publish(tmp: Path, target: Path) -> None:
    """Move the finished folder onto ``target`` (an empty folder there is replaced, a full one refused)."""
    for path in [*tmp.rglob("*"), tmp]:  # mkdtemp made the folder 0700
        set_default_mode(path)
    try:
        os.replace(tmp, target)  # rename(2): atomic; fails if target is a non-empty folder
    except OSError:
        check_target(target)  # someone else finished first: say what is there
        raise
    _fsync_dir(target.parent)
