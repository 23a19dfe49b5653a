"""``train``: one agent, libero-gym vector envs, one run folder.

Run folder layout::

    RUN_DIR/config.json          the resolved run config (+ the agent's full config)
    RUN_DIR/logs/                TensorBoard events and progress*.csv (SB3 logger)
    RUN_DIR/checkpoints/step_N/  agent.json + params.pt (agents.checkpoint), newest `keep`
    RUN_DIR/summary.json         what print_summary shows, written at the end

Metrics (SB3's logger, same names for every agent): ``rollout/success_rate``,
``rollout/ep_len_mean`` (control steps, also for chunk envs), ``rollout/ep_rew_mean``,
``time/fps``, ``train/*`` (losses, ``approx_kl``, ``clip_fraction``,
``explained_variance``, ...); with async workers or Ray actors also ``rollout/dropped_episodes``
and ``rollout/worker_restarts`` (since this process started).

Envs: async workers restart when they die (``restart_dead_workers``: the episode in
flight is dropped, never counted in the rollout metrics); with ``--backend ray`` the envs
are Ray actors (:class:`libero_gym.ray_vector.RayVectorEnv`), replaced the same way. An agent whose config has a
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

from agents.checkpoint import (
    agent_config_json,
    check_compatible,
    load_agent,
    load_params_into,
    read_checkpoint,
    read_meta,
)
from agents.configs import TrainConfig, parse_sb3_kwargs
from agents.registry import PROTOCOL_SB3, build_agent, check_spaces, spec_of
from agents.run_folder import CheckpointManager, make_logger
from agents.vec_env import SB3VecEnv
from libero_gym.atomic_files import jsonable, write_json_atomic
from libero_gym.env_config import EnvConfig
from libero_gym.errors import InvalidInputError
from libero_gym.locking import folder_lock
from libero_gym.progress import ProgressBar

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
def env_config_for(config: TrainConfig, chunk_size: int | None = None) -> EnvConfig:
    """The env a run trains on, as checkpoints record it (``chunk_size``: Ta for a chunk env)."""
    return EnvConfig.resolve(
        config.env,
        config.task_id,
        obs_mode=config.obs_mode,
        image_size=config.image_size if config.obs_mode != "state" else None,
        max_episode_steps=config.max_episode_steps,
        chunk_size=chunk_size,
    )


def make_env(env: EnvConfig, num_envs: int, vectorization: str = "async", *, ray_address: str | None = None,
             **extra: Any) -> SB3VecEnv:
    """``env``'s vector env (:meth:`EnvConfig.make_vec`) behind the SB3 adapter.

    Async workers that die are restarted (``restart_dead_workers``), as are broken Ray
    actors (``vectorization="ray"``, the ``--backend ray`` of the commands, on the cluster of
    ``ray_address``); their episode is dropped. ``extra``: more ``make_vec`` keyword
    arguments (e.g. ``render_mode``).
    """
    if vectorization == "ray":
        return SB3VecEnv(env.make_vec(num_envs, "ray", ray_address=ray_address, **extra))
    restart = vectorization == "async"
    return SB3VecEnv(env.make_vec(num_envs, vectorization, restart_dead_workers=restart, **extra))


# ---------------------------------------------------------------------- callbacks
class CheckpointCallback(BaseCallback):
    """Save every ``every`` env steps through a :class:`CheckpointManager`."""

    def __init__(self, manager: CheckpointManager, every: int, agent: str, env: EnvConfig, extra: dict[str, Any]) -> None:
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


class UpdateThreadsCallback(BaseCallback):
    """torch's CPU threads: ``update`` from each rollout's end (the update follows) to the next rollout's start,
    ``rollout`` otherwise (``train --update-threads``)."""

    def __init__(self, rollout: int, update: int) -> None:
        super().__init__()
        self.rollout, self.update = rollout, update

    def _set(self, threads: int) -> None:
        import torch

        torch.set_num_threads(threads)

    def _on_rollout_start(self) -> None:
        self._set(self.rollout)

    def _on_rollout_end(self) -> None:
        self._set(self.update)

    def _on_step(self) -> bool:
        return True

    def _on_training_end(self) -> None:
        self._set(self.rollout)


class RichProgressCallback(BaseCallback):
    """The progress bar (:class:`libero_gym.progress.ProgressBar`): steps, speed, recent success rate and episode
    length, dropped episodes."""

    def __init__(self, total: int, description: str, vec_env: SB3VecEnv | None = None) -> None:
        super().__init__()
        self.total, self.description, self.vec_env = total, description, vec_env
        self.bar: ProgressBar | None = None

    def _on_training_start(self) -> None:
        self.bar = ProgressBar(self.description, self.total, completed=self.model.num_timesteps, remaining=True)

    def _on_step(self) -> bool:
        if self.bar is not None and (self.n_calls % 16 == 0 or self.model.num_timesteps >= self.total):
            self.bar.update(completed=self.model.num_timesteps, stats=_stats_text(self.model, self.vec_env))
        return True

    def _on_training_end(self) -> None:
        if self.bar is not None:
            self.bar.update(completed=self.model.num_timesteps, stats=_stats_text(self.model, self.vec_env))
            self.bar.close()


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


# ---------------------------------------------------------------------- train
def resolve_run_dir(config: TrainConfig) -> Path:
    """``--resume RUN_DIR``, ``--run-dir``, or ``runs/<agent>-<env>-<UTC time>``."""
    agent = spec_of(config.agent).name
    if config.resume is not None:
        return Path(config.resume)
    if config.run_dir is not None:
        return Path(config.run_dir)
    stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime())
    return Path("runs") / f"{agent.replace(':', '.')}-{config.env}-{stamp}"


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.agent`` on ``config.env``; see the module docstring for the outputs.

    The run folder is locked (:func:`libero_gym.locking.folder_lock`) before anything
    is read or written there: one process per run folder.

    Raises:
        InvalidInputError: bad agent/env/config values, a run folder that already
            holds a run (without ``--resume``), or a resumed run with another agent/env.
        CheckpointError: ``--init-from``/``--resume`` checkpoint of another agent or env.
        FolderInUseError: another process is writing the run folder.
    """

    config.validate()
    config.check_reachable()  # an unreachable --ray-address fails before the run folder exists
    run_dir = resolve_run_dir(config)
    with folder_lock(run_dir, "run folder"):
        return _train_locked(config, run_dir)


def _train_locked(config: TrainConfig, run_dir: Path) -> TrainResult:
    """:func:`train`, its run folder ``run_dir`` locked."""
    import torch

    torch.set_num_threads(config.torch_threads)
    spec = spec_of(config.agent)
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
        now = {"agent": spec.name, **{key: jsonable(getattr(config, key)) for key in ("env", "task_id", "obs_mode")}}
        for key, new in now.items():
            old = previous["train"][key]
            if old != new:
                raise InvalidInputError(f"--resume: the run in {str(run_dir)!r} has {key}={old!r}, not {new!r}")
        resume_from = checkpoints.latest_valid()
    elif checkpoints.paths():
        raise InvalidInputError(
            f"{str(run_dir)!r} already holds a run; pass --resume {run_dir} to continue it or choose another --run-dir"
        )

    # -- the agent's config (a bad --agent.kwargs fails before any worker starts) and its env
    plan = _plan_agent(config, spec, resume_from)
    env_info = env_config_for(config, plan.chunk_size)
    check_spaces(spec, *env_info.spaces())  # before any worker starts
    vec_env = make_env(env_info, config.num_envs, config.vectorization_mode(config.vectorization),
                       ray_address=config.ray_address)
    try:
        vec_env.seed(config.seed)

        # -- the agent: resumed, warm-started, or fresh
        log_dir = run_dir / "logs"
        model, resumed_at = _make_model(config, spec, vec_env, env_info, plan, log_dir)
        model.set_logger(make_logger(log_dir, resumed_at, config.verbose))

        resolved = {
            "train": {**{k: jsonable(v) for k, v in dataclasses.asdict(config).items()}, "agent": spec.name},
            "agent": {"name": spec.name, "class_path": spec.class_path, "config": _agent_config(model)},
            "env": env_info.to_json(),
            "run_dir": str(run_dir),
        }
        run_dir.mkdir(parents=True, exist_ok=True)
        if not resuming:
            write_json_atomic(run_dir / CONFIG_FILE, resolved, sort_keys=False)

        # -- learn
        extra = {"run": {"run_dir": str(run_dir), "seed": config.seed}}
        callbacks: list[BaseCallback] = [
            CheckpointCallback(checkpoints, config.checkpoint_every, spec.name, env_info, extra),
            WorkerFaultsCallback(vec_env),
        ]
        target = TargetSuccessCallback(config.target_success) if config.target_success is not None else None
        if target is not None:
            callbacks.append(target)
        if config.update_threads is not None and config.update_threads != config.torch_threads:
            callbacks.append(UpdateThreadsCallback(config.torch_threads, config.update_threads))
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
    write_json_atomic(run_dir / SUMMARY_FILE, jsonable(dataclasses.asdict(result)), sort_keys=False)
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


def _plan_agent(config: TrainConfig, spec: Any, resume_from: Path | None) -> _AgentPlan:
    """The agent's config (``config.agent``; on the command line ``--init-from``'s are its defaults) and env kind."""
    if resume_from is not None:  # its own config and weights (--init-from only starts a run)
        chunk_size = read_meta(resume_from)["env"].get("chunk_size")
        return _AgentPlan(resume_from, None, None, None, chunk_size)
    init_meta = init_params = None
    if config.init_from is not None:
        init_meta, init_params = read_checkpoint(config.init_from)
        check_compatible(init_meta, agent=spec.name, env_id=None, where=f"--init-from {config.init_from}")
    agent_config: Any
    if spec.protocol == PROTOCOL_SB3:
        agent_config = _sb3_kwargs(spec, parse_sb3_kwargs(config.agent.kwargs), config)
    else:
        agent_config = config.agent
    chunk_size = getattr(agent_config, "chunk_size", None)
    return _AgentPlan(None, agent_config, init_meta, init_params, chunk_size)


def _make_model(
    config: TrainConfig, spec: Any, vec_env: SB3VecEnv, env_info: EnvConfig, plan: _AgentPlan, log_dir: Path
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


def _sb3_kwargs(spec: Any, overrides: dict[str, Any], config: TrainConfig) -> dict[str, Any]:
    """A plain SB3 class's kwargs; off-policy replay buffers sized to the run (capped)."""
    from stable_baselines3.common.off_policy_algorithm import OffPolicyAlgorithm

    kwargs = dict(overrides)
    if issubclass(spec.load_class(), OffPolicyAlgorithm) and "buffer_size" not in kwargs:
        kwargs["buffer_size"] = int(min(OFF_POLICY_BUFFER_CAP, max(config.total_timesteps, 1000)))
    return kwargs


def _agent_config(model: Any) -> dict[str, Any]:

    return jsonable(agent_config_json(model))
