"""Run a policy on LIBERO tasks in parallel workers and record LIBERO-layout episodes.

Layout of a collection folder::

    OUT/
      collection.json              the plan, counts and provenance (rewritten as it goes)
      episodes/ep_000007.hdf5      one finished, kept episode: a one-demo LIBERO file
      episodes/ep_000007.json      summary of every finished episode (kept or not)
      <task name>_demo.hdf5        export (see libero_gym.data.export), one per task

Episode ``i`` is reset with seed ``seed + i`` (which picks its init state) and
the policy is re-seeded with it, so an episode index always plays the same
episode. Each worker writes its episodes itself, atomically; the summary JSON is
written after the shard and marks the index as done. A killed collection
therefore resumes (``resume=True``) from the finished indices, and because
indices are consumed in order and the result is cut at the first index prefix
that meets the goal, it ends with exactly the requested number of episodes
whatever the number of workers or interruptions.

Workers are plain processes (``forkserver`` start, so they inherit no threads, GL
contexts or simulators) fed one index at a time (:class:`ProcessWorkers`), or, with
``backend="ray"``, Ray actors on this machine or a cluster
(:class:`libero_gym.data.ray_workers.RayEpisodeWorkers`), which play the same episodes. A worker that dies (killed,
segfault, its node left) or raises is replaced; its episode is dropped, counted, and retried
(at most :data:`MAX_ATTEMPTS` times, then skipped). Nothing of a dropped episode
is ever recorded half-way.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import multiprocessing as mp
import queue
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

from libero_gym.data import dataset as ds
from libero_gym.data.worker import EPISODES_DIR, CollectPlan, EpisodeWorker, shard_path, summary_path
from libero_gym.errors import InvalidInputError
from libero_gym.progress import ProgressBar
from libero_gym.signals import quiet_worker_signals

__all__ = ["CollectPlan", "CollectResult", "finished_summaries", "run_collection", "shard_path", "summary_path"]

MAX_ATTEMPTS = 2
"""Times an episode index is tried before it is skipped (a crash that repeats on
the same seed is the simulator's, not bad luck)."""
POLL_SECONDS = 0.2
"""How often the parent checks results and worker liveness."""
PARENT_CHECK_SECONDS = 2.0
"""An idle worker checks this often whether the collecting process still lives."""
START_METHOD = "forkserver"
"""Workers never inherit the parent's threads (torch), GL contexts or simulators."""
MANIFEST_NAME = "collection.json"


@dataclasses.dataclass
class CollectResult:
    """What a collection produced."""

    out_dir: Path
    kept: list[int]
    """Episode indices written as shards, in order."""
    successes: int
    """Successes among the finished episodes of the final prefix."""
    finished: int
    """Episodes finished in the final prefix (kept or not)."""
    dropped: int
    """Episodes lost to dead or failing workers (retried or skipped)."""
    skipped: list[int]
    """Indices given up after MAX_ATTEMPTS failures."""
    seconds: float
    steps: int
    """Env steps of the episodes run in this call."""
    summaries: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    """Summary of every finished episode of the final prefix, by index (with timings:
    ``step_seconds``, and for kept episodes ``render_seconds``, ``write_seconds``)."""

def finished_summaries(out_dir: str | Path) -> dict[int, dict[str, Any]]:
    """Summaries of the finished episodes of a collection folder, by index.

    A summary whose kept shard is missing or invalid is ignored (the episode is
    run again).
    """
    folder = Path(out_dir) / EPISODES_DIR
    found: dict[int, dict[str, Any]] = {}
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("ep_*.json")):
        try:
            summary = json.loads(path.read_text())
            index = int(summary["index"])
        except (ValueError, KeyError, OSError):
            continue
        if summary.get("kept"):
            try:
                ds.validate_dataset(shard_path(out_dir, index), require_images=bool(summary.get("images")))
            except Exception:  # noqa: BLE001 - any defect means: run it again
                continue
        found[index] = summary
    return found

def _worker_main(plan: CollectPlan, tasks: Any, results: Any) -> None:
    """Worker process: play the episode indices it is sent until it gets ``None``.

    Ctrl-C and SIGTERM are the parent's to handle (:func:`~libero_gym.signals.quiet_worker_signals`):
    it stops its workers itself, and a SIGTERM to the whole process group ends a worker
    silently; either way nothing is half-written (every file is written atomically).
    """
    quiet_worker_signals()
    worker = EpisodeWorker(plan)
    parent = mp.parent_process()
    try:
        while True:
            try:
                index = tasks.get(timeout=PARENT_CHECK_SECONDS)
            except queue.Empty:
                if parent is not None and not parent.is_alive():
                    break  # the collection was killed: never outlive it
                continue
            if index is None:
                break
            try:
                results.put(("done", index, worker.run(index)))
            except Exception:  # noqa: BLE001 - reported to the parent, which drops the episode
                results.put(("error", index, traceback.format_exc()))
                break  # the env may be broken: let the parent start a fresh worker
    finally:
        worker.close()


# ---------------------------------------------------------------------- parent side
def _prefix(summaries: dict[int, dict[str, Any]], skipped: set[int], plan: CollectPlan) -> tuple[int | None, int, int]:
    """Walk indices 0, 1, ... while finished; return (cut index or None, finished, successes).

    The cut is the first index after which the goal holds on the contiguous prefix.
    """
    finished = successes = 0
    index = 0
    while index in summaries or index in skipped:
        if index in summaries:
            finished += 1
            successes += bool(summaries[index]["success"])
        goal = successes if plan.until_successes else finished
        if goal >= plan.episodes:
            return index, finished, successes
        index += 1
    return None, finished, successes


def _remove_overshoot(out: Path, summaries: dict[int, dict[str, Any]], last: int) -> None:
    """Delete every episode after ``last``: those the parent heard of (``summaries``, updated) and those a
    worker finished and wrote while the parent was stopping, which it never heard of; the export reads
    the folder, so either kind left there would end up in the dataset beyond the goal."""
    folder = out / EPISODES_DIR
    names = [path.stem.removeprefix("ep_") for pattern in ("ep_*.json", "ep_*.hdf5") for path in folder.glob(pattern)]
    on_disk = {int(name) for name in names if name.isdigit()}
    for index in sorted({i for i in summaries if i > last} | {i for i in on_disk if i > last}):
        for path in (shard_path(out, index), summary_path(out, index)):
            path.unlink(missing_ok=True)
        summaries.pop(index, None)


class ProcessWorkers:
    """The local backend's episode workers: ``forkserver`` processes fed one index at a time.

    A worker that raised exits (its env may be broken); a dead one is reaped; both are
    replaced the next time :meth:`idle` is asked. The Ray backend's counterpart, with the
    same four methods, is :class:`libero_gym.data.ray_workers.RayEpisodeWorkers`.
    """

    def __init__(self, plan: CollectPlan, size: int) -> None:
        self.plan, self.size = plan, size
        self.ctx = mp.get_context(START_METHOD)
        self.results: Any = self.ctx.Queue()
        self.workers: list[dict[str, Any]] = []

    def idle(self) -> list[int]:
        """Slots ready for an index ((re)starting workers up to ``size``)."""
        while len(self.workers) < self.size:
            tasks = self.ctx.Queue()
            proc = self.ctx.Process(target=_worker_main, args=(self.plan, tasks, self.results), daemon=True)
            proc.start()
            self.workers.append({"proc": proc, "tasks": tasks, "index": None})
        return [slot for slot, worker in enumerate(self.workers) if worker["index"] is None]

    def assign(self, slot: int, index: int) -> None:
        """Give episode ``index`` to the idle worker of ``slot``."""
        self.workers[slot]["index"] = index
        self.workers[slot]["tasks"].put(index)

    def busy(self) -> bool:
        """Whether an episode is in flight."""
        return any(worker["index"] is not None for worker in self.workers)

    def events(self, timeout: float) -> list[tuple[str, int, Any]]:
        """What happened within ``timeout`` s: ``("done", index, summary)`` or ``("error", index, why)``
        (the worker raised, or died: its episode is lost)."""
        events: list[tuple[str, int, Any]] = []
        with contextlib.suppress(queue.Empty):
            events.append(self._took(*self.results.get(timeout=timeout)))
        for worker in list(self.workers):
            if not worker["proc"].is_alive():
                with contextlib.suppress(queue.Empty):  # a result it sent before dying
                    while True:
                        events.append(self._took(*self.results.get(timeout=POLL_SECONDS)))
                if worker in self.workers:
                    if worker["index"] is not None:
                        events.append(("error", worker["index"], f"worker died (exit code {worker['proc'].exitcode})"))
                    self.workers.remove(worker)
        return events

    def _took(self, kind: str, index: int, payload: Any) -> tuple[str, int, Any]:
        owner = next((w for w in self.workers if w["index"] == index), None)
        if owner is not None:
            owner["index"] = None
            if kind == "error":  # it exits after an error; a fresh one starts
                owner["proc"].join(timeout=10)
                self.workers.remove(owner)
        return kind, index, payload

    def close(self) -> None:
        """Stop the workers: idle ones finish, those mid-episode are terminated (nothing is half-written)."""
        for worker in self.workers:
            if worker["proc"].is_alive():
                if worker["index"] is None:
                    worker["tasks"].put(None)
                    worker["proc"].join(timeout=30)
                if worker["proc"].is_alive():
                    worker["proc"].terminate()  # mid-episode: nothing is half-written (atomic writes)
                    worker["proc"].join(timeout=10)


def run_collection(plan: CollectPlan, *, num_workers: int = 1, resume: bool = False, progress: bool = True,
                   on_result: Callable[[dict[str, Any]], None] | None = None, backend: str = "local",
                   ray_address: str | None = None) -> CollectResult:
    """Collect episodes as ``plan`` says, in ``num_workers`` workers.

    Args:
        plan: what to collect.
        num_workers: workers (each builds its own simulator).
        resume: continue a collection in ``plan.out_dir`` (else the folder must
            hold no episodes).
        progress: show a rich progress bar.
        on_result: called in the parent with every finished episode's summary.
        backend: ``local`` (worker processes, :class:`ProcessWorkers`) or ``ray`` (Ray actors,
            :class:`libero_gym.data.ray_workers.RayEpisodeWorkers`); the episodes are the same.
        ray_address: ``ray`` only: the cluster (``None``: the connected or a new local Ray).

    Returns:
        The collection's counts; shards lie in ``OUT/episodes``.
    """
    out = Path(plan.out_dir)
    episodes_dir = out / EPISODES_DIR
    episodes_dir.mkdir(parents=True, exist_ok=True)
    ds.remove_stale_temporaries(episodes_dir)
    summaries = finished_summaries(out)
    if summaries and not resume:
        raise InvalidInputError(f"{out} already holds {len(summaries)} episodes; pass --resume to continue it")
    if resume:
        _check_same_plan(plan, out / MANIFEST_NAME)
    # The workers first: a Ray that does not start, or an unreachable cluster, fails before anything is written.
    if backend == "ray":
        from libero_gym.data.ray_workers import RayEpisodeWorkers  # imports Ray: only when asked for

        workers: Any = RayEpisodeWorkers(plan, num_workers, ray_address=ray_address)
    elif backend == "local":
        if ray_address is not None:
            raise InvalidInputError("ray_address needs backend='ray'")
        workers = ProcessWorkers(plan, num_workers)
    else:
        raise InvalidInputError(f"backend must be one of ['local', 'ray'], got {backend!r}")
    skipped: set[int] = set()
    attempts: dict[int, int] = {}
    dropped = 0
    steps = 0
    start = time.monotonic()

    pending: list[int] = []  # indices to retry first
    next_index = 0

    def take_index() -> int | None:
        nonlocal next_index
        if pending:
            return pending.pop(0)
        while next_index in summaries or next_index in skipped:
            next_index += 1
        if next_index >= plan.max_episodes:
            return None
        next_index += 1
        return next_index - 1

    def drop(index: int, why: str) -> None:
        nonlocal dropped
        dropped += 1
        attempts[index] = attempts.get(index, 0) + 1
        if attempts[index] >= MAX_ATTEMPTS:
            skipped.add(index)
            _log(f"episode {index} skipped after {attempts[index]} failures: {why}")
        else:
            pending.append(index)
            _log(f"episode {index} dropped (will retry): {why}")

    def handle(kind: str, index: int, payload: Any) -> None:
        nonlocal steps
        if kind == "done":
            summaries[index] = payload
            steps += int(payload["length"])
            if on_result is not None:
                on_result(payload)
        else:
            drop(index, payload.strip().splitlines()[-1])
        _write_manifest(plan, summaries, dropped, skipped, finished=False)

    bar = _Progress(plan, enabled=progress)
    try:
        _write_manifest(plan, summaries, dropped, skipped, finished=False)
        bar.update(summaries, dropped)
        while True:
            cut, _, _ = _prefix(summaries, skipped, plan)
            if cut is not None:
                break
            for slot in workers.idle():  # hand work to idle workers
                index = take_index()
                if index is None:
                    break
                workers.assign(slot, index)
            if not workers.busy():
                break  # max_episodes reached without meeting the goal
            for event in workers.events(POLL_SECONDS):
                handle(*event)
            bar.update(summaries, dropped)
    finally:
        workers.close()
        bar.close()

    cut, finished, successes = _prefix(summaries, skipped, plan)
    _remove_overshoot(out, summaries, cut if cut is not None else max(summaries, default=-1))
    ds.remove_stale_temporaries(episodes_dir)
    kept = sorted(i for i, s in summaries.items() if s.get("kept"))
    _write_manifest(plan, summaries, dropped, skipped, finished=cut is not None)
    if cut is None:
        what = "successes" if plan.until_successes else "episodes"
        _log(f"stopped at max_episodes={plan.max_episodes} with {successes if plan.until_successes else finished} "
             f"of {plan.episodes} {what}")
    return CollectResult(
        out, kept, successes, finished, dropped, sorted(skipped), time.monotonic() - start, steps, dict(summaries)
    )


RESUME_MUST_MATCH = ("env_id", "task_ids", "policy", "keep", "image_size", "images", "max_episode_steps", "seed")
"""Plan fields a resumed collection must share with the interrupted one (``episodes``
may grow: extending a collection is a resume too)."""


def _check_same_plan(plan: CollectPlan, manifest: Path) -> None:
    """Raise InvalidInputError if ``manifest`` records a different plan."""
    if not manifest.exists():
        return
    try:
        previous = json.loads(manifest.read_text())["plan"]
    except (ValueError, KeyError, OSError):
        return
    current = json.loads(json.dumps(dataclasses.asdict(plan), default=str))
    differ = [key for key in RESUME_MUST_MATCH if previous.get(key) != current.get(key)]
    if differ:
        details = ", ".join(f"{key}: {previous.get(key)!r} -> {current.get(key)!r}" for key in differ)
        raise InvalidInputError(f"cannot resume {manifest.parent}: it was collected with other settings ({details})")


def _write_manifest(plan: CollectPlan, summaries: dict[int, dict[str, Any]], dropped: int, skipped: set[int],
                    finished: bool) -> None:
    ds.write_json_atomic(
        Path(plan.out_dir) / MANIFEST_NAME,
        {
            "plan": dataclasses.asdict(plan),
            "finished": finished,
            "episodes_finished": len(summaries),
            "episodes_kept": sum(bool(s.get("kept")) for s in summaries.values()),
            "successes": sum(bool(s.get("success")) for s in summaries.values()),
            "dropped": dropped,
            "skipped": sorted(skipped),
        },
    )


def _log(message: str) -> None:
    from rich.console import Console

    Console(stderr=True).print(f"[yellow]collect:[/] {message}")


class _Progress:
    """The collection's progress bar: episodes, successes, success rate, dropped."""

    def __init__(self, plan: CollectPlan, enabled: bool) -> None:
        self.plan = plan
        self.bar = ProgressBar("[bold]collect[/]", plan.episodes, enabled=enabled)

    def update(self, summaries: dict[int, dict[str, Any]], dropped: int) -> None:
        done = len(summaries)
        wins = sum(bool(s["success"]) for s in summaries.values())
        rate = wins / done if done else 0.0
        completed = min(wins if self.plan.until_successes else done, self.plan.episodes)
        self.bar.update(completed=completed, stats=f"episodes {done}  successes {wins}  rate {rate:.0%}  dropped {dropped}")

    def close(self) -> None:
        self.bar.close()
