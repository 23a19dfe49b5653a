"""``generate``'s report: ``OUT/report.md`` and its figures, computed from the files the stages wrote.

Nothing here is copied from a log: success rates come from the episode summaries
``collect`` wrote (every finished episode, kept or not), from ``eval``'s JSON and from
``train``'s ``summary.json`` and ``progress*.csv``; trajectory quality is computed
from the exported HDF5 files by :mod:`libero_gym.data.stats`.
"""

from __future__ import annotations

import csv
import json
import math
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

QUALITY = (
    ("length", "length", "{:.1f}"),
    ("action_jerk", "action jerk", "{:.4f}"),
    ("ee_jerk", "EE jerk", "{:.3g}"),
    ("action_variance", "action variance", "{:.4f}"),
    ("ee_path_length", "EE path (m)", "{:.3f}"),
)
"""(metric key of libero_gym.data.metrics, column label, format) of the trajectory-quality table."""


TASKS_DIR = "tasks"
"""Sub-folder of a generate run that holds one folder per task."""


def collection_counts(folder: Path) -> tuple[int, int, int]:
    """(finished episodes, successes, env steps) of a ``collect`` folder, from its episode summaries."""
    finished = successes = steps = 0
    for path in (folder / "episodes").glob("ep_*.json") if folder.exists() else ():
        try:
            summary = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):  # being written
            continue
        finished += 1
        successes += bool(summary.get("success"))
        steps += int(summary.get("length") or 0)
    return finished, successes, steps


def learning_curve(run_dir: Path) -> tuple[list[int], list[float]]:
    """(env steps, training-rollout success) of a ``train`` run, resumed parts included, sorted by step.

    Reads SB3's ``logs/progress*.csv`` (a resumed run writes ``progress-resumed-*.csv`` beside the first):
    ``rollout/success_rate`` (the last 100 finished episodes) against ``time/total_timesteps``.
    """
    points: dict[int, float] = {}
    for path in sorted((run_dir / "logs").glob("progress*.csv")):
        try:
            with path.open() as handle:
                for row in csv.DictReader(handle):
                    step, success = row.get("time/total_timesteps"), row.get("rollout/success_rate")
                    if step and success:
                        points[int(float(step))] = float(success)
        except OSError:
            continue
    steps = sorted(points)
    return steps, [points[s] for s in steps]


def _wilson(successes: int, n: int) -> tuple[float, float]:
    from agents.evaluate import wilson_interval

    return wilson_interval(successes, n)


def _rate(successes: int, n: int) -> str:
    if n == 0:
        return "-"
    low, high = _wilson(successes, n)
    return f"{100 * successes / n:.0f}% ({successes}/{n}; {100 * low:.0f}-{100 * high:.0f})"


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None


def task_results(folder: Path, config: Any, stages: dict[str, Any]) -> dict[str, Any]:
    """One task's figures, from its files (``stages``: the manifest's record of its stages)."""
    result: dict[str, Any] = {"stages": {}}
    for stage, record in stages.items():
        result["stages"][stage] = {"seconds": record.get("seconds"), "done": bool(record.get("done")),
                                   "short": record.get("short")}  # fmt: skip
    demos = collection_counts(folder / "demos")
    rollouts = collection_counts(folder / "rollouts")
    result["demos"] = dict(zip(("episodes", "successes", "env_steps"), demos))
    result["rollouts"] = dict(zip(("episodes", "successes", "env_steps"), rollouts))
    bc_eval = _evaluation(folder / "bc_eval.json")
    if config.sampling in bc_eval:
        result["bc_eval"] = bc_eval[config.sampling]
    rl_eval = _evaluation(folder / "rl_eval.json")
    if rl_eval:
        result["rl_eval"] = rl_eval
    summary = _read_json(folder / "rl" / "summary.json")
    steps, success = learning_curve(folder / "rl")
    if summary or steps:
        result["rl"] = {
            "env_steps": (summary or {}).get("num_timesteps", steps[-1] if steps else 0),
            "final_rollout_success": (summary or {}).get("success_rate", success[-1] if success else None),
            "first_rollout_success": success[0] if success else None,
            "reached_target": bool((summary or {}).get("reached_target")),
            "curve": {"steps": steps, "success": success},
        }
    return result


def _evaluation(path: Path) -> dict[str, dict[str, Any]]:
    """An ``eval --json-out`` file's first task, per sampling mode: success, interval, episodes, env steps."""
    evaluation = _read_json(path) or {}
    modes: dict[str, dict[str, Any]] = {}
    for mode, rows in evaluation.get("by_sampling", {}).items():
        if rows:
            row = rows[0]
            modes[mode] = {"success": row["success_rate"], "interval95": row["interval95"], "episodes": row["episodes"],
                           "mean_length": row.get("mean_length"),
                           "env_steps": round(row["episodes"] * (row.get("mean_length") or 0))}  # fmt: skip
    return modes


def _eval_text(row: dict[str, Any] | None) -> str:
    """``84% (42/50; 71-92)``, or ``-``."""
    if row is None:
        return "-"
    low, high = row["interval95"]
    return f"{100 * row['success']:.0f}% ({round(row['success'] * row['episodes'])}/{row['episodes']}; " \
           f"{100 * low:.0f}-{100 * high:.0f})"


def quality(folder: Path, source: str) -> dict[str, dict[str, float]] | None:
    """Trajectory quality of the expert demos and the exported data, {label: metrics}, or None."""
    from libero_gym.data.stats import compute, load_groups

    labelled = {"demos": "expert demos", "export": "expert data" if source == "scripted" else "RL data"}
    paths = [p for name in labelled for p in sorted((folder / name).glob("*.hdf5"))]
    if not paths:
        return None
    groups, sources = load_groups([str(p) for p in paths])
    table = compute(groups, sources)["overall"]
    return {labelled.get(name, name): metrics for name, metrics in table.items()}


def write_report(out: Path, config: Any, tasks: Sequence[Any], manifest: dict[str, Any]) -> Path:
    """Write ``OUT/report.md``, ``OUT/report.json`` and ``OUT/figures/*.png``; returns the report's path."""
    figures = out / "figures"
    figures.mkdir(exist_ok=True)
    results: dict[str, Any] = {}
    for task in tasks:
        folder = out / TASKS_DIR / task.key
        record = manifest["tasks"].get(task.key, {})
        entry = task_results(folder, config, record.get("stages", {}))
        entry.update(language=task.language, status=record.get("status", "waiting"), error=record.get("error"))
        try:
            entry["quality"] = quality(folder, config.source)
        except Exception as error:  # a half-written file must not take the report down with it
            entry["quality"], entry["quality_error"] = None, str(error)
        results[task.key] = entry

    curves = _plot_curves(results, config, figures / "learning_curves.png")
    bars = _plot_success(results, config, figures / "success.png")
    lines = _markdown(out, config, results, manifest, curves, bars)
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    from libero_gym.data.dataset import write_json_atomic

    write_json_atomic(out / "report.json", {"config": manifest.get("config"), "tasks": results})
    return path


def _markdown(out: Path, config: Any, results: dict[str, Any], manifest: dict[str, Any],
              curves: Path | None, bars: Path | None) -> list[str]:  # fmt: skip
    import os

    rl = config.source == "rl"
    lines = [f"# generate: {config.env}, {len(results)} task(s), source {config.source}"
             + (f", agent {config.agent_name}" if rl else ""), ""]  # fmt: skip
    lines += [f"Machine: {os.cpu_count()} cores, {platform.machine()}. "
              "Command: `python cli.py generate --config OUT/generate.json --out OUT` (OUT: this report's folder) "
              "reproduces it; rerunning continues the run.", ""]  # fmt: skip
    if rl:
        lines += [f"Success is over every finished episode: the expert's over its demo attempts, BC's and the "
                  f"fine-tuned policy's over {config.eval_episodes} evaluation episodes (init states "
                  f"0..{config.eval_episodes - 1}), the rollouts' over their attempts; BC and the rollouts sampled "
                  f"`{config.sampling}`. Intervals: Wilson 95%. RL target: "
                  f"{100 * config.target_success:.0f}% rolling training success within {config.rl_steps} env steps.",
                  ""]  # fmt: skip
        lines += ["| task | status | expert | BC | RL deterministic | RL stochastic | RL rollouts | RL training "
                  "success (first -> last) | target | env steps (demos / evals / RL / rollouts) | wall s ("
                  + " / ".join(config.stages) + ") |",
                  "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]  # fmt: skip
    else:
        lines += ["| task | status | expert rollouts | env steps | wall s (rollouts / export) |",
                  "| --- | --- | --- | --- | --- |"]  # fmt: skip
    totals = {"env_steps": 0, "seconds": 0.0, "reached": 0, "done": 0, "short": 0}
    for key, entry in results.items():
        stages = entry["stages"]
        seconds = [stages.get(s, {}).get("seconds") for s in config.stages]
        totals["seconds"] += sum(s or 0 for s in seconds)
        totals["done"] += entry["status"] == "done"
        status = entry["status"] + (f": {entry['error']}" if entry.get("error") else "")
        short = stages.get("rollouts", {}).get("short")
        if short:
            status += f" (rollouts short: {short})"
            totals["short"] += 1
        r = entry["rollouts"]
        wall = " / ".join("-" if s is None else f"{s:.0f}" for s in seconds)
        if rl:
            d, bc, run, rl_eval = entry["demos"], entry.get("bc_eval"), entry.get("rl"), entry.get("rl_eval", {})
            if run is None:
                train, target = "-", "-"
            else:
                first, last = run["first_rollout_success"], run["final_rollout_success"]
                train = f"{_pct(first)} -> {_pct(last)}"
                target = "reached" if run["reached_target"] else "**not reached**"
                totals["reached"] += run["reached_target"]
            evals = (bc or {}).get("env_steps", 0) + sum(row["env_steps"] for row in rl_eval.values())
            steps = [d["env_steps"], evals, (run or {}).get("env_steps", 0), r["env_steps"]]
            totals["env_steps"] += sum(steps)
            lines.append(f"| {key} | {status} | {_rate(d['successes'], d['episodes'])} | {_eval_text(bc)} | "
                         f"{_eval_text(rl_eval.get('deterministic'))} | {_eval_text(rl_eval.get('stochastic'))} | "
                         f"{_rate(r['successes'], r['episodes'])} | {train} | {target} | "
                         f"{' / '.join(str(s) for s in steps)} | {wall} |")  # fmt: skip
        else:
            totals["env_steps"] += r["env_steps"]
            lines.append(f"| {key} | {status} | {_rate(r['successes'], r['episodes'])} | {r['env_steps']} | {wall} |")
    lines += ["", f"Suite: {totals['done']}/{len(results)} tasks finished"
              + (f", RL target reached on {totals['reached']}" if rl else "")
              + (f", {totals['short']} with fewer than {config.episodes} successful rollouts" if totals["short"] else "")
              + f"; {totals['env_steps']} env steps, {totals['seconds'] / 3600:.2f} h of stage wall time "
              f"(tasks ran {manifest.get('parallel_tasks', config.parallel_tasks())} at a time"
              f"{', env workers on Ray' if getattr(config, 'backend', 'local') == 'ray' else ''}).", ""]  # fmt: skip
    lines += ["## Trajectory quality", "",
              "Per task, over the kept (successful) episodes, policy steps only; metrics as `cli.py stats` defines "
              "them (docs/data.md): lower action/EE jerk is smoother, lower action variance (across episodes at "
              "normalised time) is more consistent.", "",
              "| task | data | episodes | " + " | ".join(label for _, label, _ in QUALITY) + " |",
              "| --- | --- | --- | " + " | ".join("---" for _ in QUALITY) + " |"]  # fmt: skip
    for key, entry in results.items():
        for label, metrics in (entry.get("quality") or {}).items():
            cells = [_fmt(fmt, metrics.get(name)) for name, _, fmt in QUALITY]
            lines.append(f"| {key} | {label} | {metrics.get('episodes', 0):.0f} | {' | '.join(cells)} |")
    lines.append("")
    if curves is not None:
        lines += [f"![learning curves]({curves.relative_to(out)})", ""]
    if bars is not None:
        lines += [f"![success]({bars.relative_to(out)})", ""]
    lines += ["Files: `tasks/<task>/export/*.hdf5` (LIBERO layout; robomimic and the RLDS/LeRobot converters read it), "
              "`tasks/<task>/log.txt` (every stage's command and output), `manifest.json`, `report.json`."]
    return lines


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.0f}%"


def _fmt(fmt: str, value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    return fmt.format(value)


def _plot_curves(results: dict[str, Any], config: Any, path: Path) -> Path | None:
    curves = {k: e["rl"]["curve"] for k, e in results.items() if e.get("rl") and e["rl"]["curve"]["steps"]}
    if not curves:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for key, curve in curves.items():
        ax.plot(curve["steps"], curve["success"], label=key)
    ax.axhline(config.target_success, ls=":", color="grey", label="target")
    ax.set_xlabel("env steps")
    ax.set_ylabel("training-rollout success (last 100 episodes)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"{config.agent_name} fine-tuning, {config.env}")
    ax.legend(fontsize=7, loc="lower right", ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _plot_success(results: dict[str, Any], config: Any, path: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    keys = list(results)
    series: dict[str, list[float]] = {"expert": [], "BC": [], "RL": []} if config.source == "rl" else {"expert": []}
    for key in keys:
        entry = results[key]
        counts = entry["demos"] if config.source == "rl" else entry["rollouts"]
        series["expert"].append(counts["successes"] / counts["episodes"] if counts["episodes"] else math.nan)
        if config.source == "rl":
            bc = entry.get("bc_eval")
            series["BC"].append(bc["success"] if bc else math.nan)
            rl = entry.get("rl_eval", {}).get("deterministic")
            if rl is None:  # no evaluation yet: the rollouts' success
                r = entry["rollouts"]
                series["RL"].append(r["successes"] / r["episodes"] if r["episodes"] else math.nan)
            else:
                series["RL"].append(rl["success"])
    if all(math.isnan(v) for values in series.values() for v in values):
        return None
    fig, ax = plt.subplots(figsize=(max(5, 0.6 * len(keys) + 2), 3.5))
    width = 0.8 / len(series)
    x = np.arange(len(keys))
    for i, (label, values) in enumerate(series.items()):
        ax.bar(x + i * width, values, width, label=label)
    ax.set_xticks(x + width * (len(series) - 1) / 2, keys, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel("success rate")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def report_table(report: Path) -> str:
    """The tasks' table of a written ``report.md`` (its first table), for the terminal."""
    lines = report.read_text().splitlines()
    start = next((i for i, line in enumerate(lines) if line.startswith("|")), len(lines))
    end = next((i for i in range(start, len(lines)) if not lines[i].startswith("|")), len(lines))
    return "\n".join(lines[start:end])
