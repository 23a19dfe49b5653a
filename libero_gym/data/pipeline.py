"""What the VLA exports (LeRobot, RLDS) do to each demo before writing it.

In order, per demo read from a LIBERO-layout file:

1. **settle steps**: dropped unless asked for (the reset's no-op steps; the VLA
   envs run them before the policy's first observation);
2. **no-op filter** (``filter_noops``): OpenVLA's rule, :mod:`libero_gym.data.noops`;
3. **images** (``image_size``): both cameras rendered from the kept stored states
   at that size (:mod:`libero_gym.data.render`), else the stored images.

Shape legend: T steps of the demo, S flattened MuJoCo state.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym.data import dataset as ds
from libero_gym.data.card import EpisodeRecord
from libero_gym.data.noops import filter_episode
from libero_gym.errors import DatasetError
from libero_gym.suites import Task


@dataclasses.dataclass(frozen=True)
class StepOptions:
    """How demos become exported episodes."""

    settle_steps: bool = False
    """Keep each demo's leading settle steps."""
    filter_noops: bool = False
    """Drop no-op steps by OpenVLA's rule."""
    image_size: int | None = None
    """Render both cameras at this size from the stored states (None: the stored images)."""


def drop_leading(episode: ds.Episode, start: int) -> ds.Episode:
    """The episode without its first ``start`` steps (``settle_steps`` lowered to match)."""
    if start == 0:
        return episode
    attrs = dict(episode.attrs)
    if ds.SETTLE_STEPS_ATTR in attrs:
        attrs[ds.SETTLE_STEPS_ATTR] = max(0, episode.settle_steps - start)
    return dataclasses.replace(
        episode, actions=episode.actions[start:], states=episode.states[start:],
        robot_states=episode.robot_states[start:], rewards=episode.rewards[start:], dones=episode.dones[start:],
        obs={key: value[start:] for key, value in episode.obs.items()}, attrs=attrs,
    )


def prepare_episode(episode: ds.Episode, options: StepOptions, *, task: Task | None, renderer: Any = None,
                    source: Path | None = None, demo: str = "") -> tuple[ds.Episode, EpisodeRecord]:
    """Apply :class:`StepOptions` to one demo; returns it and its card record.

    Args:
        episode: the demo as read (images may be absent when ``options.image_size`` is set).
        options: what to do.
        task: its libero-gym task (needed to render).
        renderer: a :class:`libero_gym.data.render.EpisodeRenderer` at ``options.image_size``.
        source: the file it came from (for messages and the record).
        demo: its ``demo_<i>`` group.

    Raises:
        DatasetError: nothing left after the settle steps, or no way to render.
    """
    where = f"{source}: data/{demo}"
    settle = episode.settle_steps
    if not options.settle_steps:
        episode = drop_leading(episode, settle)
    if episode.num_samples < 1:
        raise DatasetError(f"{where} has no steps after its settle steps")
    dropped, whole = 0, False
    if options.filter_noops:
        episode, report = filter_episode(episode)
        dropped, whole = report.dropped, report.kept_whole  # settle steps count only when kept for it
    if options.image_size is not None:
        if task is None or renderer is None:
            raise DatasetError(f"{where}: unknown task, cannot render its images")
        episode = renderer.render(episode, task, where)
    elif not episode.has_images:
        raise DatasetError(f"{where} has no camera images (obs/agentview_rgb, obs/eye_in_hand_rgb); "
                           "render them from the stored states with --image-size N")
    record = EpisodeRecord(source=source.name if source else "", demo=demo, steps=episode.num_samples,
                           noops_dropped=dropped, success=episode.success, kept_whole=whole)
    return episode, record


def state_vector(episode: ds.Episode) -> np.ndarray:
    """(T, 8) float32: ee position (3), ee axis-angle (3), gripper qpos (2), as the VLA datasets' state."""
    return np.concatenate([episode.obs["ee_states"], episode.obs["gripper_states"]], axis=1).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class SourceFile:
    """One LIBERO-layout file to export, scanned."""

    path: Path
    """The file."""
    demos: tuple[str, ...]
    """Its ``demo_<i>`` groups, in index order."""
    language: str
    """The language instruction."""
    task: Task | None
    """The libero-gym task (None for a file of no known task)."""
    provenance: dict[str, Any]
    """Its ``libero_gym`` attribute (empty for LIBERO's own files)."""
    image_shape: tuple[int, int] | None
    """(H, W) of its stored cameras; None without images."""


def scan_files(paths: Sequence[Path], *, image_size: int | None) -> list[SourceFile]:
    """Validate every file and list its demos, before anything is written.

    Reads attributes and shapes only.

    Raises:
        DatasetError: a file is not LIBERO's layout, has no instruction, lacks images
            (without ``image_size``), or its images differ in size from the others.
    """
    import h5py

    files: list[SourceFile] = []
    for path in paths:
        if path.is_file() and not h5py.is_hdf5(path):
            raise DatasetError(f"{path}: not a LIBERO dataset (not HDF5); export takes a collection folder, "
                               "a LIBERO HDF5 file, or a folder of them")
        ds.validate_dataset(path, require_images=False)
        with h5py.File(path, "r") as file:
            data = file["data"]
            language, provenance = ds.instruction_and_provenance(path, data)
            task = ds.resolve_task(provenance, str(ds._attr(data.attrs.get("bddl_file_name", ""))))
            demos = tuple(ds.demo_keys(data))
            shapes = set()
            for demo in demos:
                obs = data[demo]["obs"]
                present = [key for key in ds.IMAGE_KEYS if key in obs]
                if len(present) < len(ds.IMAGE_KEYS) and image_size is None:
                    raise DatasetError(f"{path}: data/{demo} has no camera images; collect with --images, or "
                                       "render them from the stored states with --image-size N")
                shapes.update(tuple(obs[key].shape[1:3]) for key in present)
        if image_size is None and len(shapes) != 1:
            raise DatasetError(f"{path}: camera images of different sizes {sorted(shapes)}; one size per dataset "
                               "(re-render with --image-size N)")
        files.append(SourceFile(path, demos, language, task, provenance, shapes.pop() if len(shapes) == 1 else None))
    if image_size is None:
        sizes = {f.image_shape for f in files}
        if len(sizes) > 1:
            listed = ", ".join(f"{f.path.name}: {f.image_shape[0]}x{f.image_shape[1]}" for f in files if f.image_shape)
            raise DatasetError(f"mixed image sizes ({listed}); one size per dataset (re-render with --image-size N)")
    if not any(f.demos for f in files):
        raise DatasetError("no demos to export")
    return files


def read_demos(path: Path, demos: Sequence[str], *, images: bool) -> Iterator[ds.Episode]:
    """The given demos of a LIBERO file, one at a time."""
    import h5py

    with h5py.File(path, "r") as file:
        for demo in demos:
            yield ds._read_episode(file["data"][demo], images=images)
