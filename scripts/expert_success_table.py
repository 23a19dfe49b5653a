"""Success table of the scripted expert over LIBERO's 130 tasks, into docs/experts.md.

Runs :class:`libero_gym.experts.scripted.ScriptedExpert` on every task of the
chosen suites from init states ``0 .. episodes_per_task - 1`` (the suite's step
limit, state observations), in parallel worker processes, and writes:

- a JSON file with one record per episode (re-used: episodes already in it are
  not run again, so an interrupted run resumes; ``--fresh`` ignores it);
- a markdown section in ``docs/experts.md`` between the markers
  ``<!-- success-table:start -->`` and ``<!-- success-table:end -->``: success per
  task, mean per suite, and per goal-predicate type (both the success rate of the
  tasks whose goal has that predicate and how often the predicate itself held at
  the end of the episode).

Usage::

    python scripts/expert_success_table.py                       # all 130 tasks x 50 init states
    python scripts/expert_success_table.py --suites libero_goal --episodes-per-task 10 --workers 2
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tyro

REPO = Path(__file__).resolve().parents[1]
START, END = "<!-- success-table:start -->", "<!-- success-table:end -->"
ALL_SUITES = ("libero_spatial", "libero_object", "libero_goal", "libero_10", "libero_90")


@dataclass(frozen=True)
class TableConfig:
    """Run the scripted expert over LIBERO tasks and write its success table."""

    suites: tuple[str, ...] = ALL_SUITES
    """Suites to run (keys as in libero_gym.suites)."""
    episodes_per_task: int = 50
    """Init states 0 .. N-1 of every task (LIBERO has 50)."""
    workers: int = 2
    """Worker processes, one task at a time each."""
    tasks: tuple[int, ...] = ()
    """Only these task indices in every chosen suite (default: all)."""
    results: Path = REPO / "docs" / "expert_results.json"
    """Per-episode records (JSON); read to resume, rewritten as episodes finish."""
    output: Path = REPO / "docs" / "experts.md"
    """Markdown file whose success-table section is replaced."""
    fresh: bool = False
    """Ignore existing records in ``results`` and run everything again."""
    note: str = ""
    """Free text added under the table (e.g. what was run and on which machine)."""
    render_only: bool = False
    """Do not run anything: rewrite the markdown from the records in ``results``."""

    def __post_init__(self) -> None:
        bad = [s for s in self.suites if s not in ALL_SUITES]
        if bad:
            raise ValueError(f"suites must be among {list(ALL_SUITES)}, got {bad}")
        if not 1 <= self.episodes_per_task <= 50:
            raise ValueError(f"episodes_per_task must be in [1, 50], got {self.episodes_per_task}")
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers}")


@dataclass
class Job:
    """One task's episodes, run in one worker process."""

    suite: str
    task_id: int
    init_ids: list[int] = field(default_factory=list)


def run_job(job: Job) -> list[dict[str, Any]]:
    """Run the expert on one task's init states; one record per episode."""
    import gymnasium as gym
    import numpy as np

    import libero_gym  # noqa: F401  (registers the env ids)
    from libero_gym import suites
    from libero_gym.data import metrics
    from libero_gym.experts.scripted import ScriptedExpert

    task = suites.get_task(job.suite, job.task_id)
    env = gym.make(f"LIBERO-{suites.SUITE_ID_NAMES[job.suite]}-v0", task_id=job.task_id, obs_mode="state")
    expert = ScriptedExpert()
    records = []
    try:
        for init_id in job.init_ids:
            t0 = time.time()
            record: dict[str, Any] = {"suite": job.suite, "task_id": job.task_id, "init_state_id": init_id}
            try:
                obs, info = env.reset(seed=init_id, options={"init_state_id": init_id})
                expert.reset(env.unwrapped)
                steps, done = 0, False
                scene = expert.scene
                assert scene is not None
                actions, ee = [], [scene.eef_pos]
                while not done:
                    action = expert.act(obs)
                    if action.shape != (7,) or not np.all(np.isfinite(action)) or np.abs(action).max() > 1:
                        raise RuntimeError(f"bad action {action}")
                    obs, _, terminated, truncated, info = env.step(action)
                    actions.append(action)
                    ee.append(scene.eef_pos)
                    steps += 1
                    done = terminated or truncated
                goal = scene.env.parsed_problem["goal_state"]
                quality = metrics.episode_metrics(np.asarray(actions), np.asarray(ee[1:]))
                record.update(
                    success=bool(info["is_success"]),
                    steps=steps,
                    predicates=[[*map(str, p), bool(scene.holds(p))] for p in goal],
                    log=expert.log[-6:],
                    action_jerk=round(quality["action_jerk"], 5),
                    ee_jerk=round(quality["ee_jerk"], 2),
                )
            except Exception as exc:  # noqa: BLE001  (a crash is a failure, recorded with its cause)
                record.update(success=False, steps=0, predicates=[], log=[f"error: {exc!r}"])
            record["seconds"] = round(time.time() - t0, 2)
            record["language"] = task.language
            records.append(record)
    finally:
        env.close()
    return records


def _commit() -> str:
    """Short hash of the checked-out commit (``+dirty`` when the expert has local edits)."""
    import subprocess

    def git(*args: str) -> str:
        out = subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True, check=False)
        return out.stdout.strip()

    sha = git("rev-parse", "--short", "HEAD") or "unknown"
    return sha + ("+dirty" if git("status", "--porcelain", "--", "libero_gym/experts") else "")


def _key(r: dict[str, Any]) -> tuple[str, int, int]:
    return (r["suite"], int(r["task_id"]), int(r["init_state_id"]))


def render(records: list[dict[str, Any]], cfg: TableConfig) -> str:
    """Markdown tables from episode records."""
    from libero_gym import suites

    by_task: dict[tuple[str, int], list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_task[(r["suite"], int(r["task_id"]))].append(r)
    lines = []
    n_eps = len(records)
    lines.append(
        f"Episodes: {n_eps} ({len(by_task)} tasks; init states per task: "
        f"{sorted({len(v) for v in by_task.values()})}). Generated {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} "
        f"by `python scripts/expert_success_table.py`; expert code of commit {_commit()}."
    )
    lines.append("")
    # Per suite.
    lines.append(
        "| suite | tasks | episodes | mean success | mean steps (successes) "
        "| action jerk (successes) | EE jerk m²/s⁶ (successes) |"
    )
    lines.append("| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for suite in ALL_SUITES:
        recs = [r for r in records if r["suite"] == suite]
        if not recs:
            continue
        tasks = {r["task_id"] for r in recs}
        # Mean over tasks of per-task success (each task weighs the same).
        per_task = [sum(r["success"] for r in by_task[(suite, t)]) / len(by_task[(suite, t)]) for t in sorted(tasks)]
        steps = [r["steps"] for r in recs if r["success"]]
        mean_steps = f"{sum(steps) / len(steps):.0f}" if steps else "-"
        jerks = [(r["action_jerk"], r["ee_jerk"]) for r in recs if r["success"] and "action_jerk" in r]
        a_jerk = f"{sum(j[0] for j in jerks) / len(jerks):.3f}" if jerks else "-"
        e_jerk = f"{sum(j[1] for j in jerks) / len(jerks):.0f}" if jerks else "-"
        lines.append(
            f"| {suite} | {len(tasks)} | {len(recs)} | {100 * sum(per_task) / len(per_task):.1f}% | {mean_steps} "
            f"| {a_jerk} | {e_jerk} |"
        )
    lines.append("")
    # Per predicate type.
    lines.append("| predicate | tasks with it | success of those tasks | predicate held at episode end |")
    lines.append("| --- | ---: | ---: | ---: |")
    task_rate: dict[str, list[float]] = defaultdict(list)
    held: dict[str, list[bool]] = defaultdict(list)
    for (suite, t), recs in sorted(by_task.items()):
        kinds = {str(p).lower() for p in suites.get_task(suite, t).goal_predicates}
        rate = sum(r["success"] for r in recs) / len(recs)
        for k in kinds:
            task_rate[k].append(rate)
        for r in recs:
            for p in r.get("predicates", []):
                held[p[0].lower()].append(bool(p[-1]))
    for k in ("on", "in", "open", "close", "turnon", "turnoff"):
        if k in task_rate:
            h = held.get(k, [])
            held_s = f"{100 * sum(h) / len(h):.1f}% of {len(h)}" if h else "-"
            lines.append(
                f"| {k} | {len(task_rate[k])} | {100 * sum(task_rate[k]) / len(task_rate[k]):.1f}% | {held_s} |"
            )
    lines.append("")
    # Per task.
    lines.append("| suite | task | instruction | goal | success | mean steps |")
    lines.append("| --- | ---: | --- | --- | ---: | ---: |")
    for (suite, t), recs in sorted(by_task.items(), key=lambda kv: (ALL_SUITES.index(kv[0][0]), kv[0][1])):
        ok = sum(r["success"] for r in recs)
        steps = [r["steps"] for r in recs if r["success"]]
        mean_steps = f"{sum(steps) / len(steps):.0f}" if steps else "-"
        goal = ", ".join(sorted({str(p).lower() for p in suites.get_task(suite, t).goal_predicates}))
        lines.append(f"| {suite} | {t} | {recs[0].get('language', '')} | {goal} | {ok}/{len(recs)} | {mean_steps} |")
    if cfg.note:
        lines += ["", cfg.note]
    return "\n".join(lines)


def write_section(path: Path, body: str) -> None:
    """Replace the success-table section of ``path`` (append one if missing)."""
    text = path.read_text() if path.exists() else "# Scripted experts\n"
    block = f"{START}\n{body}\n{END}"
    if START in text and END in text:
        head, rest = text.split(START, 1)
        _, tail = rest.split(END, 1)
        text = head + block + tail
    else:
        text = text.rstrip() + "\n\n## Success table\n\n" + block + "\n"
    path.write_text(text)


def main(cfg: TableConfig) -> int:
    import multiprocessing as mp

    from libero_gym import suites

    os.environ.setdefault("MUJOCO_GL", "egl")
    os.environ.setdefault("LIBERO_GYM_ASSETS", str((REPO.parent / "shared" / "libero_assets").resolve()))
    records: dict[tuple[str, int, int], dict[str, Any]] = {}
    if cfg.results.exists() and not cfg.fresh:
        for r in json.loads(cfg.results.read_text()):
            records[_key(r)] = r
    jobs = []
    for suite in cfg.suites:
        for task in suites.get_suite(suite):
            if cfg.tasks and task.index not in cfg.tasks:
                continue
            todo = [k for k in range(cfg.episodes_per_task) if (suite, task.index, k) not in records]
            if todo:
                jobs.append(Job(suite, task.index, todo))
    if cfg.render_only:
        jobs = []
    # Interleave the suites (by position within the suite), so that a run stopped
    # early still covers every suite about equally.
    jobs.sort(key=lambda j: (j.task_id / len(suites.get_suite(j.suite)), ALL_SUITES.index(j.suite)))
    print(f"{len(jobs)} tasks to run, {sum(len(j.init_ids) for j in jobs)} episodes, {cfg.workers} workers", flush=True)
    t0 = time.time()

    def save() -> None:
        cfg.results.parent.mkdir(parents=True, exist_ok=True)
        cfg.results.write_text(json.dumps(sorted(records.values(), key=_key), indent=0))
        selected = [
            r
            for r in records.values()
            if r["suite"] in cfg.suites
            and r["init_state_id"] < cfg.episodes_per_task
            and (not cfg.tasks or r["task_id"] in cfg.tasks)
        ]
        write_section(cfg.output, render(selected, cfg))

    if not jobs:
        save()
        return 0
    ctx = mp.get_context("forkserver")
    with ctx.Pool(cfg.workers, maxtasksperchild=4) as pool:
        for done in pool.imap_unordered(run_job, jobs):
            for r in done:
                records[_key(r)] = r
            ok = sum(r["success"] for r in done)
            print(
                f"[{time.time() - t0:6.0f}s] {done[0]['suite']} task {done[0]['task_id']}: {ok}/{len(done)}",
                flush=True,
            )
            save()
    save()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(tyro.cli(TableConfig)))
