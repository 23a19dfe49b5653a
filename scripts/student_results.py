"""Collect ``eval --task-id all`` results of students into one JSON by data source and seed.

Output format (``docs/student_goal/results.json``)::

    {"sources": {SOURCE: {"seeds": {SEED: {"tasks": {TASK_INDEX: success_rate}, "episodes_per_task": n,
                                             "suite_mean": m, "interval95": [low, high]}}}}}

Entries already in the output are kept; the one given is added or replaced. ``--markdown`` also prints the
per-task table (success, 95% Wilson interval, instruction) and the suite mean, for docs/student.md.

Usage::

    python scripts/student_results.py RUN_DIR/eval/results.json --source expert --seed 0 \\
        --out docs/student_goal/results.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("eval_json", type=Path, help="results.json written by eval --task-id all")
    parser.add_argument("--source", required=True, help="data source name (expert, diffusion-rl, gaussian-rl)")
    parser.add_argument("--seed", type=int, required=True, help="seed of the student run")
    parser.add_argument("--sampling", default="deterministic", help="sampling mode to take")
    parser.add_argument("--out", type=Path, default=Path("docs/student_goal/results.json"))
    parser.add_argument("--markdown", action="store_true", help="print the per-task table as markdown")
    args = parser.parse_args()

    result = json.loads(args.eval_json.read_text())
    tasks = result["by_sampling"][args.sampling]
    mean = result["suite_mean"][args.sampling]
    out = json.loads(args.out.read_text()) if args.out.exists() else {"sources": {}}
    seeds = out["sources"].setdefault(args.source, {"seeds": {}})["seeds"]
    seeds[str(args.seed)] = {
        "tasks": {str(t["task_id"]): t["success_rate"] for t in tasks},
        "episodes_per_task": tasks[0]["episodes"],
        "suite_mean": mean["success_rate"],
        "interval95": mean["interval95"],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2) + "\n")
    if args.markdown:
        print("| task | success (95% CI) | episodes | instruction |\n| --- | --- | --- | --- |")
        for t in tasks:
            low, high = t["interval95"]
            rate = f"{100 * t['success_rate']:.0f}% ({100 * low:.0f}-{100 * high:.0f})"
            print(f"| {t['task_id']} | {rate} | {t['episodes']} | {t['language']} |")
        low, high = mean["interval95"]
        print(f"| **mean** | **{100 * mean['success_rate']:.1f}%** ({100 * low:.1f}-{100 * high:.1f}) | {mean['episodes']} | |")


if __name__ == "__main__":
    main()
