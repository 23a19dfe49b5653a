"""``train``: one agent, libero-gym vector envs, one run folder.

Run folder layout::

    RUN_DIR/config.json          the resolved run config (+ the agent's full config)
    RUN_DIR/logs/                TensorBoard events and progress*.csv (SB3 logger)
    RUN_DIR/checkpoints/step_N/  agent.json + params.pt (agents.checkpoint), newest `keep`
    RUN_DIR/summary.json         what print_summary shows, written at the end

Metrics (SB3's logger, same names for every agent): ``rollout/success_rate``,
``rollout/ep_len_mean`` (control steps, also for chunk envs), ``rollout/ep_rew_mean``,
``time/fps``, ``train/*`` (losses, ``approx_kl``, ``clip_fraction``,
``explained_variance``, ...); with async workers also ``rollout/dropped_episodes`` and
``rollout/worker_restarts`` (since this process started).

Envs: async workers restart when they die (``restart_dead_workers``: the episode in
flight is dropped, never counted in the rollout metrics). An agent whose config has a
``chunk_size`` property (diffusion-ppo: ``policy.horizon_steps``) trains on chunk envs,
``LiberoEnv(chunk_size=Ta, step_limit=--max-episode-steps)``, one ``step`` per chunk.

Resume: ``train --resume RUN_DIR`` continues RUN_DIR's run from its newest valid
checkpoint (or starts it there if it has none yet).
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback, CallbackList
from stable_baselines3.common.logger import CSVOutputFormat, HumanOutputFormat, Logger, TensorBoardOutputFormat

from agents.checkpoint import (
    CheckpointManager,
    EnvInfo,
    build_agent,
    check_compatible,
    load_agent,
    load_params_into,
    read_checkpoint,
    read_meta,
)
from agents.commands import Train, parse_agent_config
from agents.registry import PROTOCOL_SB3, check_spaces, resolve_agent
from agents.vec_env import SB3VecEnv
from libero_gym.errors import InvalidInputError

CONFIG_FILE = "config.json"
SUMMARY_FILE = "summary.json"
OFF_POLICY_BUFFER_CAP = 1_000_000
"""SB3's default replay size; a run never needs more than its total_timesteps."""


@dataclasses.dataclass(frozen=True)
class TrainResult:
    """What a finished run reports."""

    run_dir: Path
    agent: str
    env_id: str
    obs_mode: str
    num_timesteps: int
    steps_this_run: int
    wall_time_s: float
    episodes: int
    success_rate: float | None
    ep_len_mean: float | None
    checkpoint: Path
    dropped_episodes: int = 0
    worker_restarts: int = 0
    reached_target: bool = False
    """Stopped early because the rolling success reached ``--target-success``."""

    @property
    def steps_per_s(self) -> float:
        return self.steps_this_run / max(self.wall_time_s, 1e-9)


# ---------------------------------------------------------------------- env
def env_info_for(config: Train, chunk_size: int | None = None) -> EnvInfo:
    """The env a run trains on, as checkpoints record it (``chunk_size``: Ta for a chunk env)."""
    from libero_gym.registration import task_env_ids

    tasks = task_env_ids()
    task_ids = (tasks[config.env].index,) if config.env in tasks else tuple(config.task_id)
    return EnvInfo(
        env_id=config.env,
        task_ids=task_ids,
        obs_mode=config.obs_mode,
        image_size=config.image_size if config.obs_mode != "state" else None,
        max_episode_steps=config.max_episode_steps,
        chunk_size=chunk_size,
    )


def make_env(env: EnvInfo, num_envs: int, vectorization: str = "async", **extra: Any) -> SB3VecEnv:
    """libero-gym vector env (``make_vec``) behind the SB3 adapter.

    Async workers that die are restarted (``restart_dead_workers``); their episode is
    dropped. ``extra``: more ``make_vec`` keyword arguments (e.g. ``render_mode``).
    """
    from libero_gym.registration import task_env_ids
    from libero_gym.vector import make_vec

    kwargs: dict[str, Any] = {**env.make_kwargs(), **extra}
    if env.env_id not in task_env_ids():
        kwargs["task_id"] = list(env.task_ids) if len(env.task_ids) > 1 else env.task_ids[0]
    restart = vectorization == "async"
    return SB3VecEnv(
        make_vec(env.env_id, num_envs, vectorization_mode=vectorization, restart_dead_workers=restart, **kwargs)
    )


def env_spaces(env: EnvInfo) -> tuple[Any, Any]:
    """Observation and action spaces of ``env`` without building a simulator (it is lazy)."""
    import gymnasium as gym

    from libero_gym.registration import task_env_ids

    kwargs: dict[str, Any] = dict(env.make_kwargs())
    if env.env_id not in task_env_ids():
        kwargs["task_id"] = list(env.task_ids) if len(env.task_ids) > 1 else env.task_ids[0]
    probe = gym.make(env.env_id, **kwargs)
    try:
        return probe.observation_space, probe.action_space
    finally:
        probe.close()


# ---------------------------------------------------------------------- callbacks
class CheckpointCallback(BaseCallback):
    """Save every ``every`` env steps through a :class:`CheckpointManager`."""

    def __init__(self, manager: CheckpointManager, every: int, agent: str, env: EnvInfo, extra: dict[str, Any]) -> None:
        super().__init__()
        self.manager, self.every, self.agent, self.env, self.extra = manager, every, agent, env, extra
        self.next_save = 0

    def _on_training_start(self) -> None:
        self.next_save = (self.model.num_timesteps // self.every + 1) * self.every

    def _on_step(self) -> bool:
        if self.model.num_timesteps >= self.next_save:
            self.manager.save(self.model, agent=self.agent, env=self.env, extra=self.extra)
            self.next_save = (self.model.num_timesteps // self.every + 1) * self.every
        return True


class TargetSuccessCallback(BaseCallback):
    """Stop training once the rolling training-rollout success (a full window of finished episodes) reaches
    ``target``; ``reached`` says whether it did."""

    def __init__(self, target: float) -> None:
        super().__init__()
        self.target = target
        self.reached = False

    def _on_step(self) -> bool:
        buffer = getattr(self.model, "ep_success_buffer", None)
        if buffer is not None and buffer.maxlen and len(buffer) >= buffer.maxlen:
            self.reached = float(np.mean(buffer)) >= self.target
        return not self.reached


class WorkerFaultsCallback(BaseCallback):
    """Log ``rollout/dropped_episodes`` and ``rollout/worker_restarts`` at each rollout's end."""

    def __init__(self, vec_env: SB3VecEnv) -> None:
        super().__init__()
        self.vec_env = vec_env

    def _on_step(self) -> bool:
        return True

    def _on_rollout_end(self) -> None:
        self.logger.record("rollout/dropped_episodes", self.vec_env.dropped_episodes)
        self.logger.record("rollout/worker_restarts", self.vec_env.num_restarts)


class RichProgressCallback(BaseCallback):
    """A rich progress bar: steps, speed, recent success rate and episode length, dropped episodes."""

    def __init__(self, total: int, description: str, vec_env: SB3VecEnv | None = None) -> None:
        super().__init__()
        self.total, self.description, self.vec_env = total, description, vec_env
        self.progress: Any = None
        self.task: Any = None

    def _on_training_start(self) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(bar_width=20),  # leaves room for the numbers on an 80-column terminal
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.progress.start()
        self.task = self.progress.add_task(
            self.description, total=self.total, completed=self.model.num_timesteps, stats=""
        )

    def _on_step(self) -> bool:
        if self.n_calls % 16 == 0 or self.model.num_timesteps >= self.total:
            stats = _stats_text(self.model, self.vec_env)
            self.progress.update(self.task, completed=self.model.num_timesteps, stats=stats)
        return True

    def _on_training_end(self) -> None:
        if self.progress is not None:
            stats = _stats_text(self.model, self.vec_env)
            self.progress.update(self.task, completed=self.model.num_timesteps, stats=stats)
            self.progress.stop()


def _stats_text(model: Any, vec_env: SB3VecEnv | None = None) -> str:
    success, ep_len = _recent_stats(model)
    parts = []
    if success is not None:
        parts.append(f"success {100 * success:.0f}%")
    if ep_len is not None:
        parts.append(f"ep_len {ep_len:.0f}")
    dropped = vec_env.dropped_episodes if vec_env is not None else 0
    if dropped:
        parts.append(f"dropped {dropped}")
    return " ".join(parts)


def _recent_stats(model: Any) -> tuple[float | None, float | None]:
    successes = list(getattr(model, "ep_success_buffer", None) or [])
    episodes = list(getattr(model, "ep_info_buffer", None) or [])
    success = float(np.mean(successes)) if successes else None
    ep_len = float(np.mean([ep["l"] for ep in episodes])) if episodes else None
    return success, ep_len


def _make_logger(log_dir: Path, resumed_at: int | None, verbose: int) -> Logger:
    """TensorBoard + CSV (+ stdout if verbose). A resumed run writes a new CSV beside the old one."""
    log_dir.mkdir(parents=True, exist_ok=True)
    csv_name = "progress.csv" if resumed_at is None else f"progress-resumed-{resumed_at:012d}.csv"
    formats: list[Any] = [TensorBoardOutputFormat(str(log_dir)), CSVOutputFormat(str(log_dir / csv_name))]
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(str(log_dir), formats)


# ---------------------------------------------------------------------- train
def resolve_run_dir(config: Train) -> Path:
    """``--resume RUN_DIR``, ``--run-dir``, or ``runs/<agent>-<env>-<UTC time>``."""
    if config.resume is not None:
        return Path(config.resume)
    if config.run_dir is not None:
        return Path(config.run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / f"{config.agent.replace(':', '.')}-{config.env}-{stamp}"


def train(config: Train) -> TrainResult:
    """Train ``config.agent`` on ``config.env``; see the module docstring for the outputs.

    The run folder is locked (:func:`libero_gym.locking.folder_lock`) before anything
    is read or written there: one process per run folder.

    Raises:
        InvalidInputError: bad agent/env/config values, a run folder that already
            holds a run (without ``--resume``), or a resumed run with another agent/env.
        CheckpointError: ``--init-from``/``--resume`` checkpoint of another agent or env.
        FolderInUseError: another process is writing the run folder.
    """
    from libero_gym.locking import folder_lock

    config.validate()
    run_dir = resolve_run_dir(config)
    with folder_lock(run_dir, "run folder"):
        return _train_locked(config, run_dir)


def _train_locked(config: Train, run_dir: Path) -> TrainResult:
    """:func:`train`, its run folder ``run_dir`` locked."""
    import torch

    torch.set_num_threads(config.torch_threads)
    spec = resolve_agent(config.agent)
    checkpoints = CheckpointManager(run_dir / "checkpoints", keep=config.keep_checkpoints)

    # -- the run folder: new, or the one being resumed
    resuming = config.resume is not None and bool(checkpoints.paths())
    if config.resume is not None and not resuming:  # nothing saved yet (new folder, or killed before a checkpoint)
        print(f"--resume: no checkpoint in {str(run_dir)!r}; starting a new run there", file=sys.stderr)
    resume_from: Path | None = None
    if resuming:
        if not (run_dir / CONFIG_FILE).exists():
            raise InvalidInputError(f"--resume: {str(run_dir)!r} has checkpoints but no {CONFIG_FILE}; not a train run")
        previous = json.loads((run_dir / CONFIG_FILE).read_text())
        for key in ("agent", "env", "task_id", "obs_mode"):
            old, new = previous["train"][key], _jsonable(getattr(config, key))
            if old != new:
                raise InvalidInputError(f"--resume: the run in {str(run_dir)!r} has {key}={old!r}, not {new!r}")
        resume_from = checkpoints.latest_valid()
    elif checkpoints.paths():
        raise InvalidInputError(
            f"{str(run_dir)!r} already holds a run; pass --resume {run_dir} to continue it or choose another --run-dir"
        )

    # -- the agent's config (a bad --agent-config fails before any worker starts) and its env
    plan = _plan_agent(config, spec, resume_from)
    env_info = env_info_for(config, plan.chunk_size)
    check_spaces(spec, *env_spaces(env_info))  # before any worker starts
    vec_env = make_env(env_info, config.num_envs, config.vectorization)
    try:
        vec_env.seed(config.seed)

        # -- the agent: resumed, warm-started, or fresh
        log_dir = run_dir / "logs"
        model, resumed_at = _make_model(config, spec, vec_env, env_info, plan, log_dir)
        model.set_logger(_make_logger(log_dir, resumed_at, config.verbose))

        resolved = {
            "train": {k: _jsonable(v) for k, v in dataclasses.asdict(config).items()},
            "agent": {"name": spec.name, "class_path": spec.class_path, "config": _agent_config(model)},
            "env": env_info.to_json(),
            "run_dir": str(run_dir),
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resuming:
            _write_json(run_dir / CONFIG_FILE, resolved)

        # -- learn
        extra = {"run": {"run_dir": str(run_dir), "seed": config.seed}}
        callbacks: list[BaseCallback] = [
            CheckpointCallback(checkpoints, config.checkpoint_every, spec.name, env_info, extra),
            WorkerFaultsCallback(vec_env),
        ]
        target = TargetSuccessCallback(config.target_success) if config.target_success is not None else None
        if target is not None:
            callbacks.append(target)
        if config.progress:
            callbacks.append(RichProgressCallback(config.total_timesteps, f"{spec.name} {config.env}", vec_env))
        start_steps = int(model.num_timesteps)
        remaining = config.total_timesteps - start_steps
        start = time.perf_counter()
        if remaining > 0:
            try:
                model.learn(total_timesteps=remaining, callback=CallbackList(callbacks), reset_num_timesteps=False)
            except KeyboardInterrupt:  # Ctrl-C: keep what was learned, then stop (resume with --resume)
                checkpoints.save(model, agent=spec.name, env=env_info, extra=extra)
                raise
        wall = time.perf_counter() - start
        final = checkpoints.save(model, agent=spec.name, env=env_info, extra=extra)
    finally:
        vec_env.close()

    success, ep_len = _recent_stats(model)
    result = TrainResult(
        run_dir=run_dir,
        agent=spec.name,
        env_id=config.env,
        obs_mode=config.obs_mode,
        num_timesteps=int(model.num_timesteps),
        steps_this_run=int(model.num_timesteps) - start_steps,
        wall_time_s=wall,
        episodes=len(getattr(model, "ep_info_buffer", None) or []),
        success_rate=success,
        ep_len_mean=ep_len,
        checkpoint=final,
        dropped_episodes=vec_env.dropped_episodes,
        worker_restarts=vec_env.num_restarts,
        reached_target=target is not None and target.reached,
    )
    _write_json(run_dir / SUMMARY_FILE, {k: _jsonable(v) for k, v in dataclasses.asdict(result).items()})
    return result


@dataclasses.dataclass(frozen=True)
class _AgentPlan:
    """What the run's agent will be, known before any env worker starts."""

    resume_from: Path | None
    """The checkpoint to resume (``None``: a new agent)."""
    agent_config: Any
    """Config dataclass (built-ins) or SB3 kwargs of a new agent; ``None`` when resuming."""
    init_meta: dict[str, Any] | None
    """``--init-from``'s agent.json."""
    init_params: dict[str, Any] | None
    """``--init-from``'s parameters."""
    chunk_size: int | None
    """Ta when the agent steps chunk envs (its config's ``chunk_size``; a resumed run keeps its env's)."""


def _plan_agent(config: Train, spec: Any, resume_from: Path | None) -> _AgentPlan:
    """The agent's config (``--agent-config`` merged onto ``--init-from``'s) and env kind."""
    if resume_from is not None:  # its own config and weights (--init-from only starts a run)
        chunk_size = read_meta(resume_from)["env"].get("chunk_size")
        return _AgentPlan(resume_from, None, None, None, chunk_size)
    overrides = parse_agent_config(config.agent_config)
    init_meta = init_params = None
    if config.init_from is not None:
        init_meta, init_params = read_checkpoint(config.init_from)
        check_compatible(init_meta, agent=spec.name, env_id=None, where=f"--init-from {config.init_from}")
        overrides = _deep_merge(init_meta["config"], overrides)  # the checkpoint's config is the base
    agent_config: Any
    if spec.protocol == PROTOCOL_SB3:
        agent_config = _sb3_kwargs(spec, overrides, config)
    else:
        agent_config = spec.make_config(overrides)
    chunk_size = getattr(agent_config, "chunk_size", None)
    return _AgentPlan(None, agent_config, init_meta, init_params, chunk_size)


def _make_model(
    config: Train, spec: Any, vec_env: SB3VecEnv, env_info: EnvInfo, plan: _AgentPlan, log_dir: Path
) -> tuple[Any, int | None]:
    """The agent: resumed from the run's newest valid checkpoint, warm-started from
    ``--init-from``, or fresh. Returns it and the step it resumed at (``None`` if new)."""
    if plan.resume_from is not None:
        model, _ = load_agent(
            plan.resume_from, vec_env, agent=spec.name, env_id=env_info.env_id, device=config.device,
            restore_rng=True, tensorboard_log=str(log_dir), verbose=config.verbose,
        )  # fmt: skip
        resumed_at = int(model.num_timesteps)
        vec_env.seed(config.seed + resumed_at)  # fresh, reproducible episodes after a resume
        return model, resumed_at
    if plan.init_meta is not None:
        check_compatible(
            plan.init_meta, agent=spec.name, env_id=None, observation_space=vec_env.observation_space,
            action_space=vec_env.action_space, where=f"--init-from {config.init_from}",
        )  # fmt: skip
    model = build_agent(
        spec, vec_env, plan.agent_config, seed=config.seed, device=config.device,
        tensorboard_log=str(log_dir), verbose=config.verbose,
    )  # fmt: skip
    if plan.init_params is not None:
        if hasattr(model, "load_pretrained_policy"):  # DiffusionPPO: also syncs the fine-tuned copy
            model.load_pretrained_policy(plan.init_params["params"]["policy"])
        else:
            load_params_into(model, plan.init_params, strict=False, only=("policy",))
    return model, None


def print_summary(result: TrainResult) -> None:
    """A few lines: what ran, how fast, how well, where the checkpoint is."""
    success = "n/a" if result.success_rate is None else f"{100 * result.success_rate:.1f}%"
    ep_len = "n/a" if result.ep_len_mean is None else f"{result.ep_len_mean:.1f}"
    faults = ""
    if result.worker_restarts or result.dropped_episodes:
        faults = f", dropped {result.dropped_episodes} (worker restarts {result.worker_restarts})"
    print(
        f"trained {result.agent} on {result.env_id} ({result.obs_mode}): {result.num_timesteps} env steps "
        f"({result.steps_this_run} this run) in {result.wall_time_s:.1f}s, {result.steps_per_s:.1f} steps/s\n"
        f"recent episodes: {result.episodes}, success rate {success}, mean length {ep_len}{faults}"
        f"{' (stopped: --target-success reached)' if result.reached_target else ''}\n"
        f"checkpoint: {result.checkpoint}\n"
        f"run folder: {result.run_dir} (tensorboard --logdir {result.run_dir / 'logs'})"
    )


def _deep_merge(base: dict[str, Any], overrides: dict[str, Any]) -> dict[str, Any]:
    """``base`` updated by ``overrides``, nested dicts (e.g. ``policy``) merged key by key."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _sb3_kwargs(spec: Any, overrides: dict[str, Any], config: Train) -> dict[str, Any]:
    """A plain SB3 class's kwargs; off-policy replay buffers sized to the run (capped)."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    kwargs = dict(overrides)
    if issubclass(spec.load_class(), OffPolicyAlgorithm) and "buffer_size" not in kwargs:
        kwargs["buffer_size"] = int(min(OFF_POLICY_BUFFER_CAP, max(config.total_timesteps, 1000)))
    return kwargs


def _agent_config(model: Any) -> dict[str, Any]:
    from agents.checkpoint import agent_config_json

    return {k: _jsonable(v) for k, v in agent_config_json(model).items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def _write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".tmp-{path.name}")
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
