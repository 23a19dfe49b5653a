"""Export LIBERO-layout episodes as an RLDS dataset (TFDS on-disk format), as OpenVLA reads LIBERO.

OpenVLA, OpenVLA-OFT and Octo load their LIBERO sets (``libero_*_no_noops``) with
``tfds.builder(name, data_dir=...)`` / ``tfds.builder_from_directory(...)``, then
``.as_dataset(split="train")``: one example per episode, with a nested ``steps``
dataset. This module writes that layout::

    OUT/
    +-- README.md                       the dataset card (libero_gym.data.card)
    +-- dataset_statistics.json         OpenVLA's statistics layout
    +-- NAME/1.0.0/
        +-- dataset_info.json           name, version, splits (shard lengths, bytes), file format
        +-- features.json               the FeaturesDict below, as TFDS serialises it
        +-- NAME-train.tfrecord-00000-of-0000N   one tf.train.Example per episode

so ``tfds.builder("NAME", data_dir="OUT")`` (OpenVLA's ``data_root_dir``) and
``tfds.builder_from_directory("OUT/NAME/1.0.0")`` both read it.

Features (those of OpenVLA's LIBERO RLDS builders; per step):

============================  ===========================  ===================================
feature                       TFDS feature                 value
============================  ===========================  ===================================
observation/image             Image (H, W, 3) uint8        agentview, upright (LIBERO's render
                                                           rotated 180 degrees), JPEG or PNG
observation/wrist_image       Image (H, W, 3) uint8        wrist camera, upright
observation/state             Tensor (8,) float32          ee pos (3, m), ee axis-angle (3,
                                                           rad), gripper qpos (2, m)
observation/joint_state       Tensor (7,) float32          arm joint positions (rad)
action                        Tensor (7,) float32          OSC_POSE delta + gripper (-1 open)
discount                      Scalar float32               1.0
reward                        Scalar float32               1.0 on the success step
is_first / is_last            Scalar bool                  first / last step of the episode
is_terminal                   Scalar bool                  last step of a successful episode
language_instruction          Text                         the task's instruction
============================  ===========================  ===================================

and per episode ``episode_metadata``: ``file_path`` (source file), ``demo`` (its
``demo_<i>``), ``noops_dropped`` (steps the no-op filter removed).

Written without TensorFlow: an example is a ``tf.train.Example`` protobuf, which TFDS
fills with one flattened key per leaf (``steps/observation/image`` holds the T
encoded frames, ``steps/action`` the T x 7 floats, booleans as int64), and a TFRecord
file frames each record as ``uint64 length, uint32 masked CRC32C(length), data,
uint32 masked CRC32C(data)``. Both are stable, documented formats
(``tensorflow/core/example/{example,feature}.proto``, ``tensorflow/core/lib/io/record_writer.cc``);
``features.json`` and ``dataset_info.json`` are what TFDS 4.9 writes for this
FeaturesDict (checked field by field against a TFDS-built dataset). So the export
needs neither TensorFlow (~1.4 GB) nor TFDS; reading it does.

Images: JPEG (quality 95, 4:2:0, what ``tf.image.encode_jpeg`` and so OpenVLA's
builders give by default) or PNG (exact pixels, larger).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym.data import card as card_lib
from libero_gym.data import dataset as ds
from libero_gym.data.pipeline import StepOptions, prepare_episode, read_demos, scan_files, state_vector
from libero_gym.errors import DatasetError, InvalidInputError

VERSION = "1.0.0"
"""Dataset version (the folder under NAME, as OpenVLA's LIBERO sets)."""
SPLIT = "train"
"""The one split, as OpenVLA's LIBERO sets."""
SHARD_SIZE_MB = 100
"""Start a new TFRecord shard past this size (OpenVLA's LIBERO shards are ~100 MB)."""
JPEG_QUALITY = 95
"""``tf.image.encode_jpeg``'s default, which TFDS's Image feature uses."""
IMAGE_ENCODINGS = ("jpeg", "png")
NAME_PATTERN = re.compile(r"^[a-z][a-z0-9_]*$")
"""TFDS dataset names: snake case (``tfds.core.naming``)."""
_CLASS = "tensorflow_datasets.core.features."
FEATURE_DOCS = {
    "image": "Main camera RGB observation (agentview), upright.",
    "wrist_image": "Wrist camera RGB observation, upright.",
    "state": "Robot EEF state (6D pose: position m, axis-angle rad; 2D gripper qpos m).",
    "joint_state": "Robot joint angles (rad).",
    "action": "Robot EEF action (OSC_POSE delta: 3 position, 3 axis-angle; gripper -1 open, +1 close).",
    "discount": "Discount if provided, default to 1.",
    "reward": "Reward if provided, 1 on the success step.",
    "is_first": "True on first step of the episode.",
    "is_last": "True on last step of the episode.",
    "is_terminal": "True on last step of the episode if it is a terminal step (success).",
    "language_instruction": "Language Instruction.",
    "file_path": "Path to the original data file.",
    "demo": "The demo group in the original data file.",
    "noops_dropped": "Steps the no-op filter removed from the episode.",
}
"""``description`` of each feature (OpenVLA's builders' wording where they have one)."""


# ---------------------------------------------------------------------- features.json
def _tensor(shape: tuple[int, ...], dtype: str, doc: str) -> dict[str, Any]:
    kind = "scalar.Scalar" if not shape else "tensor_feature.Tensor"
    dims = {"dimensions": [str(d) for d in shape]} if shape else {}
    return {"pythonClassName": _CLASS + kind, "tensor": {"shape": dims, "dtype": dtype, "encoding": "none"},
            "description": doc}


def _image(shape: tuple[int, int], encoding: str, doc: str) -> dict[str, Any]:
    return {"pythonClassName": _CLASS + "image_feature.Image",
            "image": {"shape": {"dimensions": [str(shape[0]), str(shape[1]), "3"]}, "dtype": "uint8",
                      "encodingFormat": encoding}, "description": doc}


def _text(doc: str) -> dict[str, Any]:
    return {"pythonClassName": _CLASS + "text_feature.Text", "text": {}, "description": doc}


def _dict(features: dict[str, Any]) -> dict[str, Any]:
    return {"pythonClassName": _CLASS + "features_dict.FeaturesDict", "featuresDict": {"features": features}}


def features_json(image_shape: tuple[int, int], encoding: str) -> dict[str, Any]:
    """``features.json``: the episode FeaturesDict as TFDS serialises it (``FeatureConnector.to_json``)."""
    d = FEATURE_DOCS
    step = _dict({
        "observation": _dict({
            "image": _image(image_shape, encoding, d["image"]),
            "wrist_image": _image(image_shape, encoding, d["wrist_image"]),
            "state": _tensor((8,), "float32", d["state"]),
            "joint_state": _tensor((7,), "float32", d["joint_state"]),
        }),
        "action": _tensor((7,), "float32", d["action"]),
        "discount": _tensor((), "float32", d["discount"]),
        "reward": _tensor((), "float32", d["reward"]),
        "is_first": _tensor((), "bool", d["is_first"]),
        "is_last": _tensor((), "bool", d["is_last"]),
        "is_terminal": _tensor((), "bool", d["is_terminal"]),
        "language_instruction": _text(d["language_instruction"]),
    })
    return _dict({
        "steps": {"pythonClassName": _CLASS + "dataset_feature.Dataset", "sequence": {"feature": step, "length": "-1"}},
        "episode_metadata": _dict({"file_path": _text(d["file_path"]), "demo": _text(d["demo"]),
                                   "noops_dropped": _tensor((), "int64", d["noops_dropped"])}),
    })


def dataset_info_json(name: str, shard_lengths: Sequence[int], num_bytes: int, description: str) -> dict[str, Any]:
    """``dataset_info.json`` (TFDS's ``DatasetInfo`` proto as JSON; int64 fields as strings)."""
    return {
        "description": description,
        "fileFormat": "tfrecord",
        "moduleName": __name__,
        "name": name,
        "releaseNotes": {VERSION: "Exported by libero-gym."},
        "splits": [{"filepathTemplate": "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}", "name": SPLIT,
                    "numBytes": str(num_bytes), "shardLengths": [str(n) for n in shard_lengths]}],
        "version": VERSION,
    }


# ---------------------------------------------------------------------- tf.train.Example / TFRecord
def _varint(value: int) -> bytes:
    value &= (1 << 64) - 1  # int64 as protobuf sends it: two's complement, 10 bytes when negative
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2)."""
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


def _bytes_feature(values: Sequence[bytes]) -> bytes:
    return _field(1, b"".join(_field(1, v) for v in values))  # Feature.bytes_list{value*}


def _float_feature(values: np.ndarray) -> bytes:
    packed = np.ascontiguousarray(values, dtype="<f4").tobytes()
    return _field(2, _field(1, packed) if packed else b"")  # Feature.float_list{packed value}


def _int64_feature(values: Sequence[int]) -> bytes:
    packed = b"".join(_varint(int(v)) for v in values)
    return _field(3, _field(1, packed) if packed else b"")  # Feature.int64_list{packed value}


def encode_example(features: dict[str, bytes]) -> bytes:
    """A serialised ``tf.train.Example`` from encoded ``Feature`` messages by key."""
    entries = b"".join(_field(1, _field(1, key.encode()) + _field(2, value)) for key, value in features.items())
    return _field(1, entries)  # Example.features{map<string, Feature> feature = 1}


def _masked_crc(data: bytes) -> int:
    import google_crc32c

    crc = google_crc32c.value(data)
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def tfrecord_frame(record: bytes) -> bytes:
    """One TFRecord record: length, its masked CRC32C, the data, the data's masked CRC32C."""
    length = struct.pack("<Q", len(record))
    return length + struct.pack("<I", _masked_crc(length)) + record + struct.pack("<I", _masked_crc(record))


def encode_image(frame: np.ndarray, encoding: str) -> bytes:
    """One (H, W, 3) uint8 frame as JPEG (quality 95) or PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    if encoding == "jpeg":
        Image.fromarray(frame).save(buffer, format="jpeg", quality=JPEG_QUALITY)
    else:
        Image.fromarray(frame).save(buffer, format="png")
    return buffer.getvalue()


def episode_example(episode: ds.Episode, *, language: str, file_path: str, demo: str, noops_dropped: int,
                    encoding: str) -> bytes:
    """One episode as the serialised Example TFDS writes for :func:`features_json`."""
    length = episode.num_samples
    first = np.zeros(length, dtype=np.int64)
    first[0] = 1
    last = np.zeros(length, dtype=np.int64)
    last[-1] = 1
    terminal = last if episode.success is not False else np.zeros(length, dtype=np.int64)
    upright = {key: episode.obs[key][:, ::-1, ::-1] for key in ds.IMAGE_KEYS}  # LIBERO's render rotated 180
    text = language.encode()
    return encode_example({
        "steps/observation/image": _bytes_feature([encode_image(f, encoding) for f in upright["agentview_rgb"]]),
        "steps/observation/wrist_image": _bytes_feature([encode_image(f, encoding) for f in upright["eye_in_hand_rgb"]]),
        "steps/observation/state": _float_feature(state_vector(episode)),
        "steps/observation/joint_state": _float_feature(episode.obs["joint_states"]),
        "steps/action": _float_feature(episode.actions),
        "steps/discount": _float_feature(np.ones(length)),
        "steps/reward": _float_feature(np.asarray(episode.rewards, dtype=np.float32)),
        "steps/is_first": _int64_feature(first),
        "steps/is_last": _int64_feature(last),
        "steps/is_terminal": _int64_feature(terminal),
        "steps/language_instruction": _bytes_feature([text] * length),
        "episode_metadata/file_path": _bytes_feature([file_path.encode()]),
        "episode_metadata/demo": _bytes_feature([demo.encode()]),
        "episode_metadata/noops_dropped": _int64_feature([noops_dropped]),
    })


# ---------------------------------------------------------------------- export
@dataclasses.dataclass
class RldsExportResult:
    """What :func:`export_rlds` wrote."""

    root: Path
    """The output folder (card and statistics)."""
    builder_dir: Path
    """``root/NAME/1.0.0``: what ``tfds.builder_from_directory`` takes."""
    episodes: int
    """Episodes written."""
    steps: int
    """Steps written."""
    shards: int
    """TFRecord files."""
    records: list[card_lib.EpisodeRecord]
    """Per episode: source, steps, no-ops dropped."""


def check_name(name: str) -> str:
    """Raise unless ``name`` is a TFDS dataset name (snake case)."""
    if not NAME_PATTERN.match(name):
        raise InvalidInputError(f"dataset name must be snake case ([a-z][a-z0-9_]*, as TFDS names), got {name!r}")
    return name


def check_target(out: Path) -> None:
    """Raise unless ``out`` is absent or an empty folder (never merge into another dataset)."""
    if out.is_file():
        raise InvalidInputError(f"{out}: is a file; give a new or empty folder for the RLDS dataset")
    if out.is_dir() and any(out.iterdir()):
        raise InvalidInputError(f"{out}: already holds files; give a new or empty folder (nothing was written)")


def export_rlds(
    sources: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
    out: str | os.PathLike[str],
    *,
    name: str = "libero_gym",
    options: StepOptions = StepOptions(),
    only_success: bool = False,
    image_encoding: str = "jpeg",
    shard_size_mb: float = SHARD_SIZE_MB,
    command: str = "",
) -> RldsExportResult:
    """Write LIBERO-layout episodes as an RLDS dataset in ``out``, atomically.

    Args:
        sources: collection folders, LIBERO HDF5 files, or folders of them
            (:func:`libero_gym.data.lerobot.find_sources`); their demos become episodes in order.
        out: the output folder; must not exist or be empty.
        name: the TFDS dataset name (snake case; OpenVLA's are ``libero_goal_no_noops`` etc.).
        options: settle steps, no-op filter, image size (:class:`libero_gym.data.pipeline.StepOptions`).
        only_success: from collection folders, only successful episodes.
        image_encoding: ``jpeg`` (as OpenVLA's sets) or ``png`` (exact pixels).
        shard_size_mb: start a new TFRecord file past this size.
        command: the command line, for the card.

    Raises:
        DatasetError: a source is missing, not LIBERO's layout, without images (and no
            ``image_size``), or of mixed image sizes.
        InvalidInputError: a bad name, encoding, or an ``out`` that holds something.
    """
    from libero_gym.data.lerobot import _publish, _temporary_folder, find_sources
    from libero_gym.data.render import EpisodeRenderer

    check_name(name)
    if image_encoding not in IMAGE_ENCODINGS:
        raise InvalidInputError(f"image_encoding must be one of {list(IMAGE_ENCODINGS)}, got {image_encoding!r}")
    if shard_size_mb <= 0:
        raise InvalidInputError(f"shard_size_mb must be positive, got {shard_size_mb}")
    target = Path(out)
    check_target(target)
    items = [sources] if isinstance(sources, (str, os.PathLike)) else list(sources)
    paths = [path for item in items for path in find_sources(item, only_success=only_success)]
    files = scan_files(paths, image_size=options.image_size)
    size = options.image_size
    image_shape = (size, size) if size is not None else next(f.image_shape for f in files if f.image_shape)
    info = card_lib.CardInfo(
        title=name, format="an RLDS dataset (TFDS on-disk format, the layout of OpenVLA's LIBERO sets)",
        command=command, features=card_features(image_shape, image_encoding),
        images=(f"{image_shape[0]}x{image_shape[1]}, {image_encoding.upper()}, **upright**: LIBERO's render rotated "
                "180 degrees (`img[::-1, ::-1]`), as OpenVLA's LIBERO RLDS sets store them"
                + (f"; rendered from the stored states at {size} px" if size is not None else "")),
        filter_noops=options.filter_noops,
        settle_steps="kept" if options.settle_steps else "dropped (OpenVLA's sets start at the first policy step)",
        sources=[str(item) for item in items], provenance=[f.provenance for f in files],
        collection_success=[c for item in items if (c := card_lib.collection_success(Path(item)))],
        notes=[f"Read with `tfds.builder_from_directory('{name}/{VERSION}').as_dataset(split='train')`, or "
               f"`tfds.builder('{name}', data_dir='.')` from this folder (OpenVLA's `data_root_dir`)."],
    )
    limit = shard_size_mb * 1024**2
    actions, states, records = [], [], []
    with _temporary_folder(target) as tmp, EpisodeRenderer(size or 0) as renderer:
        builder_dir = tmp / name / VERSION
        builder_dir.mkdir(parents=True)
        shard_paths: list[Path] = []
        shard_lengths: list[int] = []
        handle: Any = None
        written = 0
        try:
            for file in files:
                for demo, episode in zip(file.demos, read_demos(file.path, file.demos, images=size is None)):
                    if only_success and episode.success is False:
                        continue
                    episode, record = prepare_episode(episode, options, task=file.task, renderer=renderer,
                                                      source=file.path, demo=demo)
                    frame = tfrecord_frame(episode_example(
                        episode, language=file.language, file_path=str(file.path.resolve()), demo=demo,
                        noops_dropped=record.noops_dropped, encoding=image_encoding))
                    if handle is None or (written > 0 and written + len(frame) > limit):
                        if handle is not None:
                            handle.close()
                        shard_paths.append(builder_dir / f".shard-{len(shard_paths):05d}")
                        shard_lengths.append(0)
                        handle = open(shard_paths[-1], "wb")  # noqa: SIM115 (closed at roll-over and below)
                        written = 0
                    handle.write(frame)
                    written += len(frame)
                    shard_lengths[-1] += 1
                    actions.append(episode.actions.astype(np.float32))
                    states.append(state_vector(episode))
                    records.append(record)
                    info.tasks[file.language] = info.tasks.get(file.language, 0) + 1
        finally:
            if handle is not None:
                handle.close()
        if not records:
            raise DatasetError("no episodes to export (all filtered out by --only-success)")
        count = len(shard_paths)
        for i, path in enumerate(shard_paths):
            path.rename(builder_dir / f"{name}-{SPLIT}.tfrecord-{i:05d}-of-{count:05d}")
        total = sum(p.stat().st_size for p in builder_dir.iterdir())
        description = f"LIBERO demonstrations exported by libero-gym ({len(records)} episodes); see ../../README.md."
        (builder_dir / "features.json").write_text(json.dumps(features_json(image_shape, image_encoding), indent=4))
        (builder_dir / "dataset_info.json").write_text(
            json.dumps(dataset_info_json(name, shard_lengths, total, description), indent=2))
        info.episodes = records
        card_lib.write_card(tmp, info, actions, states)
        _publish(tmp, target)
    return RldsExportResult(target, target / name / VERSION, len(records), sum(r.steps for r in records), count,
                            records)


def card_features(image_shape: tuple[int, int], encoding: str) -> list[tuple[str, str, str]]:
    """The card's feature rows for this format."""
    h, w = image_shape
    return [
        ("steps/observation/image", f"Image ({h}, {w}, 3) uint8, {encoding}",
         "agentview camera, upright (LIBERO's render rotated 180 degrees)"),
        ("steps/observation/wrist_image", f"Image ({h}, {w}, 3) uint8, {encoding}", "wrist (eye-in-hand) camera, upright"),
        ("steps/observation/state", "float32 (8)", "ee position (3, m) and axis-angle (3, rad) in the robot base "
         "frame, gripper finger qpos (2, m); before the step's action"),
        ("steps/observation/joint_state", "float32 (7)", "arm joint positions (rad)"),
        ("steps/action", "float32 (7)", "OSC_POSE delta (3 position, 3 axis-angle; [-1, 1]) + gripper (-1 open, +1 close)"),
        ("steps/reward", "float32", "1 on the success step, else 0"),
        ("steps/discount", "float32", "1"),
        ("steps/is_first, is_last", "bool", "first / last step of the episode"),
        ("steps/is_terminal", "bool", "last step of a successful episode (a failure's last step is a truncation)"),
        ("steps/language_instruction", "string", "the task's instruction"),
        ("episode_metadata/file_path, demo", "string", "source LIBERO file (absolute path) and its demo group"),
        ("episode_metadata/noops_dropped", "int64", "steps the no-op filter removed"),
    ]
