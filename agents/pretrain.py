"""``pretrain``: behaviour cloning of the diffusion policy on LIBERO-layout demonstrations.

The policy is trained by its denoising loss (``policy.bc_loss``) on (observation,
action chunk) pairs:

* observations are regenerated for *our* env and obs_mode by replaying the stored
  MuJoCo states in the episode's re-created scene (``libero_gym.data.replay.env_observations``),
  so the same file serves ``state``, ``pixels`` and ``both`` policies and LIBERO's
  own datasets (whose images are upside down and 128x128) need no conversion;
* the chunk at step t is ``actions[t : t + Ta]``, the tail padded with the last
  action (diffusion_policy's and DPPO's convention), clamped to [-1, 1].

Output (``RUN_DIR``): ``config.json``, ``logs/`` (TensorBoard ``train/bc_loss``),
``checkpoint/`` in the common format, which ``train --init-from`` and ``eval`` take.

Shapes: N samples, Ta chunk length, Da = 7 action dims.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from agents.checkpoint import EnvInfo, build_agent, save_checkpoint
from agents.commands import Pretrain, parse_agent_config
from agents.registry import PROTOCOL_CONFIG, SpacesOnlyEnv, resolve_agent
from libero_gym.errors import DatasetError, InvalidInputError

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
    env: EnvInfo
    observation_space: Any
    action_space: Any


def action_chunks(actions: np.ndarray, horizon: int) -> np.ndarray:
    """Chunks ``actions[t : t + Ta]`` for every t, padded with the last action: [T, Ta, Da]."""
    actions = np.asarray(actions, dtype=np.float32)
    steps = len(actions)
    index = np.minimum(np.arange(steps)[:, None] + np.arange(horizon)[None, :], steps - 1)
    return np.clip(actions[index], -1.0, 1.0)


def load_demos(config: Pretrain, horizon: int) -> DemoData:
    """Read every file, replay its stored states in a libero-gym env, build (obs, chunk) pairs.

    Raises:
        DatasetError: not LIBERO's layout, no task, or files of different suites.
    """
    import gymnasium as gym

    from libero_gym.data.dataset import read_dataset
    from libero_gym.data.replay import env_observations
    from libero_gym.registration import suite_env_ids, task_env_ids

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
        suite_id = next(eid for eid, suite in suite_env_ids().items() if suite == task.suite)
        if env_id is None:
            env_id = suite_id
        if env_id in task_env_ids():
            if task_env_ids()[env_id] != task:
                raise DatasetError(f"{path} holds {task.env_id}, not {env_id}")
            kwargs: dict[str, Any] = {}
        elif env_id == suite_id:
            kwargs = {"task_id": task.index}
        else:
            raise DatasetError(f"{path} holds a {task.suite} task; it cannot train a policy for {env_id}")
        env = gym.make(env_id, obs_mode=config.obs_mode, image_size=config.image_size, **kwargs)
        try:
            env.reset(seed=config.seed)  # builds the task's simulator
            spaces_ = spaces_ or (env.observation_space, env.action_space)
            episodes = dataset.episodes[: config.max_demos] if config.max_demos is not None else dataset.episodes
            for episode in episodes:
                # Our own demos record their scene (init state id, fixture layout) and are
                # replayed in it; LIBERO's human demos do not, and replay in the current one.
                restore = "init_state_id" in episode.attrs
                for key, value in env_observations(env, episode, restore=restore).items():
                    observations.setdefault(key, []).extend(value)
                chunks.append(action_chunks(episode.actions, horizon))
                demos += 1
        finally:
            env.close()
        if task.index not in task_ids:
            task_ids.append(task.index)
    if not chunks or env_id is None or spaces_ is None:
        raise DatasetError(f"no demonstrations in {[str(p) for p in config.dataset]}")
    info = EnvInfo(env_id, tuple(task_ids), config.obs_mode, config.image_size if config.obs_mode != "state" else None)
    return DemoData(
        {key: np.stack(values) for key, values in observations.items()},
        np.concatenate(chunks),
        demos,
        info,
        *spaces_,
    )


def pretrain(config: Pretrain) -> PretrainResult:
    """Behaviour-clone ``config.agent``'s diffusion policy; see the module docstring.

    Raises:
        InvalidInputError: an agent without a diffusion policy, or bad config values.
        DatasetError: unusable dataset files.
    """
    from stable_baselines3.common.logger import CSVOutputFormat, Logger, TensorBoardOutputFormat
    from stable_baselines3.common.vec_env import DummyVecEnv

    config.validate()
    torch.set_num_threads(config.torch_threads)
    spec = resolve_agent(config.agent)
    if spec.protocol != PROTOCOL_CONFIG:
        raise InvalidInputError(
            f"pretrain needs an agent with a diffusion policy (e.g. diffusion-ppo), got {spec.name}"
        )
    agent_config = spec.make_config(parse_agent_config(config.agent_config))
    horizon = getattr(getattr(agent_config, "policy", None), "horizon_steps", None)
    if horizon is None:
        raise InvalidInputError(
            f"pretrain needs an agent with a diffusion policy (config.policy.horizon_steps), got {spec.name}"
        )
    run_dir = Path(config.run_dir)
    if (run_dir / CHECKPOINT_DIR).exists():
        raise InvalidInputError(f"{str(run_dir)!r} already holds a pretrained checkpoint; choose another --run-dir")

    start = time.perf_counter()
    data = load_demos(config, horizon)
    env = DummyVecEnv([lambda: SpacesOnlyEnv(data.observation_space, data.action_space)])
    model = build_agent(spec, env, agent_config, seed=config.seed, device=config.device)
    policy = model.policy
    if not hasattr(policy, "bc_loss"):
        raise InvalidInputError(f"agent {spec.name}'s policy has no bc_loss; it cannot be pretrained")

    run_dir.mkdir(parents=True, exist_ok=True)
    resolved = {
        "pretrain": {k: _jsonable(v) for k, v in dataclasses.asdict(config).items()},
        "agent": {"name": spec.name, "class_path": spec.class_path, "config": _jsonable(model.config_dict())},
        "env": data.env.to_json(),
        "demos": data.demos,
        "samples": len(data.chunks),
    }
    (run_dir / "config.json").write_text(json.dumps(resolved, indent=2) + "\n")
    log_dir = run_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    formats = [TensorBoardOutputFormat(str(log_dir)), CSVOutputFormat(str(log_dir / "progress.csv"))]
    logger = Logger(str(log_dir), formats)

    # -- the loop: AdamW on the pre-trained denoiser, minibatches of (obs, chunk)
    actor = policy.actor
    for parameter in actor.parameters():
        parameter.requires_grad_(True)
    optimizer = torch.optim.AdamW(actor.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    generator = np.random.default_rng(config.seed)
    n = len(data.chunks)
    batch = min(config.batch_size, n)
    first_loss = final_loss = float("nan")
    progress = _progress(config.progress, config.epochs)
    policy.train(True)
    for epoch in range(config.epochs):
        order = generator.permutation(n)
        losses = []
        for begin in range(0, n - batch + 1, batch):  # drop the ragged last batch
            index = order[begin : begin + batch]
            obs = {key: torch.as_tensor(value[index], device=model.device) for key, value in data.observations.items()}
            actions = torch.as_tensor(data.chunks[index], device=model.device)
            loss = policy.bc_loss(obs, actions)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        final_loss = float(np.mean(losses))
        if epoch == 0:
            first_loss = final_loss
        logger.record("train/bc_loss", final_loss)
        logger.record("train/epoch", epoch + 1)
        logger.dump(step=epoch + 1)
        if progress is not None:
            progress.update(progress.task_ids[0], advance=1, loss=final_loss)
    if progress is not None:
        progress.stop()
    logger.close()
    policy.train(False)
    policy.sync_finetuned()  # RL fine-tunes a copy of the cloned denoiser

    checkpoint = save_checkpoint(
        model,
        run_dir / CHECKPOINT_DIR,
        agent=spec.name,
        env=data.env,
        include_optimizer=False,
        extra={"pretrain": {"demos": data.demos, "samples": n, "epochs": config.epochs, "final_bc_loss": final_loss}},
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


def print_summary(result: PretrainResult) -> None:
    """A few lines: data, loss, checkpoint."""
    print(
        f"pretrained on {result.demos} demos ({result.samples} steps) of {result.env_id} tasks {list(result.task_ids)} "
        f"({result.obs_mode}), {result.epochs} epochs in {result.wall_time_s:.1f}s\n"
        f"bc loss {result.first_loss:.4f} (epoch 1) -> {result.final_loss:.4f}\n"
        f"checkpoint: {result.checkpoint} (use: cli.py train --init-from {result.checkpoint})"
    )


def _progress(enabled: bool, epochs: int) -> Any:
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("pretrain"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TimeElapsedColumn(),
    )
    progress.add_task("pretrain", total=epochs, loss=float("nan"))
    progress.start()
    return progress


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value
