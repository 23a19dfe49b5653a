"""``cli.py stats``: compare LIBERO-layout datasets side by side, with plots.

Each file is read without its images; its episodes are grouped by task. A
*source* is the folder a file lies in (one collection or one LIBERO download),
so ``stats ours/*.hdf5 libero/libero_goal/*.hdf5`` compares two sources per task
and overall. Metrics are defined in :mod:`libero_gym.data.metrics`; they are taken
over the policy's steps (a demo's recorded settle steps, ``Episode.policy_steps``, are left out).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym.data import metrics as M
from libero_gym.data.dataset import Episode, read_dataset, write_json_atomic
from libero_gym.errors import InvalidInputError

METRICS: tuple[tuple[str, str, str], ...] = (
    ("episodes", "episodes", "{:.0f}"),
    ("success_rate", "success rate", "{:.0%}"),
    ("length", "length (steps)", "{:.1f}"),
    ("length_std", "length std", "{:.1f}"),
    ("action_jerk", "action jerk (MS, /step^3)", "{:.4f}"),
    ("ee_jerk", "EE jerk (MS, m^2/s^6)", "{:.3g}"),
    ("action_variance", "action var @ norm. time", "{:.4f}"),
    ("ee_path_length", "EE path length (m)", "{:.3f}"),
)
"""(key, table label, format) of the metrics shown, in order."""
TRACE_EPISODES = 5
"""Episodes drawn per action-trace plot (more is unreadable)."""
ACTION_NAMES = ("dx", "dy", "dz", "dax", "day", "daz", "gripper")


@dataclasses.dataclass
class Group:
    """Episodes of one task from one source."""

    actions: list[np.ndarray] = dataclasses.field(default_factory=list)
    ee_pos: list[np.ndarray] = dataclasses.field(default_factory=list)
    success: list[bool | None] = dataclasses.field(default_factory=list)


def _success(episode: Episode) -> bool | None:
    if episode.success is not None:
        return episode.success
    return bool(np.any(episode.rewards > 0))


def load_groups(paths: Sequence[str | os.PathLike[str]]) -> tuple[dict[str, dict[str, Group]], list[str]]:
    """Read files into {task label: {source label: Group}}; also return source labels in order."""
    groups: dict[str, dict[str, Group]] = {}
    sources: list[str] = []
    folders = [Path(p).resolve().parent for p in paths]
    distinct = sorted(set(folders))
    for path, folder in zip(paths, folders):
        # A folder's name is its label, unless two distinct folders share that name.
        clash = sum(f.name == folder.name for f in distinct) > 1
        source = str(folder) if clash or not folder.name else folder.name
        if source not in sources:
            sources.append(source)
        data = read_dataset(path, images=False)
        task = data.task.name if data.task is not None else (data.language_instruction or Path(path).stem)
        group = groups.setdefault(task, {}).setdefault(source, Group())
        for episode in data.episodes:
            steps = episode.policy_steps  # the recorded settle steps are the reset's, not the policy's
            group.actions.append(episode.actions[steps])
            ee = episode.obs.get("ee_pos")
            group.ee_pos.append((ee if ee is not None else episode.robot_states[:, 2:5])[steps])
            group.success.append(_success(episode))
    return groups, sources


def compute(groups: dict[str, dict[str, Group]], sources: list[str]) -> dict[str, dict[str, dict[str, float]]]:
    """{task label or "overall": {source: metrics}}.

    Overall pools every episode of a source; its action variance is the
    episode-weighted mean of the per-task variances (variance across different
    tasks would measure task diversity, not consistency).
    """
    table: dict[str, dict[str, dict[str, float]]] = {}
    pooled: dict[str, Group] = {source: Group() for source in sources}
    weighted: dict[str, list[tuple[float, int]]] = {source: [] for source in sources}
    for task, by_source in sorted(groups.items()):
        table[task] = {}
        for source, group in by_source.items():
            table[task][source] = M.summarize(group.actions, group.ee_pos, group.success)
            pooled[source].actions += group.actions
            pooled[source].ee_pos += group.ee_pos
            pooled[source].success += group.success
            variance = table[task][source]["action_variance"]
            if not math.isnan(variance):
                weighted[source].append((variance, len(group.actions)))
    table["overall"] = {}
    for source in sources:
        group = pooled[source]
        summary = M.summarize(group.actions, group.ee_pos, group.success)
        pairs = weighted[source]
        summary["action_variance"] = (
            float(sum(v * n for v, n in pairs) / sum(n for _, n in pairs)) if pairs else float("nan")
        )
        table["overall"][source] = summary
    return table


def print_table(table: dict[str, dict[str, dict[str, float]]], sources: list[str]) -> None:
    """One rich table per task and one overall: metrics as rows, sources as columns."""
    from rich.console import Console
    from rich.table import Table

    console = Console(width=max(100, 30 + 18 * len(sources)))
    for task, by_source in table.items():
        shown = [s for s in sources if s in by_source]
        rich_table = Table(title=f"[bold]{task}[/]")
        rich_table.add_column("metric", no_wrap=True)
        for source in shown:
            rich_table.add_column(source, justify="right")
        for key, label, fmt in METRICS:
            row = []
            for source in shown:
                value = by_source[source][key]
                row.append("-" if math.isnan(value) else fmt.format(value))
            rich_table.add_row(label, *row)
        console.print(rich_table)


def plot(groups: dict[str, dict[str, Group]], table: dict[str, dict[str, dict[str, float]]], sources: list[str],
         out_dir: str | os.PathLike[str]) -> list[Path]:
    """Write per-metric bar charts and action-trace plots (PNG, Agg backend); return the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []

    # Per-metric bars: one panel per metric, tasks on x, one bar per source.
    keys = [(k, label) for k, label, _ in METRICS if k != "length_std"]
    tasks = list(table)
    cols = 3
    rows = math.ceil(len(keys) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False)
    width = 0.8 / max(1, len(sources))
    for ax, (key, label) in zip(axes.flat, keys):
        for j, source in enumerate(sources):
            values = [table[t].get(source, {}).get(key, float("nan")) for t in tasks]
            ax.bar(np.arange(len(tasks)) + j * width, values, width, label=source)
        ax.set_title(label, fontsize=9)
        if "jerk" in key:
            ax.set_yscale("log")  # jerk spans orders of magnitude between sources
        ax.set_xticks(np.arange(len(tasks)) + 0.4 - width / 2)
        ax.set_xticklabels([t[:18] for t in tasks], rotation=30, ha="right", fontsize=7)
    for ax in list(axes.flat)[len(keys):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "metrics.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    written.append(path)

    # Action traces: per task and source, the first episodes over normalised time.
    for t_index, (task, by_source) in enumerate(sorted(groups.items())):
        fig, axes = plt.subplots(len(by_source), 7, figsize=(21, 2.4 * len(by_source)), squeeze=False)
        for row, (source, group) in enumerate(by_source.items()):
            for actions in group.actions[:TRACE_EPISODES]:
                time = np.linspace(0.0, 1.0, actions.shape[0])
                for dim in range(min(7, actions.shape[1])):
                    axes[row, dim].plot(time, actions[:, dim], linewidth=0.8)
            for dim in range(7):
                axes[row, dim].set_title(f"{source}: {ACTION_NAMES[dim]}", fontsize=7)
                axes[row, dim].set_ylim(-1.05, 1.05)
        fig.suptitle(f"actions vs normalised time: {task}", fontsize=9)
        fig.tight_layout()
        path = out / f"actions_{t_index:02d}_{_slug(task)}.png"
        fig.savefig(path, dpi=80)
        plt.close(fig)
        written.append(path)
    return written


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text)[:60]


def expand_paths(paths: Sequence[str | os.PathLike[str]]) -> list[Path]:
    """Files as given; a folder stands for its ``*.hdf5`` files (e.g. a collection or a LIBERO suite folder)."""

    expanded: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files = sorted(path.glob("*.hdf5"))
            if not files:
                raise InvalidInputError(f"{path} is a folder without *.hdf5 files")
            expanded += files
        else:
            expanded.append(path)
    return expanded


def run_stats(paths: Sequence[str], plots_dir: str | None = "stats_plots", json_out: str | None = None) -> dict[str, Any]:
    """Load, compute, print, plot; returns the metrics table."""

    if not paths:
        raise InvalidInputError("stats needs at least one dataset path")
    groups, sources = load_groups(expand_paths(paths))
    table = compute(groups, sources)
    print_table(table, sources)
    if plots_dir:
        written = plot(groups, table, sources, plots_dir)
        print(f"plots: {', '.join(str(p) for p in written)}")
    if json_out:

        write_json_atomic(json_out, {task: {s: _clean(m) for s, m in row.items()} for task, row in table.items()})
    return table


def _clean(values: dict[str, float]) -> dict[str, float | None]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in values.items()}
