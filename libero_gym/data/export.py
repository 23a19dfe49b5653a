"""Export collected episodes as LIBERO datasets: one ``<task name>_demo.hdf5`` per task.

Reads the per-episode shards of a collection folder (see
:mod:`libero_gym.data.collect`), groups the kept episodes by task in episode
index order, streams each task's demos into one LIBERO-layout file (atomically:
a killed export leaves the previous file untouched) and writes ``manifest.json``
listing what was exported.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym import suites
from libero_gym.data import card as card_lib
from libero_gym.data import dataset as ds
from libero_gym.data.noops import filter_episode
from libero_gym.data.pipeline import state_vector
from libero_gym.data.collect import MANIFEST_NAME, finished_summaries, shard_path
from libero_gym.errors import DatasetError

EXPORT_MANIFEST = "manifest.json"
FORMATS: tuple[str, ...] = ("hdf5", "lerobot", "rlds")
"""Export formats: LIBERO's HDF5 files (this module), a LeRobotDataset v3.0 (:mod:`libero_gym.data.lerobot`),
an RLDS dataset (:mod:`libero_gym.data.rlds`)."""


def check_formats(names: str | tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Parse ``"hdf5,lerobot"`` (or a sequence of names) into known format names, in order, without repeats.

    Raises:
        InvalidInputError: an unknown name, or none at all.
    """
    from libero_gym.errors import InvalidInputError

    items = names.split(",") if isinstance(names, str) else list(names)
    parsed = tuple(dict.fromkeys(item.strip() for item in items if item.strip()))
    unknown = [name for name in parsed if name not in FORMATS]
    if unknown or not parsed:
        raise InvalidInputError(f"format must be one of {list(FORMATS)} (comma-separated), got {names!r}")
    return parsed


@dataclasses.dataclass
class ExportResult:
    """What an export wrote."""

    files: list[Path]
    """One LIBERO file per task."""
    manifest: Path
    """The manifest JSON."""
    episodes: int
    """Demos written, over all files."""
    frames: int
    """Steps written, over all files."""
    card: Path | None = None
    """The dataset card (``README.md``)."""
    records: list[card_lib.EpisodeRecord] = dataclasses.field(default_factory=list)
    """Per exported demo: steps, no-ops dropped, success."""


def _episodes(paths: list[Path], *, filter_noops: bool, records: list[card_lib.EpisodeRecord],
              actions: list[np.ndarray], states: list[np.ndarray]) -> Iterator[ds.Episode]:
    """The demos of ``paths`` (no-op filtered if asked), noting each in ``records`` and its policy steps'
    float32 action and state in ``actions`` and ``states`` (for the card)."""
    for path in paths:
        for demo, episode in enumerate(ds.iter_episodes(path)):
            dropped, whole = 0, False
            if filter_noops:
                episode, report = filter_episode(episode)
                dropped, whole = report.dropped, report.kept_whole
                episode.attrs[NOOPS_ATTR] = dropped
            steps = episode.policy_steps
            actions.append(episode.actions[steps].astype(np.float32))
            states.append(state_vector(episode)[steps])
            records.append(card_lib.EpisodeRecord(path.name, f"demo_{demo}", episode.num_samples, dropped,
                                                  episode.success, whole))
            yield episode


def export_collection(
    collection_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    compression: str | None = None,
    only_success: bool = False,
    filter_noops: bool = False,
    command: str = "",
) -> ExportResult:
    """Write one LIBERO file per task from a collection folder.

    Args:
        collection_dir: folder that ``collect`` wrote (holds ``episodes/``).
        out_dir: where to write (default: ``collection_dir``).
        compression: h5py compression (``None`` as LIBERO's files, ``gzip``, ``lzf``).
        only_success: export only successful episodes, even if failures were kept.
        filter_noops: drop no-op steps by OpenVLA's rule (:mod:`libero_gym.data.noops`); each demo
            records how many in its ``noops_dropped`` attribute.
        command: the command line, for the dataset card (``README.md`` and
            ``dataset_statistics.json``, :mod:`libero_gym.data.card`, written beside the files).

    Raises:
        DatasetError: no collection there, or no episode to export.
    """
    collection = Path(collection_dir)
    out = Path(out_dir) if out_dir is not None else collection
    summaries = finished_summaries(collection)
    if not summaries:
        raise DatasetError(f"{collection}: no collected episodes (expected {collection}/episodes/ep_*.hdf5)")
    plan: dict[str, Any] = {}
    with_manifest = collection / MANIFEST_NAME
    if with_manifest.exists():
        plan = json.loads(with_manifest.read_text()).get("plan", {})
    by_task: dict[tuple[str, int], list[int]] = {}
    for index in sorted(summaries):
        summary = summaries[index]
        if summary.get("kept") and (summary.get("success") or not only_success):
            by_task.setdefault((summary["suite"], int(summary["task_id"])), []).append(index)
    if not by_task:
        raise DatasetError(f"{collection}: no kept episodes to export")
    files, entries, total_episodes, total_frames = [], [], 0, 0
    records: list[card_lib.EpisodeRecord] = []
    actions: list[np.ndarray] = []
    states: list[np.ndarray] = []
    for (suite, task_id), indices in sorted(by_task.items()):
        task = suites.get_task(suite, task_id)
        target = out / ds.dataset_file_name(task)
        provenance = {
            **plan.get("provenance", {}),
            "episode_indices": indices,
            "seeds": [summaries[i]["seed"] for i in indices],
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        first = len(records)
        ds.write_dataset(
            target, _episodes([shard_path(collection, i) for i in indices], filter_noops=filter_noops,
                              records=records, actions=actions, states=states), task,
            provenance=provenance, compression=compression,
        )
        # policy steps, as the collection summaries count them (the filter may have dropped some)
        frames = sum(len(a) for a in actions[first:])
        successes = sum(bool(summaries[i]["success"]) for i in indices)
        files.append(target)
        entries.append(
            {
                "file": target.name,
                "suite": suite,
                "task_id": task_id,
                "task_name": task.name,
                "language_instruction": task.language,
                "num_demos": len(indices),
                "total_steps": frames,
                "successes": successes,
                "episode_indices": indices,
            }
        )
        total_episodes += len(indices)
        total_frames += frames
    manifest = out / EXPORT_MANIFEST
    ds.write_json_atomic(
        manifest,
        {
            "collection": str(collection.resolve()),
            "files": entries,
            "num_demos": total_episodes,
            "total_steps": total_frames,
            "provenance": plan.get("provenance", {}),
        },
    )
    info = card_lib.CardInfo(
        title=out.resolve().name, format="LIBERO-layout HDF5 files (one `<task name>_demo.hdf5` per task)",
        command=command, features=CARD_FEATURES, images=_images_line(collection, indices_of(by_task)),
        filter_noops=filter_noops,
        settle_steps=("dropped by the no-op filter" if filter_noops else
                      "kept: each demo's first `settle_steps` steps (attribute) are the reset's no-ops; "
                      "the statistics cover the policy's steps only"),
        sources=[str(collection)], provenance=[plan.get("provenance", {})],
        collection_success=[c for c in [card_lib.collection_success(collection)] if c],
        tasks={entry["language_instruction"]: entry["num_demos"] for entry in entries}, episodes=records,
    )
    card = card_lib.write_card(out, info, actions, states)
    return ExportResult(files, manifest, total_episodes, total_frames, card, records)


NOOPS_ATTR = "noops_dropped"
"""Per-demo attribute of a filtered export: steps the no-op filter removed."""
CARD_FEATURES: list[tuple[str, str, str]] = [
    ("actions", "float64 (T, 7)", "OSC_POSE delta (3 position, 3 axis-angle; [-1, 1]) + gripper (-1 open, +1 close)"),
    ("states", "float64 (T, S)", "flattened MuJoCo state (time, qpos, qvel) before action t"),
    ("robot_states", "float64 (T, 9)", "gripper qpos (2, m), ee position (3, m), ee quaternion xyzw (4)"),
    ("rewards, dones", "uint8 (T,)", "1 on the success step; 1 on the last step"),
    ("obs/agentview_rgb, obs/eye_in_hand_rgb", "uint8 (T, H, W, 3)",
     "cameras as rendered: **upside down** (LIBERO's convention, not rotated)"),
    ("obs/ee_states", "float64 (T, 6)", "ee position (3, m) + axis-angle (3, rad), robot base frame"),
    ("obs/gripper_states, obs/joint_states", "float64 (T, 2), (T, 7)", "finger qpos (m), arm joint positions (rad)"),
    ("obs/ee_pos, obs/ee_ori", "float64 (T, 3), (T, 3)", "ee position (m), axis-angle (rad)"),
]
"""The card's feature rows for LIBERO's layout (the statistics' state is obs/ee_states + obs/gripper_states)."""


def indices_of(by_task: dict[tuple[str, int], list[int]]) -> list[int]:
    """Every exported episode index."""
    return [i for indices in by_task.values() for i in indices]


def _images_line(collection: Path, indices: list[int]) -> str:
    import h5py

    if not indices:
        return "none"
    with h5py.File(shard_path(collection, indices[0]), "r") as file:
        obs = file["data"]["demo_0"]["obs"]
        if "agentview_rgb" not in obs:
            return "none (collected with --no-images)"
        height, width = obs["agentview_rgb"].shape[1:3]
    return (f"{height}x{width}, uint8, **upside down** as LIBERO stores them (OpenGL convention, "
            "`macros_image_convention=opengl`); rotate 180 degrees (`img[::-1, ::-1]`) for an upright view")
