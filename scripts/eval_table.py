"""Success table and bar chart from ``eval --json-out`` files: one row per run, one column per label.

Each ``LABEL=PATH`` names an evaluation JSON (``eval --json-out``, or a ``generate`` task's ``bc_eval.json`` /
``rl_eval.json``); ``--group`` puts runs of the same task on one row. Writes the table as Markdown to stdout, the
numbers as JSON (``--json``) and a grouped bar chart with 95% Wilson intervals (``--png``).

Usage::

    python scripts/eval_table.py --sampling stochastic \\
        --run "task 01|new inputs=runs/goal_bc/tasks/libero_goal_01/bc_eval.json" \\
        --run "task 01|50 demos=runs/ablation/demos50_01/eval.json" \\
        --json docs/results_data/goal_bc/ablation.json --png docs/figures/goal_bc_ablation.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def read(path: Path, sampling: str) -> dict[str, Any]:
    """Success, interval, episodes and mean length of the first task of an eval JSON, for ``sampling``."""
    data = json.loads(path.read_text())
    rows = data.get("by_sampling", {}).get(sampling)
    if not rows:
        raise SystemExit(f"error: {path} has no {sampling!r} evaluation (has {sorted(data.get('by_sampling', {}))})")
    row = rows[0]
    return {"success": row["success_rate"], "successes": row["successes"], "episodes": row["episodes"],
            "interval95": row["interval95"], "mean_length": row.get("mean_length")}  # fmt: skip


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", action="append", required=True, help="'ROW|COLUMN=PATH' (an eval JSON)")
    parser.add_argument("--sampling", default="stochastic", help="which evaluation of each file")
    parser.add_argument("--json", type=Path, help="write the numbers here")
    parser.add_argument("--png", type=Path, help="write the bar chart here")
    args = parser.parse_args()
    table: dict[str, dict[str, dict[str, Any]]] = {}
    columns: list[str] = []
    for spec in args.run:
        label, _, path = spec.partition("=")
        row, _, column = label.partition("|")
        table.setdefault(row, {})[column] = read(Path(path), args.sampling)
        if column not in columns:
            columns.append(column)
    print("| run | " + " | ".join(columns) + " |")
    print("| --- |" + " --- |" * len(columns))
    for row, cells in table.items():
        text = []
        for column in columns:
            cell = cells.get(column)
            if cell is None:
                text.append("-")
                continue
            low, high = cell["interval95"]
            text.append(f"{100 * cell['success']:.0f}% ({cell['successes']}/{cell['episodes']}; "
                        f"{100 * low:.0f}-{100 * high:.0f})")  # fmt: skip
        print(f"| {row} | " + " | ".join(text) + " |")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"sampling": args.sampling, "runs": table}, indent=1) + "\n")
    if args.png:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        import numpy as np

        rows = list(table)
        fig, ax = plt.subplots(figsize=(max(5.0, 0.9 * len(rows) + 2), 3.5))
        width = 0.8 / len(columns)
        x = np.arange(len(rows))
        for i, column in enumerate(columns):
            values = [table[r].get(column, {}).get("success", np.nan) for r in rows]
            errors = [[v - table[r][column]["interval95"][0] if column in table[r] else 0 for r, v in zip(rows, values)],
                      [table[r][column]["interval95"][1] - v if column in table[r] else 0 for r, v in zip(rows, values)]]
            ax.bar(x + i * width, values, width, yerr=errors, capsize=2, label=column)
        ax.set_xticks(x + width * (len(columns) - 1) / 2, rows, rotation=30, ha="right", fontsize=8)
        ax.set_ylabel(f"success ({args.sampling}, 95% CI)")
        ax.set_ylim(0, 1.05)
        ax.legend(fontsize=7)
        fig.tight_layout()
        args.png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(args.png, dpi=110)
        plt.close(fig)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
