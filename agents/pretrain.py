"""``pretrain``: behaviour cloning of an agent's policy on LIBERO-layout demonstrations.

Any agent with the behaviour-cloning protocol (``bc_horizon``, ``bc_module()``,
``fit_normalization``, ``bc_loss``, ``end_pretraining()``) can be pretrained: the
diffusion policy of ``diffusion-ppo`` by its denoising loss, the Gaussian of
``gaussian-ppo`` by the squared error of its mean. It is trained on (observation,
action chunk) pairs:

* observations are regenerated for *our* env and obs_mode by replaying the stored
  MuJoCo states in the episode's re-created scene (``libero_gym.data.replay.env_observations``),
  so the same file serves ``state``, ``pixels`` and ``both`` policies and LIBERO's
  own datasets (whose images are upside down and 128x128) need no conversion;
* the chunk at step t is ``actions[t : t + Ta]`` (``expert_actions`` where the demo has them), the tail padded with the last
  action (diffusion_policy's and DPPO's convention), clamped to [-1, 1];
* before the first step the agent fits its per-dimension observation and action
  scalings on these demonstrations (:mod:`agents.normalization`; saved in the
  checkpoint with the weights);
* AdamW with a linear warm-up then a cosine decay of the learning rate, and an
  exponential moving average (EMA) of the weights, which is what the checkpoint
  holds (diffusion_policy's and DPPO's pretraining recipe).

Output (``RUN_DIR``): ``config.json``, ``logs/`` (TensorBoard ``train/bc_loss``),
``checkpoint/`` in the common format, which ``train --init-from`` and ``eval`` take.

Shapes: N samples, Ta chunk length, Da = 7 action dims.
"""

from __future__ import annotations

import copy
import dataclasses
import math
import time
from pathlib import Path
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
import torch

from agents.checkpoint import save_checkpoint
from agents.configs import PretrainConfig
from agents.registry import SpacesOnlyEnv, available_agents, build_agent, spec_of
from agents.run_folder import make_logger
from libero_gym.atomic_files import jsonable, write_json_atomic
from libero_gym.data.dataset import read_dataset
from libero_gym.data.replay import env_observations
from libero_gym.env_config import EnvConfig
from libero_gym.errors import DatasetError, InvalidInputError
from libero_gym.locking import folder_lock
from libero_gym.progress import ProgressBar
from libero_gym.registration import lookup_env, suite_env_id

CHECKPOINT_DIR = "checkpoint"


@dataclasses.dataclass(frozen=True)
class PretrainResult:
    """What a finished pretraining run reports."""

    run_dir: Path
    checkpoint: Path
    env_id: str
    task_ids: tuple[int, ...]
    obs_mode: str
    demos: int
    samples: int
    epochs: int
    first_loss: float
    final_loss: float
    wall_time_s: float


@dataclasses.dataclass
class DemoData:
    """Regenerated observations and action chunks of every demo step."""

    observations: dict[str, np.ndarray]
    """key -> [N, ...] in the env's observation dtypes."""
    chunks: np.ndarray
    """[N, Ta, Da] float32 in [-1, 1]."""
    demos: int
    env: EnvConfig
    observation_space: Any
    action_space: Any


def action_chunks(actions: np.ndarray, horizon: int) -> np.ndarray:
    """Chunks ``actions[t : t + Ta]`` for every t, padded with the last action: [T, Ta, Da]."""
    actions = np.asarray(actions, dtype=np.float32)
    steps = len(actions)
    index = np.minimum(np.arange(steps)[:, None] + np.arange(horizon)[None, :], steps - 1)
    return np.clip(actions[index], -1.0, 1.0)


def load_demos(config: PretrainConfig, horizon: int) -> DemoData:
    """Read every file, replay its stored states in a libero-gym env, build (obs, chunk) pairs.

    Raises:
        DatasetError: not LIBERO's layout, no task, or files of different suites.
    """

    observations: dict[str, list[np.ndarray]] = {}
    chunks: list[np.ndarray] = []
    demos = 0
    env_id: str | None = config.env
    task_ids: list[int] = []
    spaces_: tuple[Any, Any] | None = None
    for path in config.dataset:
        if not Path(path).exists():
            raise DatasetError(f"dataset {str(path)!r} does not exist")
        dataset = read_dataset(path, images=False)
        task = dataset.task
        if task is None:
            raise DatasetError(f"{path}: cannot tell which libero-gym task it holds (problem_info/bddl_file_name)")
        if env_id is None:
            env_id = suite_env_id(task.suite)
        suite, index = lookup_env(env_id)
        if suite != task.suite:
            raise DatasetError(f"{path} holds a {task.suite} task; it cannot train a policy for {env_id}")
        if index not in (None, task.index):
            raise DatasetError(f"{path} holds {task.env_id}, not {env_id}")
        env = EnvConfig(env_id, (task.index,), config.obs_mode, config.image_size).make()
        try:
            env.reset(seed=config.seed)  # builds the task's simulator
            spaces_ = spaces_ or (env.observation_space, env.action_space)
            episodes = dataset.episodes[: config.max_demos] if config.max_demos is not None else dataset.episodes
            for episode in episodes:
                # Our own demos record their scene (init state id, fixture layout) and are
                # replayed in it; LIBERO's human demos do not, and replay in the current one.
                restore = "init_state_id" in episode.attrs
                # The recorded settle steps are the env's reset, never a policy's decision.
                steps = episode.policy_steps
                for key, value in env_observations(env, episode, restore=restore).items():
                    observations.setdefault(key, []).extend(value[steps])
                # Demos collected with exploration noise (collect --action-noise) are cloned from the
                # expert's commands, not from the noisy actions that were executed.
                labels = episode.actions if episode.expert_actions is None else episode.expert_actions
                chunks.append(action_chunks(labels[steps], horizon))
                demos += 1
        finally:
            env.close()
        if task.index not in task_ids:
            task_ids.append(task.index)
    if not chunks or env_id is None or spaces_ is None:
        raise DatasetError(f"no demonstrations in {[str(p) for p in config.dataset]}")
    info = EnvConfig(env_id, tuple(task_ids), config.obs_mode, config.image_size if config.obs_mode != "state" else None)
    return DemoData(
        {key: np.stack(values) for key, values in observations.items()},
        np.concatenate(chunks),
        demos,
        info,
        *spaces_,
    )


def pretrain(config: PretrainConfig) -> PretrainResult:
    """Behaviour-clone ``config.agent``'s diffusion policy; see the module docstring.

    The run folder is locked (:func:`libero_gym.locking.folder_lock`) before anything
    is written there: one process per run folder.

    Raises:
        InvalidInputError: an agent without a diffusion policy, or bad config values.
        DatasetError: unusable dataset files.
        FolderInUseError: another process is writing the run folder.
    """
    config.validate()
    with folder_lock(config.run_dir, "run folder"):
        return _pretrain_locked(config)


def _pretrain_locked(config: PretrainConfig) -> PretrainResult:
    """:func:`pretrain`, its run folder locked."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    torch.set_num_threads(config.torch_threads)
    spec = spec_of(config.agent)
    agent_config = config.agent if spec.config_path is not None else None
    if agent_config is None or not hasattr(spec.load_class(), "bc_loss"):
        raise InvalidInputError(
            f"pretrain needs an agent that can be behaviour-cloned (one of {_bc_agents()}), got {spec.name}"
        )
    policy_config = getattr(agent_config, "policy", None)
    horizon = int(getattr(policy_config, "horizon_steps", 1))
    run_dir = Path(config.run_dir)
    if (run_dir / CHECKPOINT_DIR).exists():
        raise InvalidInputError(f"{str(run_dir)!r} already holds a pretrained checkpoint; choose another --run-dir")

    start = time.perf_counter()
    data = load_demos(config, horizon)
    env = DummyVecEnv([lambda: SpacesOnlyEnv(data.observation_space, data.action_space)])
    model = build_agent(spec, env, agent_config, seed=config.seed, device=config.device)
    if model.bc_horizon != horizon:
        raise InvalidInputError(f"agent {spec.name} clones chunks of {model.bc_horizon} actions, not {horizon}")
    model.fit_normalization(data.observations, data.chunks)

    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {
        "pretrain": {**{k: jsonable(v) for k, v in dataclasses.asdict(config).items()}, "agent": spec.name},
        "agent": {"name": spec.name, "class_path": spec.class_path, "config": jsonable(model.config_dict())},
        "env": data.env.to_json(),
        "demos": data.demos,
        "samples": len(data.chunks),
    }
    write_json_atomic(run_dir / "config.json", resolved, sort_keys=False)
    logger = make_logger(run_dir / "logs")

    first_loss, final_loss = fit_bc(model, data.observations, data.chunks, config, logger, progress=config.progress)
    n = len(data.chunks)

    checkpoint = save_checkpoint(
        model,
        run_dir / CHECKPOINT_DIR,
        agent=spec.name,
        env=data.env,
        include_optimizer=False,
        extra={
            "pretrain": {
                "demos": data.demos, "samples": n, "epochs": config.epochs, "final_bc_loss": final_loss,
                "ema_max_decay": config.ema_max_decay, "lr_schedule": config.lr_schedule,
            }
        },  # fmt: skip
    )
    return PretrainResult(
        run_dir=run_dir,
        checkpoint=checkpoint,
        env_id=data.env.env_id,
        task_ids=data.env.task_ids,
        obs_mode=config.obs_mode,
        demos=data.demos,
        samples=n,
        epochs=config.epochs,
        first_loss=first_loss,
        final_loss=final_loss,
        wall_time_s=time.perf_counter() - start,
    )


class BCSchedule(Protocol):
    """The optimisation settings :func:`fit_bc` reads (fields of ``PretrainConfig`` and ``StudentConfig``)."""

    epochs: int
    batch_size: int
    learning_rate: float
    weight_decay: float
    lr_schedule: str
    lr_warmup_steps: int
    ema_max_decay: float
    seed: int


Augment = Callable[[dict[str, torch.Tensor]], dict[str, torch.Tensor]]
"""Maps a minibatch of observations (key -> [B, ...] tensors) to the ones the loss sees."""


def fit_bc(
    model: Any,
    observations: dict[str, np.ndarray],
    chunks: np.ndarray,
    schedule: BCSchedule,
    logger: Any,
    *,
    progress: bool = False,
    augment: Augment | None = None,
) -> tuple[float, float]:
    """Behaviour-clone ``model.bc_module()`` on (observation, chunk) pairs; returns the first and last epoch's loss.

    AdamW with a linear warm-up then a constant or cosine learning rate, minibatches drawn
    without replacement each epoch (the ragged last one dropped), and an EMA of the weights
    that is copied into the module at the end (module docstring). The model is left in
    eval mode with ``end_pretraining()`` called.

    Args:
        model: an agent with the behaviour-cloning protocol, normalisation already fitted.
        observations: key -> [N, ...] numpy observations.
        chunks: [N, Ta, Da] demonstrated action chunks in the env's units.
        schedule: epochs, batch size, learning rate and its schedule, EMA, seed of the shuffling.
        logger: SB3 logger for ``train/bc_loss``, ``train/learning_rate``, ``train/epoch``.
        progress: show a progress bar.
        augment: applied to every minibatch's observations before the loss (e.g. input noise).
    """
    # -- the loop: AdamW with warm-up + cosine LR on the cloned network, an EMA of its weights
    module = model.bc_module()
    module.train(True)
    parameters = [p for p in module.parameters()]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(parameters, lr=schedule.learning_rate, weight_decay=schedule.weight_decay)
    generator = np.random.default_rng(schedule.seed)
    n = len(chunks)
    batch = min(schedule.batch_size, n)
    steps_per_epoch = n // batch  # the ragged last batch is dropped
    total_steps = schedule.epochs * steps_per_epoch
    warmup = min(schedule.lr_warmup_steps, total_steps // 10)  # a short run is not all warm-up
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, _lr_factor(schedule.lr_schedule, warmup, total_steps))
    ema = _Ema(module, schedule.ema_max_decay) if schedule.ema_max_decay > 0 else None
    first_loss = final_loss = float("nan")
    bar = ProgressBar("pretrain", schedule.epochs, enabled=progress)
    for epoch in range(schedule.epochs):
        order = generator.permutation(n)
        losses = []
        for begin in range(0, steps_per_epoch * batch, batch):
            index = order[begin : begin + batch]
            obs = {key: torch.as_tensor(value[index], device=model.device) for key, value in observations.items()}
            if augment is not None:
                obs = augment(obs)
            actions = torch.as_tensor(chunks[index], device=model.device)
            loss = model.bc_loss(obs, actions)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            scheduler.step()
            if ema is not None:
                ema.update(module)
            losses.append(loss.item())
        final_loss = float(np.mean(losses))
        if epoch == 0:
            first_loss = final_loss
        logger.record("train/bc_loss", final_loss)
        logger.record("train/learning_rate", scheduler.get_last_lr()[0])
        logger.record("train/epoch", epoch + 1)
        logger.dump(step=epoch + 1)
        bar.update(advance=1, stats=f"loss {final_loss:.4f}")
    bar.close()
    logger.close()
    if ema is not None:
        ema.copy_to(module)  # the checkpoint holds the averaged weights
    module.train(False)
    model.end_pretraining()
    return first_loss, final_loss


def print_summary(result: PretrainResult) -> None:
    """A few lines: data, loss, checkpoint."""
    print(
        f"pretrained on {result.demos} demos ({result.samples} steps) of {result.env_id} tasks {list(result.task_ids)} "
        f"({result.obs_mode}), {result.epochs} epochs in {result.wall_time_s:.1f}s\n"
        f"bc loss {result.first_loss:.4f} (epoch 1) -> {result.final_loss:.4f}\n"
        f"checkpoint: {result.checkpoint} (use: cli.py train --init-from {result.checkpoint})"
    )


class _Ema:
    """Exponential moving average of a module's parameters and buffers, with diffusion_policy's warm-up.

    The decay at update k is ``min(max_decay, 1 - (1 + k) ** -0.75)``
    (diffusion_policy's ``EMAModel``: power 0.75), so early averages follow the
    weights closely and later ones average over ~``1 / (1 - decay)`` updates.
    """

    POWER = 0.75
    """Warm-up power of the decay (diffusion_policy's EMAModel default)."""

    def __init__(self, module: torch.nn.Module, max_decay: float) -> None:
        self.average = copy.deepcopy(module).requires_grad_(False)
        self.max_decay = max_decay
        self.updates = 0

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        decay = min(self.max_decay, 1 - (1 + self.updates) ** -self.POWER)
        self.updates += 1
        for average, current in zip(self.average.parameters(), module.parameters()):
            average.lerp_(current, 1 - decay)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        for average, current in zip(self.average.parameters(), module.parameters()):
            current.copy_(average)


def _lr_factor(schedule: str, warmup: int, total: int) -> Any:
    """LR multiplier per optimizer step: linear warm-up, then constant or a cosine decay to 0."""

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 0.5 * (1 + math.cos(math.pi * progress))

    return factor


def _bc_agents() -> list[str]:
    """Registered agents with the behaviour-cloning protocol."""

    names = []
    for spec in available_agents().values():
        try:
            if spec.config_path is not None and hasattr(spec.load_class(), "bc_loss"):
                names.append(spec.name)
        except ImportError:  # pragma: no cover - a broken third-party registration
            continue
    return names


