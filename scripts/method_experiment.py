"""The method, measured on one LIBERO task: scripted demos -> BC -> DiffusionPPO and Gaussian PPO -> data.

One command per task; every stage goes through ``cli.py`` (so what is measured is
what users run) and is resumable: a stage whose outputs exist is skipped, an RL run
continues from its newest checkpoint (``train --resume``), a collection from its
finished episodes (``collect --resume``). Kill it at any point and run the same
command again.

Stages (outputs under ``OUT/TASK/``):

1. ``demos``: N successful scripted demonstrations (``collect --policy scripted``).
2. ``bc_diffusion``, ``bc_gaussian``: behaviour cloning of both policies on them (``pretrain``).
3. ``eval_bc_*``: 50 episodes over the task's 50 init states, deterministic and stochastic.
4. ``rl_diffusion``, ``rl_gaussian``: ``train --init-from`` the BC checkpoints for the same env-step budget.
5. ``eval_rl_*``: as 3, on the fine-tuned policies.
6. ``data_*``: 50 successful rollouts of each fine-tuned policy and of the expert (``collect``).
7. ``stats``: trajectory quality of the three datasets (``cli.py stats``).
8. ``summary.json`` and ``learning_curve.png`` (rollout success vs env steps, both agents).

Usage::

    python scripts/method_experiment.py --task goal0 --out runs/method
    python scripts/method_experiment.py --task goal0 --out runs/method --report   # tables for docs/results.md

Figures are written by the stages themselves; ``--report`` only reads them.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from plot_curves import curve as learning_curve  # scripts/ is on sys.path when run as a script

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # run as a script from anywhere: the project beside it
from agents.generate import GAUSSIAN_FINETUNE  # noqa: E402  (Gaussian PPO fine-tuning settings, one place)


@dataclass(frozen=True)
class TaskSpec:
    """One experiment task."""

    env: str
    task_id: int
    why: str


TASKS: dict[str, TaskSpec] = {
    "goal0": TaskSpec("LIBERO-Goal-v0", 0, "LIBERO-Goal task 0 (open the middle drawer; expert 100%)"),
    "spatial4": TaskSpec("LIBERO-Spatial-v0", 4, "a weak-expert task (scripted expert 54%, docs/experts.md)"),
    "long5": TaskSpec("LIBERO-10-v0", 5, "a LIBERO-10 (long-horizon, two-stage) task, the shortest one (expert 100%)"),
    "l90_23": TaskSpec("LIBERO-90-v0", 23, "a weak-expert LIBERO-90 task (scripted expert 58%)"),
    "goal3": TaskSpec("LIBERO-Goal-v0", 3, "the weakest expert on LIBERO-Goal (12%: the bowl sits under the opened drawer)"),
    "spatial6": TaskSpec("LIBERO-Spatial-v0", 6, "an expert that fails 1 in 5 (80%, at the line for a weak expert: its grasps "
                         "of the bowl next to the cookie box fail on 10 of the 50 init states)"),
}

def run(argv: list[str], log: Path) -> None:
    """``python cli.py ARGV``, output appended to ``log``; raises on a non-zero exit."""
    command = [sys.executable, str(REPO / "cli.py"), *argv]
    with log.open("a") as handle:
        handle.write(f"\n$ {' '.join(command)}\n")
        handle.flush()
        started = time.perf_counter()
        code = subprocess.call(command, stdout=handle, stderr=subprocess.STDOUT, cwd=REPO)
        handle.write(f"[exit {code} after {time.perf_counter() - started:.0f} s]\n")
    if code != 0:
        raise SystemExit(f"stage failed (exit {code}): {' '.join(argv)}; see {log}")


def mark(state: dict[str, Any], name: str, path: Path, started: float, **extra: Any) -> None:
    state[name] = {"done": True, "seconds": round(time.perf_counter() - started, 1), **extra}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    tmp.replace(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--out", type=Path, default=Path("runs/method"))
    parser.add_argument("--demos", type=int, default=5, help="scripted demonstrations for BC")
    parser.add_argument("--bc-epochs", type=int, default=800)
    parser.add_argument("--bc-batch-size", type=int, default=64,
                        help="BC minibatch (5 demos are ~600 samples: 64 gives ~7k gradient steps in 800 epochs)")
    parser.add_argument("--rl-steps", type=int, default=100_000, help="env-step budget of each RL run")
    parser.add_argument("--num-envs", type=int, default=2)
    parser.add_argument("--eval-episodes", type=int, default=50)
    parser.add_argument("--data-episodes", type=int, default=50, help="successful rollouts per dataset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--agents", nargs="+", choices=["diffusion", "gaussian"], default=["diffusion", "gaussian"])
    parser.add_argument("--eval-sampling", nargs="+", default=["deterministic", "stochastic"])
    parser.add_argument("--data-sampling", nargs="+", choices=["deterministic", "stochastic"],
                        default=["deterministic", "stochastic"],
                        help="how the fine-tuned policies act when collecting datasets (one dataset per mode)")
    parser.add_argument("--rl-flags", default="",
                        help="extra flags for the DiffusionPPO train command, e.g. '--agent.actor-lr 1e-5 --agent.n-chunks 300'")
    parser.add_argument("--no-data", action="store_true", help="stop after the evaluations (no datasets, no stats)")
    parser.add_argument("--skip", nargs="*", default=[], help="stages to skip (e.g. rl_gaussian)")
    parser.add_argument("--report", action="store_true", help="print the tables from what is on disk")
    args = parser.parse_args()
    spec = TASKS[args.task]
    folder = (args.out / args.task).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    if args.report:
        print(report(folder))
        return
    log = folder / "log.txt"
    state_path = folder / "state.json"
    state: dict[str, Any] = json.loads(state_path.read_text()) if state_path.exists() else {}
    state["machine"] = f"{platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}"
    state["config"] = vars(args) | {"out": str(args.out), "env": spec.env, "task_id": spec.task_id}
    env = ["--env", spec.env, "--task-id", str(spec.task_id)]
    workers = ["--num-workers", str(args.num_envs)]

    def go(name: str, argv: list[str], may_fail: bool = False, **extra: Any) -> None:
        if name in args.skip or state.get(name, {}).get("done"):
            return
        started = time.perf_counter()
        print(f"[{time.strftime('%H:%M:%S')}] {args.task}: {name}", flush=True)
        try:
            run(argv, log)
        except SystemExit as error:
            if not may_fail:
                raise
            print(f"  {name} failed: {error} (recorded; going on)", flush=True)
            mark(state, name, state_path, started, failed=str(error))
            return
        mark(state, name, state_path, started, **extra)

    # 1. demonstrations
    go("demos", ["collect", "--policy", "scripted", *env, "--episodes", str(args.demos), "--until-successes",
                 *workers, "--no-images", "--seed", str(args.seed), "--out", str(folder / "demos"), "--resume",
                 "--no-progress"])  # fmt: skip
    demos = sorted(str(p) for p in (folder / "demos").glob("*.hdf5"))

    # 2. behaviour cloning, both policies (a folder without a checkpoint is a killed run: start it again)
    for agent in args.agents:
        run_dir = folder / f"bc_{agent}"
        if not (run_dir / "checkpoint").exists() and run_dir.exists():
            shutil.rmtree(run_dir)
        go(f"bc_{agent}", ["pretrain", "--dataset", *demos, "--run-dir", str(run_dir), "--agent", f"{agent}-ppo",
                           "--epochs", str(args.bc_epochs), "--batch-size", str(args.bc_batch_size),
                           "--seed", str(args.seed), "--no-progress"])  # fmt: skip

    def evaluate(name: str, checkpoint: Path) -> None:
        go(name, ["eval", "--checkpoint", str(checkpoint), "--episodes", str(args.eval_episodes),
                  "--num-envs", str(args.num_envs), "--seed", str(args.seed), "--sampling", *args.eval_sampling,
                  "--json-out", str(folder / f"{name}.json")])  # fmt: skip

    # 3. the BC starts
    for agent in args.agents:
        evaluate(f"eval_bc_{agent}", folder / f"bc_{agent}" / "checkpoint")

    # 4. RL from each start, same env-step budget
    for agent in args.agents:
        # the BC checkpoint's agent settings are the defaults; these flags override some (Gaussian PPO's RL settings)
        overrides = [f"--agent.{k.replace('_', '-')}={v}" for k, v in (GAUSSIAN_FINETUNE if agent == "gaussian" else {}).items()]
        if agent == "diffusion":
            overrides += shlex.split(args.rl_flags)
        go(f"rl_{agent}", ["train", "--agent", f"{agent}-ppo", *overrides, *env,
                           "--init-from", str(folder / f"bc_{agent}" / "checkpoint"),
                           "--total-timesteps", str(args.rl_steps), "--num-envs", str(args.num_envs),
                           "--checkpoint-every", "10000", "--seed", str(args.seed),
                           "--resume", str(folder / f"rl_{agent}"), "--no-progress"])  # fmt: skip

    # 5. the fine-tuned policies
    for agent in args.agents:
        evaluate(f"eval_rl_{agent}", folder / f"rl_{agent}")
    if args.no_data:
        plot_learning_curves(folder)
        (folder / "summary.json").write_text(json.dumps(summarize(folder), indent=2) + "\n")
        print(report(folder))
        return

    # 6. datasets: 50 successful rollouts of each fine-tuned policy per sampling mode (``data_<agent>`` acting
    #    deterministically, ``data_<agent>_stochastic`` as in its training rollouts), and the expert's
    sources = {"expert": ["--policy", "scripted"]}
    for agent in args.agents:
        for sampling in args.data_sampling:
            name = agent if sampling == "deterministic" else f"{agent}_{sampling}"
            sources[name] = ["--policy", "checkpoint", "--checkpoint", str(folder / f"rl_{agent}"),
                             "--sampling", sampling]  # fmt: skip
    for source, policy in sources.items():
        go(f"data_{source}", ["collect", *policy, *env, "--episodes", str(args.data_episodes), "--until-successes",
                              "--max-episodes", str(10 * args.data_episodes), *workers, "--no-images",
                              "--seed", str(10_000 + args.seed), "--out", str(folder / f"data_{source}"), "--resume",
                              "--no-progress"], may_fail=True)  # fmt: skip  (a policy may not reach 50 successes)

    # 7. trajectory quality
    data = [str(folder / f"data_{s}") for s in sources if list((folder / f"data_{s}").glob("*.hdf5"))]
    if "stats" in state and state["stats"].get("datasets") != data:  # datasets added since: compute them again
        state.pop("stats")
    go("stats", ["stats", *data, "--plots", str(folder / "stats_plots"), "--json-out", str(folder / "stats.json")],
       datasets=data)  # fmt: skip

    # 8. learning curves and the summary
    plot_learning_curves(folder)
    (folder / "summary.json").write_text(json.dumps(summarize(folder), indent=2) + "\n")
    print(report(folder))


# ---------------------------------------------------------------------- reading the results
def plot_learning_curves(folder: Path) -> Path | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    plotted = False
    for agent, colour in (("diffusion", "tab:blue"), ("gaussian", "tab:orange")):
        steps, success = learning_curve(folder / f"rl_{agent}")
        if steps:
            ax.plot(steps, success, label=f"{agent}-ppo (training rollouts)", color=colour)
            plotted = True
        result = _eval(folder, f"eval_bc_{agent}")
        if result is not None:
            ax.axhline(result["success_rate_by_sampling"].get("stochastic", float("nan")), color=colour, ls=":",
                       label=f"{agent} BC, stochastic eval")  # fmt: skip
    if not plotted:
        plt.close(fig)
        return None
    ax.set_xlabel("env steps")
    ax.set_ylabel("success rate (last 100 episodes)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(folder.name)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    path = folder / "learning_curve.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _eval(folder: Path, name: str) -> dict[str, Any] | None:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def summarize(folder: Path) -> dict[str, Any]:
    state = json.loads((folder / "state.json").read_text()) if (folder / "state.json").exists() else {}
    out: dict[str, Any] = {"task": folder.name, "machine": state.get("machine"), "config": state.get("config"), "eval": {}}
    for name in ("eval_bc_diffusion", "eval_bc_gaussian", "eval_rl_diffusion", "eval_rl_gaussian"):
        result = _eval(folder, name)
        if result is not None:
            out["eval"][name] = {
                mode: {"success": rows[0]["success_rate"], "interval95": rows[0]["interval95"],
                       "episodes": rows[0]["episodes"], "mean_length": rows[0]["mean_length"]}
                for mode, rows in result["by_sampling"].items()
            }  # fmt: skip
    out["seconds"] = {name: entry.get("seconds") for name, entry in state.items() if isinstance(entry, dict) and "done" in entry}
    for agent in ("diffusion", "gaussian"):
        steps, success = learning_curve(folder / f"rl_{agent}")
        out[f"rl_{agent}_curve"] = {"steps": steps, "rollout_success": success}
    expert = folder / "data_expert"
    out["expert_success"] = _collect_success(expert)
    if (folder / "stats.json").exists():
        out["stats"] = json.loads((folder / "stats.json").read_text())
    return out


def _collect_success(folder: Path) -> float | None:
    """Success rate of a collect run (every episode's summary, kept or not)."""
    summaries = list((folder / "episodes").glob("*.json")) if folder.exists() else []
    results = []
    for path in summaries:
        try:
            results.append(bool(json.loads(path.read_text()).get("success")))
        except (json.JSONDecodeError, OSError):
            continue
    return sum(results) / len(results) if results else None


def report(folder: Path) -> str:
    summary = summarize(folder)
    lines = [f"## {folder.name}", "", "| policy | deterministic (95% CI) | stochastic (95% CI) |", "| --- | --- | --- |"]
    for name, label in (("eval_bc_diffusion", "BC diffusion"), ("eval_rl_diffusion", "DiffusionPPO"),
                        ("eval_bc_gaussian", "BC Gaussian"), ("eval_rl_gaussian", "Gaussian PPO")):  # fmt: skip
        modes = summary["eval"].get(name)
        if modes is None:
            continue
        cells = []
        for mode in ("deterministic", "stochastic"):
            row = modes.get(mode)
            cells.append("-" if row is None else f"{100 * row['success']:.0f}% ({100 * row['interval95'][0]:.0f}-{100 * row['interval95'][1]:.0f})")
        lines.append(f"| {label} | {' | '.join(cells)} |")
    for agent, label in (("diffusion", "DiffusionPPO"), ("gaussian", "Gaussian PPO")):
        before, after = summary["eval"].get(f"eval_bc_{agent}"), summary["eval"].get(f"eval_rl_{agent}")
        if before and after:
            for mode in ("stochastic", "deterministic"):
                if mode in before and mode in after:
                    steps = (summary.get(f"rl_{agent}_curve") or {}).get("steps") or [0]
                    lines.append(
                        f"{label}: {mode} success {100 * before[mode]['success']:.0f}% (BC start) -> "
                        f"{100 * after[mode]['success']:.0f}% after {steps[-1]} env steps of RL"
                    )
    if summary.get("expert_success") is not None:
        lines.append(f"| scripted expert (collect) | {100 * summary['expert_success']:.0f}% | |")
    lines.append("")
    lines.append("stage seconds: " + ", ".join(f"{k} {v}" for k, v in summary["seconds"].items()))
    return "\n".join(lines)


if __name__ == "__main__":
    main()
