"""Configs and functions behind ``cli.py collect``, ``cli.py export`` and ``cli.py stats``.

Light at import (no torch, MuJoCo, LIBERO or h5py): the work happens in
:mod:`libero_gym.data.collect`, :mod:`libero_gym.data.export` and
:mod:`libero_gym.data.stats`, imported inside the functions.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Literal

from tyro.conf import Positional

from libero_gym.backend import BackendConfig
from libero_gym.data.policies import PolicySpec, check_policy_spec, policy_factory
from libero_gym.data.provenance import provenance
from libero_gym.errors import InvalidInputError
from libero_gym.locking import folder_lock
from libero_gym.registration import lookup_env, resolve_env

KEEP_CHOICES = ("all", "success")


@dataclasses.dataclass(frozen=True)
class CollectConfig(BackendConfig):
    """Run a policy on LIBERO tasks in parallel workers and write LIBERO-layout episodes.

    Episodes go to OUT/episodes as they finish (an interrupted run continues with
    --resume); at the end they are exported to one OUT/<task name>_demo.hdf5 per task.
    With --backend ray the workers are Ray actors that write OUT/episodes themselves (on a
    cluster, OUT must be on a filesystem every node mounts at the same path).
    """

    out: str
    """Output folder."""
    policy: str = "scripted"
    """What acts: random (uniform actions), scripted (the privileged expert), checkpoint (a trained agent of
    `cli.py agents`, from --checkpoint), or a policy class as module:Class."""
    checkpoint: str | None = None
    """Checkpoint folder (or run folder) of a trained agent, for --policy checkpoint."""
    sampling: Literal["deterministic", "stochastic", "zero-init"] = "deterministic"
    """How a trained agent acts (--policy checkpoint): its evaluation action (SB3 ``deterministic=True``; for
    DiffusionPPO, DPPO's: random x_T, no exploration noise), its training-rollout sampling (stochastic), or
    (diffusion-ppo only) zero-init: x_T = 0 and eta = 0, each chunk a function of the observation."""
    env: str = "LIBERO-Goal-v0"
    """libero-gym env id (suite id or single-task id)."""
    task_id: tuple[int, ...] = (0,)
    """Task index(es) in the suite; episode i plays task_id[i % len(task_id)]."""
    episodes: int = 10
    """Episodes to collect (or successes, with --until-successes)."""
    until_successes: bool = False
    """Run until --episodes successes instead of --episodes episodes."""
    max_episodes: int | None = None
    """Give up after this many episodes (default: 20 x --episodes with --until-successes)."""
    keep: Literal["all", "success"] = "success"
    """Keep every episode (each flagged with its success) or successes only."""
    num_workers: int = 1
    """Workers (processes, or Ray actors with --backend ray), one simulator each."""
    image_size: int = 128
    """Height and width of the stored agentview and wrist images (LIBERO's are 128)."""
    images: bool = True
    """Store camera images (rendered from stored states for state-based policies)."""
    max_episode_steps: int | None = None
    """Episode step limit (default: the suite's, libero_gym.suites.MAX_EPISODE_STEPS)."""
    seed: int = 0
    """Episode i is reset with seed + i."""
    action_noise: float = 0.0
    """Exploration noise (std, action units) added to the arm part of the executed actions, correlated over ~0.5 s;
    the policy's own commands are stored as expert_actions, which pretrain clones (DART). 0: off."""
    resume: bool = False
    """Continue an interrupted collection in --out."""
    export: bool = True
    """Export the LIBERO files at the end."""
    progress: bool = True
    """Show a progress bar."""


def collect(config: CollectConfig) -> int:
    """Run the collection (and the export); returns the exit code."""
    from rich.console import Console

    from libero_gym.data.collect import CollectPlan, run_collection
    from libero_gym.data.export import export_collection

    config.check_backend()
    factory = policy_factory(config.policy)
    lookup_env(config.env)  # an unknown id is the first error
    if config.episodes < 1:
        raise InvalidInputError(f"episodes must be >= 1, got {config.episodes}")
    if config.num_workers < 1:
        raise InvalidInputError(f"num_workers must be >= 1, got {config.num_workers}")
    policy = PolicySpec(config.policy, config.checkpoint, sampling=config.sampling, seed=config.seed)
    check_policy_spec(policy, factory)  # once, here, before any worker starts (each would fail on it)
    if config.max_episode_steps is not None and config.max_episode_steps < 1:
        raise InvalidInputError(f"max_episode_steps must be >= 1, got {config.max_episode_steps}")
    if not 16 <= config.image_size <= 1024:
        raise InvalidInputError(f"image_size must be in [16, 1024], got {config.image_size}")
    _, task_ids = resolve_env(config.env, config.task_id)
    config.check_reachable()  # an unreachable --ray-address fails before the folder is touched
    max_episodes = config.max_episodes or (20 * config.episodes if config.until_successes else config.episodes)
    if max_episodes < config.episodes:
        raise InvalidInputError(f"max_episodes must be >= episodes ({config.episodes}), got {max_episodes}")
    if not 0.0 <= config.action_noise <= 1.0:
        raise InvalidInputError(f"action_noise must be in [0, 1], got {config.action_noise}")
    plan = CollectPlan(
        env_id=config.env,
        task_ids=task_ids,
        out_dir=config.out,
        policy=policy,
        episodes=config.episodes,
        until_successes=config.until_successes,
        keep=config.keep,
        image_size=config.image_size,
        images=config.images,
        max_episode_steps=config.max_episode_steps,
        seed=config.seed,
        max_episodes=max_episodes,
        action_noise=config.action_noise,
        provenance=provenance(
            agent=config.policy, checkpoint=config.checkpoint, env_id=config.env, task_ids=task_ids,
            seed=config.seed, image_size=config.image_size, max_episode_steps=config.max_episode_steps,
            keep=config.keep, sampling=config.sampling if config.policy == "checkpoint" else None,
        ),
        policy_factory=factory,
    )
    console = Console()
    with folder_lock(config.out, "collection folder"):  # one writer per folder, before anything is written
        result = run_collection(plan, num_workers=config.num_workers, resume=config.resume, progress=config.progress,
                                backend=config.backend, ray_address=config.ray_address)
        console.print(
            f"collected {result.finished} episodes ({result.successes} successes, {len(result.kept)} kept, "
            f"{result.dropped} dropped) in {result.seconds:.0f} s -> {result.out_dir}"
        )
        if config.export and result.kept:
            exported = export_collection(result.out_dir)
            for path in exported.files:
                console.print(f"wrote {path}")
    goal = result.successes if config.until_successes else result.finished
    return 0 if goal >= config.episodes else 1


@dataclasses.dataclass(frozen=True)
class ExportConfig:
    """Export collected episodes: LIBERO files (one <task name>_demo.hdf5 per task, plus manifest.json)
    or, with --format lerobot, a LeRobotDataset v3.0 (docs/data.md, LeRobot export)."""

    collection: Positional[str]
    """Folder that `collect` wrote (--format lerobot also takes a LIBERO HDF5 file or a folder of them)."""
    out: str | None = None
    """Output folder (default: the collection folder; for --format lerobot COLLECTION/lerobot, or FILE_lerobot
    beside an HDF5 file). A LeRobot export needs a new or empty folder."""
    format: Literal["hdf5", "lerobot"] = "hdf5"
    """LIBERO HDF5 files, or a LeRobotDataset (what LeRobot's pi0 / SmolVLA / GR00T trainers load)."""
    compression: Literal["none", "gzip", "lzf"] = "none"
    """HDF5 compression of the arrays (LIBERO's own files are uncompressed); --format hdf5 only."""
    only_success: bool = False
    """Export only successful episodes."""
    video: bool = True
    """--format lerobot: camera images as MP4 (AV1, LeRobot's default); --no-video stores PNG frames in the
    parquet files instead (exact pixels, larger)."""
    settle_steps: bool = False
    """--format lerobot: keep each demo's leading settle steps (dropped by default: LeRobot's LIBERO env
    runs them before the policy's first observation)."""


def export(config: ExportConfig) -> int:
    """Run the export; returns the exit code."""
    from rich.console import Console

    from libero_gym.data.export import export_collection

    if config.format == "lerobot":
        return _export_lerobot(config)
    if not config.video or config.settle_steps:
        from libero_gym.errors import InvalidInputError

        raise InvalidInputError("--no-video and --settle-steps apply to --format lerobot only")
    out = config.out if config.out is not None else config.collection
    with folder_lock(out, "export folder"):  # one writer per folder, before anything is written
        result = export_collection(
            config.collection, config.out,
            compression=None if config.compression == "none" else config.compression,
            only_success=config.only_success,
        )
    console = Console()
    for path in result.files:
        console.print(f"wrote {path}")
    console.print(f"{result.episodes} demos, {result.frames} steps; manifest {result.manifest}")
    return 0


def _export_lerobot(config: ExportConfig) -> int:
    from pathlib import Path

    from rich.console import Console

    from libero_gym.data.lerobot import export_lerobot
    from libero_gym.errors import InvalidInputError

    if config.compression != "none":
        raise InvalidInputError("--compression applies to --format hdf5 only (LeRobot parquet files use snappy)")
    source = Path(config.collection)
    default = source.with_name(source.stem + "_lerobot") if source.is_file() else source / "lerobot"
    # No folder lock: the dataset is written into a temporary folder and renamed onto OUT,
    # which fails for all but the first of two exports racing for the same OUT.
    result = export_lerobot(source, Path(config.out) if config.out is not None else default, video=config.video,
                            settle_steps=config.settle_steps, only_success=config.only_success)
    images = "MP4" if result.video else "PNG in parquet"
    Console().print(f"wrote LeRobotDataset v3.0 {result.root}: {result.episodes} episodes, {result.frames} frames, "
                    f"{len(result.tasks)} task(s), images as {images}")
    return 0


@dataclasses.dataclass(frozen=True)
class StatsConfig:
    """Compare LIBERO-layout datasets: episodes, success, length, smoothness, consistency, path length."""

    paths: Positional[tuple[str, ...]]
    """LIBERO HDF5 files (ours or LIBERO's own) or folders of them, compared side by side."""
    plots: str | None = "stats_plots"
    """Folder for PNG plots (action traces, per-metric bars); empty string for none."""
    json_out: str | None = None
    """Also write the metrics as JSON here."""


def stats(config: StatsConfig) -> int:
    """Print the comparison table and write plots; returns the exit code."""
    from libero_gym.data.stats import run_stats

    run_stats(list(config.paths), plots_dir=config.plots or None, json_out=config.json_out)
    return 0


COMMANDS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "collect": (CollectConfig, collect),
    "export": (ExportConfig, export),
    "stats": (StatsConfig, stats),
}
"""Subcommands ``cli.py`` adds: name -> (config class, function)."""
