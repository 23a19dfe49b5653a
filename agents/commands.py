"""Configs behind ``cli.py agents|train|pretrain|eval`` (light: no torch/MuJoCo at import).

Each config is a frozen dataclass whose field docstrings are the ``--help`` text;
the function next to it imports the heavy library code when it runs.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from agents.generate import GenerateConfig, generate
from libero_gym.errors import InvalidInputError

ObsMode = Literal["state", "pixels", "both"]
Sampling = Literal["deterministic", "stochastic", "zero-init"]
SAMPLINGS: tuple[str, ...] = ("deterministic", "stochastic", "zero-init")


def parse_agent_config(text: str) -> dict[str, Any]:
    """The ``--agent-config`` JSON object as a dict.

    Raises:
        InvalidInputError: not a JSON object.
    """
    if not text:
        return {}
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(f"--agent-config must be a JSON object, got {text!r}: {error}") from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"--agent-config must be a JSON object, got {text!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Agents:
    """List the registered agents (use any SB3 algorithm as --agent module:Class too)."""


@dataclasses.dataclass(frozen=True)
class Train:
    """Train an agent on libero-gym vector envs; writes one run folder."""

    agent: str = "gaussian-ppo"
    """Registered agent name (see `cli.py agents`) or an SB3 class as module:Class (e.g. stable_baselines3:SAC)."""
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
    """Parallel envs (one worker process each when async)."""
    vectorization: Literal["async", "sync"] = "async"
    """async: one process per env; sync: all in this process."""
    total_timesteps: int = 100_000
    """Env steps to train for in total (counted over all envs; resume continues to this total)."""
    run_dir: Path | None = None
    """Run folder (config.json, logs/, checkpoints/); default runs/<agent>-<env>-<time>."""
    seed: int = 0
    """Seed of the agent and of the envs' first reset."""
    init_from: Path | None = None
    """Start from this checkpoint's policy (e.g. a `pretrain` BC checkpoint); its agent config is the base.
    With --resume: used only when the run has no checkpoint yet (a resumed run has its own weights)."""
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
    agent_config: str = ""
    """JSON object of agent config overrides, e.g. '{"n_steps": 64}' (SB3 kwargs for module:Class agents)."""
    device: str = "auto"
    """torch device: auto, cpu, cuda."""
    torch_threads: int = 1
    """CPU threads of torch in this process. 1: the env workers get the other cores; more threads
    oversubscribe them (a 50x256 matmul ran 40x slower with 2 threads than 1 on a busy 2-core machine)."""
    progress: bool = True
    """Show a progress bar."""
    verbose: int = 0
    """SB3 verbosity (1 also prints the logger's tables)."""

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for values no run can use (called by the command, so the
        CLI prints one line instead of a parse-time traceback)."""
        positive = ("num_envs", "total_timesteps", "checkpoint_every", "keep_checkpoints", "image_size", "torch_threads")
        for name in positive:
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.max_episode_steps is not None and self.max_episode_steps < 1:
            raise InvalidInputError(f"max_episode_steps must be >= 1, got {self.max_episode_steps}")
        if self.target_success is not None and not 0.0 < self.target_success <= 1.0:
            raise InvalidInputError(f"target_success must be in (0, 1], got {self.target_success}")
        if self.resume is not None and self.run_dir is not None and Path(self.resume) != Path(self.run_dir):
            raise InvalidInputError(f"--resume {self.resume} and --run-dir {self.run_dir} name different folders")
        parse_agent_config(self.agent_config)


@dataclasses.dataclass(frozen=True)
class Pretrain:
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
    agent: str = "diffusion-ppo"
    """Agent whose policy to pretrain: diffusion-ppo (denoising loss) or gaussian-ppo (mean squared error)."""
    agent_config: str = ""
    """JSON object of agent config overrides (the same the later `train` run uses)."""
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
        parse_agent_config(self.agent_config)


@dataclasses.dataclass(frozen=True)
class Eval:
    """Roll out a checkpoint over the task's init states; success rate per task with a 95% interval, per sampling mode."""

    checkpoint: Path
    """Checkpoint folder/zip, or a run folder (its newest valid checkpoint)."""
    episodes: int = 50
    """Episodes per task (and per sampling mode); 50 = each of LIBERO's 50 init states once."""
    task_id: tuple[int, ...] | None = None
    """Tasks to evaluate; default the checkpoint's tasks."""
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
    """Parallel envs per task."""
    seed: int = 0
    """Seed of the envs and of torch's sampling noise (each sampling mode starts from it)."""
    device: str = "auto"
    """torch device."""
    torch_threads: int = 1
    """CPU threads of torch (small networks: one thread leaves the cores to the env workers)."""
    json_out: Path | None = None
    """Also write the results as JSON here."""

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for values no run can use (called by the command, so the
        CLI prints one line instead of a parse-time traceback)."""
        if self.episodes < 1 or self.num_envs < 1:
            raise InvalidInputError(f"episodes and num_envs must be >= 1, got {self.episodes}, {self.num_envs}")
        if self.torch_threads < 1:
            raise InvalidInputError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if not self.sampling or len(set(self.sampling)) != len(self.sampling):
            raise InvalidInputError(f"sampling must name distinct modes among {list(SAMPLINGS)}, got {list(self.sampling)}")
        if self.init_states == "cycle" and self.num_envs > self.episodes:
            raise InvalidInputError(f"num_envs must be <= episodes with --init-states cycle, got {self.num_envs} > {self.episodes}")


def list_agents(config: Agents) -> int:
    """Print the agent table."""
    from rich.console import Console
    from rich.table import Table

    from agents.registry import available_agents

    table = Table(title="libero-gym agents")
    table.add_column("name", no_wrap=True)
    table.add_column("class")
    table.add_column("description")
    for spec in available_agents().values():
        table.add_row(spec.name, spec.class_path, spec.description)
    table.add_row(
        "module:Class", "any stable_baselines3 BaseAlgorithm", "e.g. stable_baselines3:SAC, stable_baselines3:TD3"
    )
    Console(width=160).print(table)
    return 0


def train_command(config: Train) -> int:
    """Run :func:`agents.train.train` and print its summary."""
    from agents.train import print_summary, train

    config.validate()
    print_summary(train(config))
    return 0


def pretrain_command(config: Pretrain) -> int:
    """Run :func:`agents.pretrain.pretrain` and print its summary."""
    from agents.pretrain import pretrain, print_summary
    from libero_gym.locking import folder_lock

    config.validate()
    with folder_lock(config.run_dir, "run folder"):  # one process per run folder, before anything is written
        result = pretrain(config)
    print_summary(result)
    return 0


def eval_command(config: Eval) -> int:
    """Run :func:`agents.evaluate.evaluate` and print the table."""
    from agents.evaluate import evaluate, print_results

    config.validate()
    print_results(evaluate(config))
    return 0


COMMANDS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "agents": (Agents, list_agents),
    "train": (Train, train_command),
    "pretrain": (Pretrain, pretrain_command),
    "eval": (Eval, eval_command),
    "generate": (GenerateConfig, generate),
}
