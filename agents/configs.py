"""Configs of ``cli.py agents|train|pretrain|eval`` (light: no torch/MuJoCo at import).

Each config is a frozen dataclass whose field docstrings are the ``--help`` text. The
functions that run them (:func:`agents.train.train`, :func:`agents.pretrain.pretrain`,
:func:`agents.evaluate.evaluate`) import these configs, never the reverse.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import tyro

from agents.agent_configs import SAMPLINGS, DiffusionPPOConfig, GaussianPPOConfig, Sampling, SB3AgentConfig
from agents.registry import available_agents, find_agent
from libero_gym.backend import BackendConfig
from libero_gym.errors import InvalidInputError

ObsMode = Literal["state", "pixels", "both"]


def parse_sb3_kwargs(text: str) -> dict[str, Any]:
    """An SB3 agent's ``--agent.kwargs`` JSON object as a dict.

    Raises:
        InvalidInputError: not a JSON object.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"--agent.kwargs must be a JSON object, got {text!r}: {error}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"--agent.kwargs must be a JSON object, got {text!r}")
    return value


SB3_SUBCOMMAND = "module:Class"
"""The agent union's member for any SB3 class, which ``--agent module:Class`` selects."""


def agent_config_type() -> Any:
    """The registered agents' configs as one union, each member a tyro subcommand named as ``--agent`` names it.

    Built from :func:`agents.registry.available_agents` when this module is imported (so
    an agent registered before that is a member too): ``gaussian-ppo``, ``diffusion-ppo``,
    a plain SB3 class registered by name (its class path fixed), and ``module:Class`` for
    any SB3 class (:class:`SB3AgentConfig`). ``cli.py`` turns ``--agent NAME`` into these
    subcommands (:func:`agent_arguments`); their fields are the ``--agent.*`` flags.
    """
    members: list[Any] = []
    for name, spec in available_agents().items():
        config_cls = spec.load_config_class()
        if config_cls is None:  # a plain SB3 class under a short name
            default = SB3AgentConfig(spec.class_path)
            members.append(Annotated[SB3AgentConfig, tyro.conf.subcommand(name, default=default, prefix_name=False)])
        else:
            subcommand = tyro.conf.subcommand(name, description=spec.description, prefix_name=False)
            members.append(Annotated[config_cls, subcommand])
    subcommand = tyro.conf.subcommand(
        SB3_SUBCOMMAND, description="any SB3 algorithm, e.g. --agent stable_baselines3:SAC", prefix_name=False
    )
    members.append(Annotated[SB3AgentConfig, subcommand])
    return Union[tuple(members)]  # noqa: UP007 (a runtime-built union)


def agent_arguments(name: str) -> list[str]:
    """What ``--agent NAME`` stands for in the parsed command line: the agent's subcommand, and for an
    unregistered ``module:Class`` path also ``--agent.class-path`` (the class is imported when the agent is
    built, so parsing and ``--help`` stay light).

    Raises:
        InvalidInputError: ``name`` is neither a registered agent nor a ``module:Class`` path.
    """
    spec = find_agent(name)
    if spec.name in available_agents():
        return [spec.name]
    return [SB3_SUBCOMMAND, "--agent.class-path", name]


AgentConfig = agent_config_type()
"""What ``--agent`` may be: a registered agent's typed config, or :class:`SB3AgentConfig`."""


@dataclasses.dataclass(frozen=True)
class AgentsConfig:
    """List the registered agents (any SB3 algorithm works too, as `--agent module:Class`)."""


@dataclasses.dataclass(frozen=True)
class TrainConfig(BackendConfig):
    """Train an agent on libero-gym vector envs; writes one run folder."""

    agent: AgentConfig = GaussianPPOConfig()
    """--agent NAME: a registered agent (see `cli.py agents`) or module:Class for any SB3 class; its settings are
    the --agent.* flags (`train --agent NAME --help`). With --init-from, the checkpoint's agent and settings are
    the defaults the flags override."""
    env: str = "LIBERO-Goal-v0"
    """libero-gym env id (suite id, or a single-task id such as LIBERO-Goal-Task3-v0)."""
    task_id: tuple[int, ...] = (0,)
    """Task index(es) within the suite (ignored for single-task ids)."""
    obs_mode: ObsMode = "state"
    """Observation mode of the env."""
    image_size: int = 128
    """Camera image size in pixels (pixels/both modes)."""
    max_episode_steps: int | None = None
    """Episode limit; default the suite's (libero_gym.suites.MAX_EPISODE_STEPS)."""
    num_envs: int = 2
    """Parallel envs (one worker process each when async, one Ray actor each with --backend ray)."""
    vectorization: Literal["async", "sync"] = "async"
    """--backend local: async, one process per env; sync, all in this process."""
    total_timesteps: int = 100_000
    """Env steps to train for in total (counted over all envs; resume continues to this total)."""
    run_dir: Path | None = None
    """Run folder (config.json, logs/, checkpoints/); default runs/<agent>-<env>-<time>."""
    seed: int = 0
    """Seed of the agent and of the envs' first reset."""
    init_from: Path | None = None
    """Start from this checkpoint's policy (e.g. a `pretrain` BC checkpoint). On the command line its agent and
    agent settings are the defaults that --agent.* flags override (as LeRobot's --policy.path). With --resume:
    used only when the run has no checkpoint yet (a resumed run has its own weights)."""
    resume: Path | None = None
    """RUN_DIR: continue the run in this folder from its newest valid checkpoint (counters, optimizer,
    RNG, log); with no checkpoint there yet, start a new run in it (so a killed command can simply be
    rerun). The run folder; --run-dir may be left out."""
    target_success: float | None = None
    """Stop early once the success rate of the last 100 finished training episodes (SB3's rollout window)
    reaches this, in (0, 1]; None trains for --total-timesteps."""
    checkpoint_every: int = 10_000
    """Save a checkpoint every this many env steps (and at the end)."""
    keep_checkpoints: int = 2
    """How many of the newest checkpoints to keep."""
    device: str = "auto"
    """torch device: auto, cpu, cuda."""
    torch_threads: int = 1
    """CPU threads of torch in this process. 1: the env workers get the other cores; more threads
    oversubscribe them (a 50x256 matmul ran 40x slower with 2 threads than 1 on a busy 2-core machine)."""
    update_threads: int | None = None
    """CPU threads of torch during each update (the env workers wait then, so their cores are free); None: the
    same as --torch-threads. More than 1 pays only where those cores are idle, not on a machine loaded by other
    jobs (see --torch-threads); results may differ in the last float bits from a 1-thread update."""
    progress: bool = True
    """Show a progress bar."""
    verbose: int = 0
    """SB3 verbosity (1 also prints the logger's tables)."""

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for values no run can use (called by the command, so the
        CLI prints one line instead of a parse-time traceback)."""
        self.check_backend()
        positive = ("num_envs", "total_timesteps", "checkpoint_every", "keep_checkpoints", "image_size", "torch_threads")
        for name in positive:
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.update_threads is not None and self.update_threads < 1:
            raise InvalidInputError(f"update_threads must be >= 1 or None, got {self.update_threads}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise InvalidInputError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.target_success is not None and not 0.0 < self.target_success <= 1.0:
            raise InvalidInputError(f"target_success must be in (0, 1], got {self.target_success}")
        if self.resume is not None and self.run_dir is not None and Path(self.resume) != Path(self.run_dir):
            raise InvalidInputError(f"--resume {self.resume} and --run-dir {self.run_dir} name different folders")
        if isinstance(self.agent, SB3AgentConfig):
            parse_sb3_kwargs(self.agent.kwargs)


@dataclasses.dataclass(frozen=True)
class PretrainConfig:
    """Behaviour-clone an agent's policy (diffusion-ppo, gaussian-ppo) on LIBERO-layout HDF5 demonstrations."""

    dataset: tuple[Path, ...]
    """One or more LIBERO-layout HDF5 files (same suite)."""
    run_dir: Path
    """Output folder: config.json, logs/, checkpoint/ (for `train --init-from`)."""
    env: str | None = None
    """Env id whose observations to regenerate; default the suite of the dataset's task."""
    obs_mode: ObsMode = "state"
    """Observation mode the policy is trained for (observations are re-rendered by replaying states)."""
    image_size: int = 128
    """Camera image size (pixels/both)."""
    agent: AgentConfig = DiffusionPPOConfig()
    """--agent NAME: the agent whose policy to pretrain, with the settings the later `train` run uses: diffusion-ppo
    (denoising loss) or gaussian-ppo (mean squared error); its settings are the --agent.* flags."""
    epochs: int = 50
    """Passes over the demonstrations."""
    batch_size: int = 256
    """Minibatch size (diffusion_policy's default for state-based tasks)."""
    learning_rate: float = 1e-4
    """AdamW learning rate (diffusion_policy / DPPO pretraining default)."""
    weight_decay: float = 1e-6
    """AdamW weight decay (diffusion_policy default)."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Learning rate after the warm-up: cosine decay to 0 over the run (diffusion_policy, DPPO) or constant."""
    lr_warmup_steps: int = 100
    """Optimizer steps of linear learning-rate warm-up, at most a tenth of the run (diffusion_policy: 500 on
    much larger datasets)."""
    ema_max_decay: float = 0.9999
    """Max decay of the weights' exponential moving average, which the checkpoint holds (diffusion_policy's
    EMAModel: 0.9999, power-0.75 warm-up); 0 turns the EMA off."""
    max_demos: int | None = None
    """Use at most this many demos per file."""
    seed: int = 0
    """Seed for shuffling and the denoising noise."""
    device: str = "auto"
    """torch device."""
    torch_threads: int = 1
    """CPU threads of torch (see train --torch-threads)."""
    progress: bool = True
    """Show a progress bar."""

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for values no run can use (called by the command, so the
        CLI prints one line instead of a parse-time traceback)."""
        if not self.dataset:
            raise InvalidInputError("--dataset needs at least one file")
        for name in ("epochs", "batch_size", "image_size", "torch_threads"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.learning_rate <= 0:
            raise InvalidInputError(f"learning_rate must be > 0, got {self.learning_rate}")
        if not 0 <= self.ema_max_decay < 1:
            raise InvalidInputError(f"ema_max_decay must be in [0, 1), got {self.ema_max_decay}")
        if self.lr_warmup_steps < 0:
            raise InvalidInputError(f"lr_warmup_steps must be >= 0, got {self.lr_warmup_steps}")


@dataclasses.dataclass(frozen=True)
class EvalConfig(BackendConfig):
    """Roll out a checkpoint over the task's init states; success rate per task with a 95% interval, per sampling mode."""

    checkpoint: Path
    """Checkpoint folder/zip, or a run folder (its newest valid checkpoint)."""
    episodes: int = 50
    """Episodes per task (and per sampling mode); 50 = each of LIBERO's 50 init states once."""
    task_id: tuple[int | Literal["all"], ...] | None = None
    """Tasks to evaluate (indices, or all: every task of the checkpoint's suite, for a multi-task checkpoint on a
    suite env id; then also a per-task bar chart and JSON, see --out-dir); default the checkpoint's tasks."""
    out_dir: Path | None = None
    """Write success.png (per-task bar chart with 95% intervals and the suite mean) and results.json here; default
    with --task-id all: eval/ in the checkpoint's run folder."""
    sampling: tuple[Sampling, ...] = ("deterministic", "stochastic")
    """How actions are drawn, one evaluation each; the first is the headline figure. deterministic: the Gaussian
    mean; for diffusion-ppo DPPO's evaluation (random x_T, DDIM eta = 0, no exploration noise). stochastic: what
    RL rollouts sample (Gaussian sample; diffusion: eta = 1 with DPPO's noise floor). zero-init (diffusion-ppo
    only): x_T = 0 and eta = 0, a function of the observation; not the policy RL trains."""
    init_states: Literal["cycle", "random"] = "cycle"
    """cycle: episode i of a task starts from init state i mod 50 (LIBERO's evaluation order); random: drawn
    from the seeded env RNG."""
    max_episode_steps: int | None = None
    """Episode limit; default the checkpoint's (else the suite's)."""
    video_dir: Path | None = None
    """Write one MP4 per episode here (agentview camera; first sampling mode only)."""
    num_envs: int = 1
    """Parallel envs per task (one process each when more than 1, one Ray actor each with --backend ray)."""
    seed: int = 0
    """Seed of the envs and of torch's sampling noise (each sampling mode starts from it)."""
    device: str = "auto"
    """torch device."""
    torch_threads: int = 1
    """CPU threads of torch (small networks: one thread leaves the cores to the env workers)."""
    json_out: Path | None = None
    """Also write the results as JSON here (per task and mode: success rate, 95% interval, and each episode's init
    state, success and length)."""

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for values no run can use (called by the command, so the
        CLI prints one line instead of a parse-time traceback)."""
        self.check_backend()
        if self.episodes < 1 or self.num_envs < 1:
            raise InvalidInputError(f"episodes and num_envs must be >= 1, got {self.episodes}, {self.num_envs}")
        if self.torch_threads < 1:
            raise InvalidInputError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if not self.sampling or len(set(self.sampling)) != len(self.sampling):
            raise InvalidInputError(f"sampling must name distinct modes among {list(SAMPLINGS)}, got {list(self.sampling)}")
        if self.task_id is not None:
            if not self.task_id:
                raise InvalidInputError("task_id must name at least one task, or all")
            if "all" in self.task_id and len(self.task_id) > 1:
                raise InvalidInputError(f"task_id must be indices or all alone, got {list(self.task_id)}")
            if any(not isinstance(t, int) and t != "all" for t in self.task_id):
                raise InvalidInputError(f"task_id must be indices or all, got {list(self.task_id)}")
        if self.init_states == "cycle" and self.num_envs > self.episodes:
            raise InvalidInputError(f"num_envs must be <= episodes with --init-states cycle, got {self.num_envs} > {self.episodes}")


def init_from_defaults(init_from: str | Path) -> TrainConfig:
    """``train``'s defaults for ``--init-from PATH``: the checkpoint's agent with its settings.

    The command line parses onto these, so an ``--agent.*`` flag given explicitly overrides the
    checkpoint's value and every other field keeps it (LeRobot's ``--policy.path``). A checkpoint
    of an agent without a typed config keeps the usual defaults (``train`` then checks the match).

    Raises:
        CheckpointError: unreadable checkpoint.
    """
    from agents.checkpoint import read_meta  # torch: only when --init-from is given

    meta = read_meta(init_from)
    spec = available_agents().get(str(meta.get("agent")))
    config_cls = spec.load_config_class() if spec is not None else None
    if config_cls is None:
        return TrainConfig(init_from=Path(init_from))
    return TrainConfig(agent=spec.make_config(meta["config"]), init_from=Path(init_from))
