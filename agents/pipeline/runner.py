"""The runner: every task's stages in order, several tasks at once, each stage a child process.

A stage's commands run as ``python -m agents.stage COMMAND CONFIG_JSON`` (:mod:`agents.stage`), the config
written beside the task (``TASK/configs/<stage>.json``), output appended to the task's ``log.txt`` after the
equivalent ``cli.py`` command line. Finished stages are recorded in the manifest with their settings.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.pipeline.config import STAGE_WEIGHT, GenerateConfig, TaskRef
from agents.pipeline.manifest import Manifest
from agents.pipeline.report import TASKS_DIR, collection_counts, learning_curve
from agents.pipeline.stages import stage_run
from agents.stage import write_config


_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with generate\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(143)  # generate died before prctl\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)
"""A stage process is ``python -c _DIE_WITH_PARENT PARENT_PID -m agents.stage COMMAND CONFIG_JSON``: on Linux it
gets SIGTERM (and shuts down cleanly) when ``generate`` dies, even by SIGKILL; elsewhere prctl is missing and it
runs on."""


def stage_command(command: str, config_file: Path) -> list[str]:
    """The process command line of one command of a stage: ``python -m agents.stage COMMAND CONFIG_JSON`` under
    this Python, tied to this process."""
    module = [sys.executable, "-m", "agents.stage", command, str(config_file)]
    if sys.platform.startswith("linux"):
        return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), *module[1:]]
    return module


def stage_environment() -> dict[str, str]:
    """The stage processes' environment: this one, with the project that holds this ``agents`` package first on
    ``PYTHONPATH`` (so that they run the same code as ``generate``, whatever their working directory)."""
    import agents

    root = str(Path(agents.__file__).resolve().parents[1])
    path = os.environ.get("PYTHONPATH", "")
    return {**os.environ, "PYTHONPATH": root + (os.pathsep + path if path else "")}


class Runner:
    """Runs the tasks' stages, several tasks at once, and records them in the manifest."""

    def __init__(self, config: GenerateConfig, out: Path, tasks: Sequence[TaskRef], manifest: Manifest,
                 ray_address: str | None = None) -> None:
        self.config, self.out, self.tasks, self.manifest = config, out, list(tasks), manifest
        self.ray_address = ray_address
        """--backend ray: the address of the cluster every stage joins."""
        self.status: dict[str, str] = {t.key: "waiting" for t in tasks}
        self.current: dict[str, str | None] = {t.key: None for t in tasks}
        self.stage_started: dict[str, float] = {}
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.stopping = threading.Event()
        self._lock = threading.Lock()

    def folder(self, task: TaskRef) -> Path:
        return self.out / TASKS_DIR / task.key

    # -- one task
    def run_task(self, task: TaskRef) -> None:
        if self.stopping.is_set():  # a queued task after Ctrl-C / SIGTERM: leave it untouched
            return
        folder = self.folder(task)
        folder.mkdir(parents=True, exist_ok=True)
        self.manifest.record(task.key, None, env=task.env, suite=task.suite, index=task.index,
                             language=task.language, status="running", error=None)  # fmt: skip
        for stage in self.config.stages:
            if self.stopping.is_set():
                self.status[task.key] = "stopped"
                self.manifest.record(task.key, None, status="stopped")
                return
            if self.manifest.done(task.key, stage):
                continue
            error = self._run_stage(task, stage, folder)
            if error is not None:
                self.status[task.key] = "stopped" if self.stopping.is_set() else "failed"
                self.manifest.record(task.key, None, status=self.status[task.key], error=error)
                return
        self.status[task.key] = "done"
        self.current[task.key] = None
        self.manifest.record(task.key, None, status="done", error=None)

    def _run_stage(self, task: TaskRef, stage: str, folder: Path) -> str | None:
        """Run one stage; record it when done. Returns the failure reason, or None."""
        run = stage_run(self.config, task, stage, folder, self.ray_address)
        if stage == "export" and collection_counts(folder / "rollouts")[1] == 0:
            self.manifest.record(task.key, stage, done=True, seconds=0.0, settings=self.config.stage_settings(stage),
                                 short="no successful rollouts: nothing to export")  # fmt: skip
            return None
        if not run.resumable and run.output.exists():  # left by a killed run: start it again
            shutil.rmtree(run.output) if run.output.is_dir() else run.output.unlink()
        self.current[task.key], self.status[task.key] = stage, "running"
        self.stage_started[task.key] = time.time()
        log = folder / "log.txt"
        started = time.perf_counter()
        environment = stage_environment()
        with log.open("a") as handle:
            for number, command in enumerate(run.commands):
                argv = command.cli_argv()
                config_file = write_config(folder / "configs" / f"{stage}{f'.{number}' if number else ''}.json",
                                           command.config)  # fmt: skip
                handle.write(f"\n$ cli.py {shlex.join(argv)}\n")
                handle.flush()
                with self._lock:
                    if self.stopping.is_set():
                        return "stopped"
                    proc = subprocess.Popen(stage_command(command.command, config_file), stdout=handle,
                                            stderr=subprocess.STDOUT, env=environment)  # fmt: skip
                    self.procs[task.key] = proc
                code = proc.wait()
                with self._lock:
                    self.procs.pop(task.key, None)
                seconds = time.perf_counter() - started
                handle.write(f"[exit {code} after {seconds:.0f} s]\n")
                if code != 0:
                    break
        extra: dict[str, Any] = {}
        if code != 0 and stage in ("demos", "rollouts") and code == 1:
            # collect exits 1 when it gave up before enough successes: the stage is finished, short.
            finished, successes, _ = collection_counts(run.output)
            wanted = self.config.demos if stage == "demos" else self.config.episodes
            if finished >= self.config.max_attempts * wanted and not (stage == "demos" and successes == 0):
                extra["short"] = f"{successes} of {wanted} successes in {finished} episodes"
                code = 0
        if code != 0:
            if self.stopping.is_set():
                return "stopped"
            return f"stage {stage} failed (exit {code}): {_last_line(log)} (see {log})"
        self.manifest.record(task.key, stage, done=True, seconds=round(seconds, 1),
                             settings=self.config.stage_settings(stage),
                             command=["cli.py", *run.commands[0].cli_argv()],
                             then=[["cli.py", *c.cli_argv()] for c in run.commands[1:]],
                             finished_at=time.strftime("%Y-%m-%dT%H:%M:%S"), **extra)  # fmt: skip
        return None

    # -- all tasks
    def stop(self, sig: int = signal.SIGTERM) -> None:
        """Stop starting stages and ask the running ones to stop (they shut down cleanly)."""
        with self._lock:
            self.stopping.set()
            for proc in self.procs.values():
                if proc.poll() is None:
                    proc.send_signal(sig)

    def progress(self, task: TaskRef) -> tuple[float, str]:
        """(fraction of the task's stage in flight done, a short description) from its files."""
        stage = self.current.get(task.key)
        folder = self.folder(task)
        if stage in ("demos", "rollouts"):
            wanted = self.config.demos if stage == "demos" else self.config.episodes
            finished, successes, _ = collection_counts(folder / stage)
            return min(successes / wanted, 1.0), f"{successes}/{wanted} successes ({finished} episodes)"
        if stage == "bc":
            epochs = _csv_rows(folder / "bc" / "logs" / "progress.csv")
            return min(epochs / self.config.bc_epochs, 1.0), f"epoch {epochs}/{self.config.bc_epochs}"
        if stage == "rl":

            steps, success = learning_curve(folder / "rl")
            if not steps:
                return 0.0, "starting"
            return min(steps[-1] / self.config.rl_steps, 1.0), f"{steps[-1]} steps, success {100 * success[-1]:.0f}%"
        return 0.0, ""

    def fraction_done(self) -> float:
        """Share of the run's work done (stage weights from :data:`STAGE_WEIGHT`)."""
        total = done = 0.0
        for task in self.tasks:
            for stage in self.config.stages:
                weight = STAGE_WEIGHT[stage]
                total += weight
                if self.manifest.done(task.key, stage):
                    done += weight
                elif self.current.get(task.key) == stage and self.status[task.key] == "running":
                    done += weight * self.progress(task)[0]
        return done / total if total else 1.0


def _csv_rows(path: Path) -> int:
    try:
        with path.open() as handle:
            return max(sum(1 for _ in handle) - 1, 0)
    except OSError:
        return 0


def _last_line(log: Path) -> str:
    """The last informative line of a stage's log (its error, usually)."""
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    lines = [line for line in lines if not line.startswith(("$ cli.py", "[exit "))]
    return lines[-1][:300] if lines else "no output"


def run_all(runner: Runner, parallel: int) -> None:
    """Run every task, ``parallel`` at a time, with a live table or plain lines."""
    from concurrent.futures import ThreadPoolExecutor

    config = runner.config
    with ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="generate") as pool:
        futures = [pool.submit(runner.run_task, task) for task in runner.tasks]
        show = _LiveTable(runner) if config.progress and sys.stdout.isatty() else _Lines(runner)
        try:
            with show:
                while not all(f.done() for f in futures):
                    show.update()
                    time.sleep(1.0)
                show.update()
        except BaseException:
            # Ctrl-C / SIGTERM: stop the stages before the pool's exit waits for its tasks, or it would wait
            # for every stage in flight (and the queued tasks) to finish on their own.
            runner.stop()
            _wait_stopped(runner)
            raise
        for future in futures:
            future.result()  # a bug in the runner itself surfaces here


def _wait_stopped(runner: Runner, timeout: float = 120.0) -> None:
    """Give stopping stages ``timeout`` s to shut down (train saves a checkpoint), then kill them."""
    deadline = time.time() + timeout
    for proc in list(runner.procs.values()):
        try:
            proc.wait(max(deadline - time.time(), 0.1))
        except subprocess.TimeoutExpired:
            proc.kill()


class _Lines:
    """Without a terminal: one line per stage start, finish or failure."""

    def __init__(self, runner: Runner) -> None:
        self.runner = runner
        self.seen: dict[str, tuple[str | None, str]] = {}

    def __enter__(self) -> _Lines:
        return self

    def __exit__(self, *exc: object) -> None:
        pass

    def update(self) -> None:
        for task in self.runner.tasks:
            now = (self.runner.current.get(task.key), self.runner.status[task.key])
            if self.seen.get(task.key) != now:
                self.seen[task.key] = now
                stage, status = now
                error = self.runner.manifest.task(task.key).get("error") if status == "failed" else None
                text = f"{status}" if stage is None or status in ("done",) else f"{stage} ({status})"
                print(f"[{time.strftime('%H:%M:%S')}] {task.key}: {text}{': ' + error if error else ''}", flush=True)


class _LiveTable:
    """A rich table: each task's stage and progress, the run's share done and a rough ETA."""

    def __init__(self, runner: Runner) -> None:
        from rich.live import Live

        self.runner = runner
        self.started = time.time()
        self.live = Live(self._table(), refresh_per_second=2, transient=False)

    def __enter__(self) -> _LiveTable:
        self.live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.live.__exit__(None, None, None)

    def update(self) -> None:
        self.live.update(self._table())

    def _table(self) -> Any:
        from rich.table import Table

        runner = self.runner
        fraction = runner.fraction_done()
        elapsed = time.time() - self.started
        eta = "?" if fraction <= 0.01 else _duration(elapsed * (1 - fraction) / fraction)
        table = Table(title=f"generate: {100 * fraction:.0f}% done, {_duration(elapsed)} elapsed, ETA {eta}")
        for column in ("task", "stage", "status", "progress"):
            table.add_column(column)
        for task in runner.tasks:
            status = runner.status[task.key]
            stage = runner.current.get(task.key) or ""
            detail = runner.progress(task)[1] if status == "running" else ""
            if status == "failed":
                detail = str(runner.manifest.task(task.key).get("error") or "")[:80]
            table.add_row(task.key, stage, status, detail)
        return table


def _duration(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"
