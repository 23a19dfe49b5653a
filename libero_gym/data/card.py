"""The dataset card (``README.md``) and normalisation statistics written into every export.

Every export (``--format hdf5``, ``lerobot``, ``rlds``) gets, at its root:

- ``README.md``: what produced the data (policy, checkpoint, sampling mode, its
  success), how it was exported (format, no-op filter, settle steps, the command,
  the libero-gym git commit), the feature table with units and frames, the image
  orientation, the normalisation statistics, and per episode its source, length,
  success and the no-op steps it lost;
- ``dataset_statistics.json``: the statistics in the layout of OpenVLA's
  ``dataset_statistics.json`` (``prismatic/vla/datasets/rlds/utils/data_utils.py``,
  ``get_dataset_statistics`` / ``save_dataset_statistics``): per dataset name,
  ``action`` and ``proprio`` (our ``observation.state``) with ``mean``, ``std``
  (population), ``max``, ``min``, ``q01``, ``q99`` (``numpy.quantile``, linear),
  ``mask`` (which action dimensions a trainer normalises: the arm's six, not the
  gripper, as OpenVLA's ``EEF_POS`` encoding), ``num_transitions``, ``num_trajectories``.

The statistics are those of the exported float32 arrays: actions as stored (gripper
-1 open, +1 close). OpenVLA's loader recomputes its own after its LIBERO transform
(gripper clipped to [0, 1] and inverted), so for OpenVLA the file is a check and
for other trainers the normaliser.

Shape legend: N exported steps over all episodes, Da = 7 action, Ds = 8 state.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CARD_NAME = "README.md"
STATISTICS_NAME = "dataset_statistics.json"
ACTION_NORMALIZATION_MASK: tuple[bool, ...] = (True,) * 6 + (False,)
"""Action dimensions a trainer normalises: the arm delta, not the gripper's -1/+1 (OpenVLA's EEF_POS mask)."""
MAX_EPISODE_ROWS = 1000
"""Episode rows listed in the card; larger datasets list the first ones (the counts cover all)."""

STATE_ROWS: tuple[tuple[str, str], ...] = (
    ("eef_pos_x", "m, robot base frame"), ("eef_pos_y", "m, robot base frame"), ("eef_pos_z", "m, robot base frame"),
    ("eef_axis_angle_x", "rad, axis-angle, base frame"), ("eef_axis_angle_y", "rad, axis-angle, base frame"),
    ("eef_axis_angle_z", "rad, axis-angle, base frame"),
    ("gripper_qpos_left", "m, finger joint"), ("gripper_qpos_right", "m, finger joint"),
)
"""The 8 state dimensions (``obs/ee_states`` then ``obs/gripper_states``) with units and frames."""
ACTION_ROWS: tuple[tuple[str, str], ...] = (
    ("delta_x", "OSC_POSE position delta, [-1, 1] (x 0.05 m per step)"),
    ("delta_y", "OSC_POSE position delta, [-1, 1] (x 0.05 m per step)"),
    ("delta_z", "OSC_POSE position delta, [-1, 1] (x 0.05 m per step)"),
    ("delta_axis_angle_x", "OSC_POSE rotation delta, [-1, 1] (x 0.5 rad per step)"),
    ("delta_axis_angle_y", "OSC_POSE rotation delta, [-1, 1] (x 0.5 rad per step)"),
    ("delta_axis_angle_z", "OSC_POSE rotation delta, [-1, 1] (x 0.5 rad per step)"),
    ("gripper", "-1 open, +1 close"),
)
"""The 7 action dimensions (robosuite OSC_POSE ``output_max`` 0.05 m / 0.5 rad; LIBERO's controller config)."""


@dataclasses.dataclass
class EpisodeRecord:
    """One exported episode, for the card."""

    source: str
    """Source file name."""
    demo: str
    """Its ``demo_<i>`` group."""
    steps: int
    """Steps exported."""
    noops_dropped: int
    """Steps the no-op filter removed (0 without the filter)."""
    success: bool | None
    """The recorded success flag (None: the file does not say)."""
    kept_whole: bool = False
    """Every action was a no-op, so the filter kept the episode whole."""


@dataclasses.dataclass
class CardInfo:
    """Everything the card says; the format modules fill it while they write."""

    title: str
    """Dataset name."""
    format: str
    """``hdf5``, ``lerobot`` or ``rlds``, with a phrase of what it is."""
    command: str
    """The command line that produced the export."""
    features: list[tuple[str, str, str]]
    """Rows (name, dtype and shape, value with units and frame)."""
    images: str
    """Image orientation, size and encoding."""
    filter_noops: bool = False
    """Whether the no-op filter ran."""
    settle_steps: str = ""
    """What happened to the reset's settle steps."""
    sources: list[str] = dataclasses.field(default_factory=list)
    """What was exported (folders or files, as given)."""
    provenance: list[dict[str, Any]] = dataclasses.field(default_factory=list)
    """Each source file's ``libero_gym`` provenance record (empty for LIBERO's own files)."""
    collection_success: list[tuple[str, int, int]] = dataclasses.field(default_factory=list)
    """(collection, successes, episodes finished) of each collection folder among the sources."""
    tasks: dict[str, int] = dataclasses.field(default_factory=dict)
    """Language instruction -> episodes."""
    episodes: list[EpisodeRecord] = dataclasses.field(default_factory=list)
    """Per exported episode."""
    notes: list[str] = dataclasses.field(default_factory=list)
    """Format-specific lines for the card."""


# ---------------------------------------------------------------------- statistics
def feature_statistics(values: np.ndarray) -> dict[str, list[float]]:
    """mean, std, max, min, q01, q99 of an (N, D) array per dimension, as OpenVLA's ``get_dataset_statistics``."""
    values = np.asarray(values)
    return {
        "mean": values.mean(0).tolist(),
        "std": values.std(0).tolist(),
        "max": values.max(0).tolist(),
        "min": values.min(0).tolist(),
        "q01": np.quantile(values, 0.01, axis=0).tolist(),
        "q99": np.quantile(values, 0.99, axis=0).tolist(),
    }


def dataset_statistics(name: str, actions: Sequence[np.ndarray], states: Sequence[np.ndarray]) -> dict[str, Any]:
    """OpenVLA's ``dataset_statistics.json`` content for one dataset.

    Args:
        name: the dataset name (the top-level key, as OpenVLA keys its statistics).
        actions: per episode (T, 7) float32 actions as exported.
        states: per episode (T, 8) float32 states as exported (OpenVLA's ``proprio``).
    """
    action = np.concatenate(actions).astype(np.float32)
    proprio = np.concatenate(states).astype(np.float32)
    return {
        name: {
            "action": {**feature_statistics(action), "mask": list(ACTION_NORMALIZATION_MASK)},
            "proprio": feature_statistics(proprio),
            "num_transitions": int(len(action)),
            "num_trajectories": len(actions),
        }
    }


# ---------------------------------------------------------------------- provenance helpers
def git_commit() -> str:
    """The libero-gym checkout's commit (``+dirty`` with uncommitted changes), else ``unknown``."""
    root = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return commit + ("+dirty" if dirty else "") if commit else "unknown"


def collection_success(folder: Path) -> tuple[str, int, int] | None:
    """(folder, successes, episodes finished) from a collection's ``collection.json``; None elsewhere."""
    from libero_gym.data.collect import MANIFEST_NAME

    manifest = folder / MANIFEST_NAME
    if not folder.is_dir() or not manifest.exists():
        return None
    try:
        record = json.loads(manifest.read_text())
        return folder.name, int(record["successes"]), int(record["episodes_finished"])
    except (OSError, ValueError, KeyError):
        return None


# ---------------------------------------------------------------------- writer
def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return lines


def _number(value: float) -> str:
    return f"{value:.4g}"


def _policies(provenance: list[dict[str, Any]]) -> list[str]:
    seen: dict[tuple[str, str, str], None] = {}
    for record in provenance:
        key = (str(record.get("agent") or "unknown (not recorded; LIBERO's own files are human teleoperation)"),
               str(record.get("checkpoint") or "-"), str(record.get("sampling") or "-"))
        seen.setdefault(key, None)
    return [f"`{agent}` (checkpoint {ckpt}, sampling {sampling})" for agent, ckpt, sampling in seen]


def render_card(info: CardInfo, statistics: dict[str, Any]) -> str:
    """The card's Markdown."""
    stats = next(iter(statistics.values()))
    flags = [e.success for e in info.episodes]
    known = [f for f in flags if f is not None]
    dropped = [e.noops_dropped for e in info.episodes]
    lines = [f"# {info.title}", "",
             f"LIBERO demonstrations exported by libero-gym as {info.format}.", "", "## How it was made", ""]
    rows = [
        ("source policy", "; ".join(_policies(info.provenance)) or "unknown (not recorded)"),
        ("success (recorded per episode)",
         f"{sum(known)} of {len(known)} episodes" if known else "not recorded (LIBERO's own files keep successes only)"),
    ]
    for folder, successes, finished in info.collection_success:
        rate = successes / finished if finished else 0.0
        rows.append((f"policy success while collecting `{folder}`", f"{successes} of {finished} episodes ({rate:.0%})"))
    seeds = sorted({str(p.get("seed")) for p in info.provenance if p.get("seed") is not None})
    rows += [
        ("collection seed(s)", ", ".join(seeds) or "-"),
        ("tasks", "; ".join(f"{task} ({count})" for task, count in info.tasks.items())),
        ("episodes, steps", f"{len(info.episodes)}, {sum(e.steps for e in info.episodes)}"),
        ("no-op filter", _filter_line(info, dropped)),
        ("settle steps", info.settle_steps or "-"),
        ("images", info.images),
        ("control rate", "20 Hz (one step per env step)"),
        ("sources", ", ".join(f"`{s}`" for s in info.sources)),
        ("libero-gym commit", f"`{git_commit()}`"),
        ("command", f"`{info.command}`" if info.command else "not recorded (the export step of `collect`; its "
         "settings are the provenance above and the collection's `collection.json`)"),
        ("exported", datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")),
    ]
    lines += _table(("", ""), rows) + [""] + info.notes + ([""] if info.notes else [])
    lines += ["## Features", ""] + _table(("feature", "dtype, shape", "value (units, frame)"), info.features)
    lines += ["", "### State dimensions", ""] + _table(("dim", "name", "unit, frame"),
                                                       [(i, n, u) for i, (n, u) in enumerate(STATE_ROWS)])
    lines += ["", "### Action dimensions", ""] + _table(("dim", "name", "meaning"),
                                                        [(i, n, u) for i, (n, u) in enumerate(ACTION_ROWS)])
    lines += ["", "## Normalisation statistics", "",
              f"Over the {stats['num_transitions']} exported steps of {stats['num_trajectories']} episodes "
              f"(float32, as stored); also in `{STATISTICS_NAME}` (OpenVLA's layout: `action`, `proprio` = state).", ""]
    for key, names in (("action", ACTION_ROWS), ("proprio", STATE_ROWS)):
        entry = stats[key]
        columns = ("mean", "std", "min", "max", "q01", "q99")
        lines += [f"**{'action' if key == 'action' else 'state'}**", ""]
        lines += _table(("dim", *columns), [(name, *(_number(entry[c][i]) for c in columns))
                                            for i, (name, _) in enumerate(names)])
        lines.append("")
    lines += ["## Episodes", ""]
    shown = info.episodes[:MAX_EPISODE_ROWS]
    lines += _table(("#", "source", "demo", "steps", "no-ops dropped", "success"),
                    [(i, e.source, e.demo, e.steps, f"{e.noops_dropped}{' (all no-ops: kept whole)' if e.kept_whole else ''}",
                      "-" if e.success is None else e.success) for i, e in enumerate(shown)])
    if len(info.episodes) > len(shown):
        lines += ["", f"(first {len(shown)} of {len(info.episodes)} episodes listed)"]
    return "\n".join(lines) + "\n"


def _filter_line(info: CardInfo, dropped: list[int]) -> str:
    if not info.filter_noops:
        return "off (every recorded step exported)"
    return ("OpenVLA's rule (arm-delta norm < 1e-4 and gripper command unchanged from the last kept action): "
            + noop_summary(info.episodes))


def noop_summary(records: Sequence[EpisodeRecord]) -> str:
    """One line: steps the no-op filter dropped in all, per episode, and episodes kept whole."""
    dropped = [e.noops_dropped for e in records]
    whole = sum(e.kept_whole for e in records)
    median = float(np.median(dropped)) if dropped else 0.0
    line = (f"{sum(dropped)} steps dropped, per episode min {min(dropped, default=0)} / median {median:g} / "
            f"max {max(dropped, default=0)}")
    return line + (f"; {whole} episode(s) all no-ops, kept whole" if whole else "")


def write_card(root: Path, info: CardInfo, actions: Sequence[np.ndarray], states: Sequence[np.ndarray]) -> Path:
    """Write ``README.md`` and ``dataset_statistics.json`` into ``root``; returns the card's path.

    Args:
        root: the dataset folder.
        info: what the card says.
        actions: per episode (T, 7) exported actions.
        states: per episode (T, 8) exported states.
    """
    statistics = dataset_statistics(info.title, actions, states)
    (root / STATISTICS_NAME).write_text(json.dumps(statistics, indent=2))
    card = root / CARD_NAME
    card.write_text(render_card(info, statistics))
    return card


def provenance_of(path: Path) -> dict[str, Any]:
    """A LIBERO file's ``libero_gym`` provenance (empty for files we did not write)."""
    import h5py

    from libero_gym.data import dataset as ds

    with h5py.File(path, "r") as file:
        attrs = file["data"].attrs
        return json.loads(ds._attr(attrs[ds.PROVENANCE_ATTR])) if ds.PROVENANCE_ATTR in attrs else {}
