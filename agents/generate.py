"""``cli.py generate``: from nothing to a VLA dataset, per task, in one resumable command.

Per task (``OUT/tasks/<suite>_<index>/``), in order:

=============  ===========================================================================  =================
stage          what runs (each stage is one ``cli.py`` command, the one a user would type)  output
=============  ===========================================================================  =================
``demos``      ``collect --policy scripted --until-successes``: N expert demonstrations     ``demos/``
``bc``         ``pretrain``: behaviour cloning of the agent's policy on them                 ``bc/checkpoint``
``bc_eval``    ``eval``: the BC start's success, sampled as the rollouts sample             ``bc_eval.json``
``rl``         ``train --init-from bc --target-success``: fine-tuning until the rolling     ``rl/``
               success reaches the target or the env-step budget is spent
``rl_eval``    ``eval``: the fine-tuned policy over the init states, deterministic,         ``rl_eval.json``
               stochastic and (if another) as the rollouts sample
``rollouts``   ``collect --policy checkpoint --until-successes``: K successful episodes,    ``rollouts/``
               images rendered from the stored states
``export``     ``export --only-success``: one LIBERO-layout HDF5 per task; with             ``export/``
               ``--formats hdf5 lerobot`` also ``export --format lerobot`` from that file   ``export/lerobot/``
=============  ===========================================================================  =================

``--source scripted`` runs only ``rollouts`` (the scripted expert) and ``export``: the
expert's data, the stand-in for human demonstrations in the paper's comparison.
After the tasks, ``report.md`` and its figures are computed from the files written
(:mod:`agents.generate_report`).

Resumable at stage granularity: ``OUT/manifest.json`` records each task's finished
stages, their settings, wall time and outputs (written atomically by this process
only). Rerunning the same command continues: finished stages are skipped, the stage
in flight starts again (``rl`` from its newest checkpoint, ``demos``/``rollouts`` from
their finished episodes). A setting that changes a finished stage's result is refused
with its name unless ``--restart-from STAGE`` discards that stage and every later one.

Parallel: tasks run concurrently, ``--max-workers // --envs-per-task`` at a time, each
stage with ``--envs-per-task`` env worker processes.

``--backend ray``: the stages with env workers (demos, bc_eval, rl, rollouts) get
``--backend ray --ray-address ADDRESS``, so their workers are Ray actors spread over one
cluster: the one of ``--ray-address``, or a local Ray that ``generate`` starts in its own
process (once; the stages join it by address) and shuts down when it ends, also on
Ctrl-C/SIGTERM. Without ``--max-workers``, tasks run ``cluster CPUs // --envs-per-task``
at a time. The stage processes themselves (the learner of ``rl``, ``pretrain``, ``export``,
the collection loops) run on this machine; actors of ``collect`` write their episodes into
OUT themselves, so on several machines OUT must be on a filesystem every node mounts at
the same path (docs/faults.md, "Ray backend"). A failed task is reported with its
reason (the last line of its ``log.txt``) and the others go on. Stage processes die
with this one (Linux ``PR_SET_PDEATHSIG``), so a SIGKILL loses only the stages in
flight; SIGINT/SIGTERM stop them through their own clean shutdown (``train`` saves a
checkpoint).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from agents.generate_report import TASKS_DIR, collection_counts, learning_curve, write_report
from libero_gym.backend import BackendConfig
from libero_gym.errors import InvalidInputError

Stage = Literal["demos", "bc", "bc_eval", "rl", "rl_eval", "rollouts", "export"]
RL_STAGES: tuple[str, ...] = ("demos", "bc", "bc_eval", "rl", "rl_eval", "rollouts", "export")
EVAL_STAGES: tuple[str, ...] = ("bc_eval", "rl_eval")
"""Stages skipped with --eval-episodes 0."""
SCRIPTED_STAGES: tuple[str, ...] = ("rollouts", "export")
MANIFEST = "manifest.json"
CONFIG_FILE = "generate.json"
MANIFEST_VERSION = 1

STAGE_WEIGHT = {"demos": 1.0, "bc": 1.5, "bc_eval": 1.0, "rl": 8.0, "rl_eval": 2.0, "rollouts": 3.0, "export": 0.3}
"""Rough share of a task's wall time per stage (LIBERO-Goal task 0 on 2 cores: RL dominates), for the ETA."""

GAUSSIAN_FINETUNE = {"learning_rate": 1e-4, "n_steps": 512, "batch_size": 256, "n_epochs": 5, "gamma": 0.999}
"""Gaussian PPO fine-tuning from BC (as in docs/results.md): SB3 PPO with a smaller step than from scratch
(3e-4 washes out the BC policy) and DPPO's per-step discount 0.999 for sparse, 100-500-step episodes."""

LOCAL_MAX_WORKERS = 2
"""``--max-workers`` of ``--backend local`` when not given: one task at a time with 2 envs, sized for a 2-core machine."""

RL_SEED_OFFSET = 10_000
"""Rollout episodes are reset with seeds ``seed + 10000 + i``: never the demos' seeds (``seed + i``)."""


@dataclasses.dataclass(frozen=True)
class GenerateConfig(BackendConfig):
    """From nothing to a VLA dataset: scripted demos -> BC -> RL -> successful rollouts -> export -> report.

    Resumable: rerun the same command to continue. OUT/report.md summarises what was made.
    """

    out: Path
    """Output folder (manifest.json, generate.json, tasks/, report.md). Rerun with the same folder to resume."""
    env: str = "LIBERO-Goal-v0"
    """libero-gym suite id (LIBERO-Spatial-v0, LIBERO-Object-v0, LIBERO-Goal-v0, LIBERO-10-v0, LIBERO-90-v0)
    or a single-task id (LIBERO-Goal-Task3-v0)."""
    task_id: tuple[str, ...] = ("0",)
    """Task indices within the suite, or `all`."""
    source: Literal["rl", "scripted"] = "rl"
    """Where the data comes from: the RL-fine-tuned policy, or the scripted expert directly (no BC/RL)."""
    agent: Literal["diffusion-ppo", "gaussian-ppo"] = "diffusion-ppo"
    """The policy that is cloned and fine-tuned: DiffusionPPO (the method) or Gaussian PPO (the baseline)."""
    demos: int = 10
    """Scripted demonstrations per task for behaviour cloning."""
    bc_epochs: int = 800
    """BC passes over the demonstrations (10 demos are ~1.3k samples: ~16k gradient steps at batch 64)."""
    bc_batch_size: int = 64
    """BC minibatch size."""
    eval_episodes: int = 50
    """Episodes of the BC start's evaluation (init states 0..N-1, --sampling) and of the fine-tuned policy's (each
    of deterministic, stochastic and --sampling); 0 skips both."""
    rl_steps: int = 100_000
    """Env-step budget of the RL stage per task."""
    target_success: float = 0.9
    """RL stops once the success of its last 100 training episodes reaches this."""
    checkpoint_every: int = 10_000
    """RL checkpoint interval in env steps (a killed run resumes from the newest)."""
    max_episode_steps: int | None = None
    """Episode limit of the BC evaluation, RL and rollouts (default: the suite's); demos use the suite's."""
    episodes: int = 50
    """Successful episodes to keep per task."""
    max_attempts: int = 10
    """Give up on a task's rollouts after max_attempts x --episodes episodes (the report says so)."""
    sampling: Literal["stochastic", "deterministic", "zero-init"] = "stochastic"
    """How the fine-tuned policy acts for rollouts and evaluation: as in its training rollouts (stochastic),
    its evaluation action (deterministic), or (diffusion-ppo) its x_T = 0 path (zero-init: the least jerky
    and least varied data of the three on LIBERO-Goal 0, docs/results.md)."""
    images: bool = True
    """Store agentview and wrist images in the datasets (rendered from the stored states)."""
    image_size: int = 128
    """Height and width of the stored images (LIBERO's are 128)."""
    formats: tuple[Literal["hdf5", "lerobot", "rlds"], ...] = ("hdf5",)
    """Export formats: LIBERO's HDF5 (always written: the other formats are converted from it), a
    LeRobotDataset v3.0 and/or an RLDS dataset (need --images; written to TASK/export/lerobot, TASK/export/rlds)."""
    envs_per_task: int = 2
    """Env workers of each task's stages (processes, or Ray actors with --backend ray)."""
    max_workers: int | None = None
    """Env workers in all: tasks run max_workers // envs_per_task at a time. Default: 2 with --backend local,
    the Ray cluster's CPUs (ray.cluster_resources()) with --backend ray."""
    seed: int = 0
    """Base seed of every stage (demo episode i: seed + i; rollouts: seed + 10000 + i)."""
    restart_from: Stage | None = None
    """Discard this stage and every later one of every task, then run them again."""
    stop_after: Stage | None = None
    """Run the stages up to and including this one, then report (e.g. bc_eval: the BC start of every task before
    paying for RL). Rerun without it to continue."""
    config: Path | None = None
    """A saved config (YAML or JSON, e.g. an OUT/generate.json): its values are the defaults that flags override."""
    progress: bool = True
    """Live table of the tasks' stages (otherwise one line per stage)."""

    def parallel_tasks(self, cpus: int | None = None) -> int:
        """Tasks run at a time: ``max_workers // envs_per_task``, at least 1 (``cpus``: the Ray cluster's,
        the default of ``max_workers`` with --backend ray; else :data:`LOCAL_MAX_WORKERS`)."""
        workers = self.max_workers if self.max_workers is not None else (cpus or LOCAL_MAX_WORKERS)
        return max(1, workers // self.envs_per_task)

    @property
    def stages(self) -> tuple[str, ...]:
        """The stages a task runs, in order."""
        stages = RL_STAGES if self.source == "rl" else SCRIPTED_STAGES
        if self.stop_after in stages:
            stages = stages[: stages.index(self.stop_after) + 1]
        return tuple(s for s in stages if s not in EVAL_STAGES or self.eval_episodes > 0)

    def stage_settings(self, stage: str) -> dict[str, Any]:
        """The settings that determine a stage's result: a finished stage is stale when one changes."""
        keys = {
            "demos": ("demos", "seed"),
            "bc": ("agent", "bc_epochs", "bc_batch_size", "seed"),
            "bc_eval": ("eval_episodes", "sampling", "max_episode_steps", "seed"),
            "rl_eval": ("eval_episodes", "sampling", "max_episode_steps", "seed"),
            "rl": ("agent", "rl_steps", "target_success", "envs_per_task", "max_episode_steps", "seed"),
            "rollouts": ("source", "episodes", "max_attempts", "sampling", "images", "image_size", "max_episode_steps",
                         "seed"),
            "export": ("formats",),
        }[stage]
        return {key: _plain(getattr(self, key)) for key in keys}

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for values no run can use."""
        self.check_backend()
        for name in ("demos", "bc_epochs", "bc_batch_size", "rl_steps", "episodes", "max_attempts",
                     "envs_per_task", "checkpoint_every"):  # fmt: skip
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise InvalidInputError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.eval_episodes < 0:
            raise InvalidInputError(f"eval_episodes must be >= 0, got {self.eval_episodes}")
        if not 0.0 < self.target_success <= 1.0:
            raise InvalidInputError(f"target_success must be in (0, 1], got {self.target_success}")
        if self.max_workers is not None and self.max_workers < 1:
            raise InvalidInputError(f"max_workers must be >= 1, got {self.max_workers}")
        max_workers = self.max_workers if self.max_workers is not None else LOCAL_MAX_WORKERS
        if self.envs_per_task > max_workers and (self.max_workers is not None or self.backend == "local"):
            raise InvalidInputError(
                f"envs_per_task ({self.envs_per_task}) must be <= max_workers ({max_workers})"
            )
        if not 16 <= self.image_size <= 1024:
            raise InvalidInputError(f"image_size must be in [16, 1024], got {self.image_size}")
        if not self.formats:
            raise InvalidInputError("formats needs at least one of ['hdf5', 'lerobot', 'rlds']")
        needs_images = [fmt for fmt in ("lerobot", "rlds") if fmt in self.formats]
        if needs_images and not self.images:
            raise InvalidInputError(f"formats {' and '.join(needs_images)} needs camera images: drop --no-images or "
                                    "those formats")
        if self.sampling != "stochastic":  # what the agent's class can do (imports it: torch)
            from agents.agent_configs import check_agent_sampling
            from agents.registry import resolve_agent

            check_agent_sampling(resolve_agent(self.agent).load_class(), self.sampling, self.agent)
        every = RL_STAGES if self.source == "rl" else SCRIPTED_STAGES
        if self.stop_after is not None and self.stop_after not in every:
            raise InvalidInputError(f"stop_after must be one of {list(every)}, got {self.stop_after!r}")
        if self.restart_from is not None and self.restart_from not in self.stages:
            raise InvalidInputError(f"restart_from must be one of {list(self.stages)}, got {self.restart_from!r}")


@dataclasses.dataclass(frozen=True)
class TaskRef:
    """One task of the run."""

    env: str
    """The suite's env id (stages always name the suite id and the task index)."""
    suite: str
    index: int
    language: str

    @property
    def key(self) -> str:
        """Folder and manifest name, e.g. ``libero_goal_03``."""
        return f"{self.suite}_{self.index:02d}"


def resolve_tasks(env: str, task_id: Sequence[str]) -> list[TaskRef]:
    """The tasks ``--env``/``--task-id`` name.

    Raises:
        InvalidInputError: an unknown env id or task index (the message names the valid ones).
    """
    from libero_gym import suites
    from libero_gym.registration import lookup_env, suite_env_ids, suite_env_id

    try:
        suite, single = lookup_env(env)
    except InvalidInputError:
        raise InvalidInputError(f"env must be one of {sorted(suite_env_ids())} or a single-task id, got {env!r}") from None
    if single is not None:
        task = suites.get_task(suite, single)
        return [TaskRef(suite_env_id(suite), task.suite, task.index, task.language)]
    count = len(suites.SUITES[suite])
    if not task_id:
        raise InvalidInputError("task_id needs at least one index, or all")
    if list(task_id) == ["all"]:
        indices = list(range(count))
    else:
        indices = []
        for text in task_id:
            try:
                index = int(text)
            except ValueError:
                raise InvalidInputError(f"task_id must be indices in [0, {count - 1}] or all, got {text!r}") from None
            if not 0 <= index < count:
                raise InvalidInputError(f"task_id must be in [0, {count - 1}] for {env}, got {index}")
            if index not in indices:
                indices.append(index)
    return [TaskRef(env, suite, i, suites.get_task(suite, i).language) for i in indices]


# ---------------------------------------------------------------------- the manifest
class Manifest:
    """``OUT/manifest.json``: the run's tasks and their finished stages; one writer (this process), atomic."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data
        self._lock = threading.Lock()

    @classmethod
    def load_or_create(cls, out: Path) -> Manifest:
        path = out / MANIFEST
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise InvalidInputError(f"{path} is not valid JSON ({error}); not a generate run") from None
            if data.get("version") != MANIFEST_VERSION or "tasks" not in data:
                raise InvalidInputError(f"{path} is not a generate manifest (version {MANIFEST_VERSION})")
            return cls(path, data)
        return cls(path, {"version": MANIFEST_VERSION, "tasks": {}})

    def task(self, key: str) -> dict[str, Any]:
        with self._lock:
            return self.data["tasks"].setdefault(key, {"stages": {}})

    def done(self, key: str, stage: str) -> bool:
        return bool(self.task(key)["stages"].get(stage, {}).get("done"))

    def record(self, key: str, stage: str | None = None, **values: Any) -> None:
        """Set ``values`` on a task (``stage`` None) or one of its stages, then write the file."""
        with self._lock:
            task = self.data["tasks"].setdefault(key, {"stages": {}})
            target = task if stage is None else task["stages"].setdefault(stage, {})
            target.update(values)
            self._write()

    def drop_stages(self, key: str, stages: Sequence[str]) -> None:
        with self._lock:
            task = self.data["tasks"].setdefault(key, {"stages": {}})
            for stage in stages:
                task["stages"].pop(stage, None)
            self._write()

    def save(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        from libero_gym.data.dataset import write_json_atomic

        write_json_atomic(self.path, self.data)


def check_settings(config: GenerateConfig, manifest: Manifest, tasks: Sequence[TaskRef]) -> dict[str, list[str]]:
    """Which stages of which tasks must run again; refuse a changed setting without ``--restart-from``.

    Returns:
        task key -> finished stages to discard (``--restart-from`` and every later stage).

    Raises:
        InvalidInputError: a finished stage was made with another value of a setting (named in the message).
    """
    stages = config.stages
    first = stages.index(config.restart_from) if config.restart_from is not None else len(stages)
    discard: dict[str, list[str]] = {}
    for task in tasks:
        finished = manifest.task(task.key)["stages"]
        discard[task.key] = [s for s in stages[first:] if s in finished]
        for position, stage in enumerate(stages[:first]):
            recorded = finished.get(stage, {})
            if not recorded.get("done"):
                continue
            old, new = recorded.get("settings", {}), config.stage_settings(stage)
            changed = sorted(k for k in new if k in old and old[k] != new[k])
            if changed:
                name = changed[0]
                raise InvalidInputError(
                    f"--{name.replace('_', '-')} changed ({old[name]!r} -> {new[name]!r}) since stage {stage!r} of "
                    f"{task.key} finished; rerun with the old value, or with --restart-from {stage} to redo "
                    f"{'/'.join(stages[position:])}"
                )
    return discard


# ---------------------------------------------------------------------- one stage, one command
@dataclasses.dataclass(frozen=True)
class StageRun:
    """The ``cli.py`` command of one stage of one task, and where its outputs go."""

    argv: tuple[str, ...]
    """Arguments after ``cli.py``."""
    output: Path
    """Its output folder or file (removed before a non-resumable stage starts again)."""
    resumable: bool
    """Continues from what a killed run left (``--resume``); otherwise its output is removed first."""
    then: tuple[tuple[str, ...], ...] = ()
    """Further ``cli.py`` commands of the stage, run in order after ``argv`` succeeds (export's other formats)."""


def stage_run(config: GenerateConfig, task: TaskRef, stage: str, folder: Path, ray_address: str | None = None
              ) -> StageRun:
    """The command that runs ``stage`` of ``task`` in the task's ``folder``.

    With ``--backend ray`` the stages with env workers (demos, bc_eval, rl, rollouts) get ``--backend ray
    --ray-address ADDRESS`` (``ray_address``: the cluster ``generate`` joined or started; default
    ``config.ray_address``), so that their workers are actors of that one cluster.
    """
    env = ["--env", task.env, "--task-id", str(task.index), *config.ray_flags(ray_address)]
    workers = str(config.envs_per_task)
    sampling = ["--sampling", config.sampling]
    limit = [] if config.max_episode_steps is None else ["--max-episode-steps", str(config.max_episode_steps)]
    if stage == "demos":
        return StageRun(("collect", "--policy", "scripted", *env, "--episodes", str(config.demos), "--until-successes",
                         "--max-episodes", str(config.max_attempts * config.demos), "--num-workers", workers,
                         "--no-images", "--seed", str(config.seed), "--out", str(folder / "demos"), "--resume",
                         "--no-progress"), folder / "demos", True)  # fmt: skip
    if stage == "bc":
        demos = sorted(str(p) for p in (folder / "demos").glob("*.hdf5"))
        return StageRun(("pretrain", "--dataset", *demos, "--run-dir", str(folder / "bc"), "--agent", config.agent,
                         "--epochs", str(config.bc_epochs), "--batch-size", str(config.bc_batch_size),
                         "--seed", str(config.seed), "--no-progress"), folder / "bc", False)  # fmt: skip
    if stage == "bc_eval":
        return StageRun(("eval", "--checkpoint", str(folder / "bc" / "checkpoint"), "--episodes",
                         str(config.eval_episodes), "--num-envs", workers, "--seed", str(config.seed), *sampling, *limit,
                         *config.ray_flags(ray_address), "--json-out", str(folder / "bc_eval.json")),
                        folder / "bc_eval.json", False)  # fmt: skip
    if stage == "rl_eval":
        modes = dict.fromkeys(("deterministic", "stochastic", config.sampling))  # ordered, no repeats
        return StageRun(("eval", "--checkpoint", str(folder / "rl"), "--episodes", str(config.eval_episodes),
                         "--num-envs", workers, "--seed", str(config.seed), "--sampling", *modes, *limit,
                         *config.ray_flags(ray_address), "--json-out", str(folder / "rl_eval.json")),
                        folder / "rl_eval.json", False)  # fmt: skip
    if stage == "rl":
        # The BC checkpoint's agent settings are the defaults; Gaussian PPO's fine-tuning overrides some.
        finetune = GAUSSIAN_FINETUNE if config.agent == "gaussian-ppo" else {}
        overrides = [f"--agent.{key.replace('_', '-')}={value}" for key, value in finetune.items()]
        return StageRun(("train", "--agent", config.agent, *overrides, *env,
                         "--init-from", str(folder / "bc" / "checkpoint"),
                         "--total-timesteps", str(config.rl_steps), "--target-success", str(config.target_success),
                         "--num-envs", workers, "--checkpoint-every", str(config.checkpoint_every), *limit,
                         "--seed", str(config.seed),
                         "--resume", str(folder / "rl"), "--no-progress"),
                        folder / "rl", True)  # fmt: skip
    if stage == "rollouts":
        policy = ["--policy", "scripted"] if config.source == "scripted" else [
            "--policy", "checkpoint", "--checkpoint", str(folder / "rl"), *sampling]  # fmt: skip
        return StageRun(("collect", *policy, *env, *limit, "--episodes", str(config.episodes), "--until-successes",
                         "--max-episodes", str(config.max_attempts * config.episodes), "--num-workers", workers,
                         "--images" if config.images else "--no-images", "--image-size", str(config.image_size),
                         "--seed", str(config.seed + RL_SEED_OFFSET), "--out", str(folder / "rollouts"), "--resume",
                         "--no-export", "--no-progress"), folder / "rollouts", True)  # fmt: skip
    if stage == "export":
        # LIBERO's HDF5 first (the successful episodes); the other formats are converted from that file.
        then = tuple(("export", str(folder / "export"), "--format", fmt, "--out", str(folder / "export" / fmt))
                     for fmt in config.formats if fmt != "hdf5")  # fmt: skip
        return StageRun(("export", str(folder / "rollouts"), "--out", str(folder / "export"), "--only-success"),
                        folder / "export", False, then)  # fmt: skip
    raise InvalidInputError(f"stage must be one of {list(RL_STAGES)}, got {stage!r}")


_DIE_WITH_PARENT = (
    "import ctypes, os, signal, sys\n"
    "ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG: die with generate\n"
    "if os.getppid() != int(sys.argv[1]): sys.exit(143)  # generate died before prctl\n"
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])\n"
)
"""A stage process is ``python -c _DIE_WITH_PARENT PARENT_PID cli.py ARGV``: on Linux it gets SIGTERM (and
shuts down cleanly) when ``generate`` dies, even by SIGKILL; elsewhere prctl is missing and it runs on."""


def stage_command(argv: Sequence[str]) -> list[str]:
    """The process command line of a stage: ``cli.py ARGV`` under this Python, tied to this process."""
    cli_path = Path(__file__).resolve().parents[1] / "cli.py"
    if sys.platform.startswith("linux"):
        return [sys.executable, "-c", _DIE_WITH_PARENT, str(os.getpid()), str(cli_path), *argv]
    return [sys.executable, str(cli_path), *argv]


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
        with log.open("a") as handle:
            for argv in (run.argv, *run.then):
                handle.write(f"\n$ cli.py {' '.join(argv)}\n")
                handle.flush()
                with self._lock:
                    if self.stopping.is_set():
                        return "stopped"
                    proc = subprocess.Popen(stage_command(argv), stdout=handle, stderr=subprocess.STDOUT)
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
                             command=["cli.py", *run.argv], then=[["cli.py", *argv] for argv in run.then],
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


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


# ---------------------------------------------------------------------- --config FILE
def expand_config_file(argv: Sequence[str]) -> list[str]:
    """``generate ... --config FILE ...`` -> the file's values as flags placed before the given ones.

    The file (YAML or JSON, e.g. a run's ``generate.json``) holds field names and values; flags on the
    command line come later and so override it (argparse keeps the last value).

    Raises:
        InvalidInputError: the file is unreadable or malformed, or names an unknown field or a value of the
            wrong type (:func:`agents.config_file.read_config_file`).
    """
    from agents.config_file import read_config_file

    argv = list(argv)
    given = [i for i, arg in enumerate(argv) if arg == "--config" or arg.startswith("--config=")]
    if not given:
        return argv
    position = given[-1]
    _, inline, path = argv[position].partition("=")
    width = 1 if inline else 2  # --config=FILE or --config FILE
    if not inline:
        if position + 1 >= len(argv):
            return argv  # the parser reports the missing value
        path = argv[position + 1]
    values = read_config_file(Path(path), GenerateConfig)
    flags: list[str] = []
    for name, value in values.items():
        if name in ("config", "restart_from") or value is None:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{name.replace('_', '-')}")
        elif isinstance(value, list | tuple):
            flags += [flag, *(str(v) for v in value)]
        else:
            flags += [flag, str(value)]
    command = argv[:1] if argv and argv[0] == "generate" else []
    rest = argv[len(command):]
    position -= len(command)
    return command + flags + rest[:position] + rest[position + width:]


# ---------------------------------------------------------------------- the command
def generate(config: GenerateConfig) -> int:
    """Run (or continue) the pipeline; returns 0 when every task finished every stage, else 1."""
    from libero_gym.data.dataset import write_json_atomic
    from libero_gym.locking import folder_lock

    config.validate()
    config.check_reachable()  # an unreachable --ray-address fails before the folder is touched
    tasks = resolve_tasks(config.env, config.task_id)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} is a file, not a folder")
    if out.exists() and not (out / MANIFEST).exists():
        others = [p.name for p in out.iterdir() if p.name != ".lock"]
        if others:
            raise InvalidInputError(
                f"--out {out} holds other files ({', '.join(sorted(others)[:3])}...), not a generate run; "
                "choose an empty or new folder"
            )
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "generate folder"):
        manifest = Manifest.load_or_create(out)
        previous = manifest.data.get("config", {})
        if previous and previous.get("source") != config.source:
            if config.restart_from is None or config.restart_from != config.stages[0]:
                raise InvalidInputError(
                    f"--source changed ({previous.get('source')!r} -> {config.source!r}) for the run in {out}; "
                    "use another --out"
                )
        discard = check_settings(config, manifest, tasks)
        for task in tasks:
            stale = discard.get(task.key, [])
            for stage in stale:
                output = stage_run(config, task, stage, out / TASKS_DIR / task.key).output
                if output.exists():
                    shutil.rmtree(output) if output.is_dir() else output.unlink()
            if stale:
                manifest.drop_stages(task.key, stale)
        resolved = {f.name: _plain(getattr(config, f.name)) for f in dataclasses.fields(config)}
        resolved.update(out=str(out), restart_from=None, config=None)
        write_json_atomic(out / CONFIG_FILE, resolved)
        manifest.data["config"] = resolved
        manifest.data.setdefault("started_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
        manifest.save()

        started = time.perf_counter()
        with _ray_cluster(config) as (ray_address, cpus):
            runner = Runner(config, out, tasks, manifest, ray_address)
            parallel = config.parallel_tasks(cpus)
            manifest.data["parallel_tasks"] = parallel
            try:
                _run_all(runner, parallel)  # on Ctrl-C / SIGTERM it stops the stages in flight, then re-raises
            finally:  # a stopped run's time counts too (the run's wall time adds up over its resumes)
                manifest.data["wall_s"] = round(manifest.data.get("wall_s", 0.0) + time.perf_counter() - started, 1)
                manifest.save()
                _write_report(out, config, tasks, manifest)
        failed = [t.key for t in tasks if runner.status[t.key] != "done"]
        for key in failed:
            print(f"{key}: {manifest.task(key).get('error')}", file=sys.stderr)
        print(f"report: {out / 'report.md'}")
        return 1 if failed else 0


@contextlib.contextmanager
def _ray_cluster(config: GenerateConfig) -> Iterator[tuple[str | None, int | None]]:
    """--backend ray: join the cluster of --ray-address, or start a local Ray in this process (its head: the
    stages join it by address instead of each starting their own); yields (its address, its CPUs) and shuts a
    Ray started here down on the way out, also after Ctrl-C or SIGTERM. --backend local: (None, None)."""
    if config.backend != "ray":
        yield None, None
        return
    from libero_gym.backend import cluster_cpus, gcs_address, shutdown, start_or_connect

    owns = start_or_connect(config.ray_address)
    try:
        yield gcs_address(), cluster_cpus()
    finally:
        if owns:
            shutdown()


def _run_all(runner: Runner, parallel: int) -> None:
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


def _write_report(out: Path, config: GenerateConfig, tasks: Sequence[TaskRef], manifest: Manifest) -> None:
    write_report(out, config, tasks, manifest.data)


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
