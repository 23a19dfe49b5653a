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

from libero_gym import suites
from libero_gym.data import dataset as ds
from libero_gym.data.collect import MANIFEST_NAME, finished_summaries, shard_path
from libero_gym.errors import DatasetError

EXPORT_MANIFEST = "manifest.json"
FORMATS: tuple[str, ...] = ("hdf5", "lerobot")
"""Export formats: LIBERO's HDF5 files (this module), a LeRobotDataset v3.0 (:mod:`libero_gym.data.lerobot`)."""


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


def _episodes(paths: list[Path]) -> Iterator[ds.Episode]:
    for path in paths:
        yield from ds.iter_episodes(path)


def export_collection(
    collection_dir: str | Path,
    out_dir: str | Path | None = None,
    *,
    compression: str | None = None,
    only_success: bool = False,
) -> ExportResult:
    """Write one LIBERO file per task from a collection folder.

    Args:
        collection_dir: folder that ``collect`` wrote (holds ``episodes/``).
        out_dir: where to write (default: ``collection_dir``).
        compression: h5py compression (``None`` as LIBERO's files, ``gzip``, ``lzf``).
        only_success: export only successful episodes, even if failures were kept.

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
    for (suite, task_id), indices in sorted(by_task.items()):
        task = suites.get_task(suite, task_id)
        target = out / ds.dataset_file_name(task)
        provenance = {
            **plan.get("provenance", {}),
            "episode_indices": indices,
            "seeds": [summaries[i]["seed"] for i in indices],
            "exported_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        }
        ds.write_dataset(
            target, _episodes([shard_path(collection, i) for i in indices]), task,
            provenance=provenance, compression=compression,
        )
        frames = sum(int(summaries[i]["length"]) for i in indices)
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
    return ExportResult(files, manifest, total_episodes, total_frames)
