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
    """Export collected episodes: LIBERO files (one <task name>_demo.hdf5 per task, plus manifest.json), a
    LeRobotDataset v3.0 (--format lerobot) or an RLDS dataset as OpenVLA reads LIBERO (--format rlds); every
    export carries a dataset card (README.md) and dataset_statistics.json (docs/data.md)."""

    collection: Positional[str]
    """Folder that `collect` wrote (--format lerobot/rlds also take a LIBERO HDF5 file or a folder of them)."""
    out: str | None = None
    """Output folder (default: the collection folder; for --format lerobot/rlds COLLECTION/<format>, or
    FILE_<format> beside an HDF5 file). A LeRobot or RLDS export needs a new or empty folder."""
    format: Literal["hdf5", "lerobot", "rlds"] = "hdf5"
    """LIBERO HDF5 files, a LeRobotDataset (LeRobot's pi0 / SmolVLA / GR00T trainers), or an RLDS dataset (TFDS
    layout of OpenVLA's libero_*_no_noops sets: OpenVLA, OpenVLA-OFT, Octo)."""
    compression: Literal["none", "gzip", "lzf"] = "none"
    """HDF5 compression of the arrays (LIBERO's own files are uncompressed); --format hdf5 only."""
    only_success: bool = False
    """Export only successful episodes."""
    filter_noops: bool = False
    """Drop no-op steps as OpenVLA's LIBERO regeneration does (arm-delta norm < 1e-4 and gripper command
    unchanged from the last kept action); reports the steps each episode lost and never empties one."""
    image_size: int | None = None
    """--format lerobot/rlds: render both cameras at this size (e.g. 256, as OpenVLA's sets) from the stored
    states, so that state-only collections (--no-images) export with images; default: the stored images."""
    video: bool = True
    """--format lerobot: camera images as MP4 (AV1, LeRobot's default); --no-video stores PNG frames in the
    parquet files instead (exact pixels, larger)."""
    settle_steps: bool = False
    """--format lerobot/rlds: keep each demo's leading settle steps (dropped by default: the VLA envs run them
    before the policy's first observation)."""
    name: str | None = None
    """--format rlds: TFDS dataset name, snake case (default: the output folder's name, e.g.
    libero_goal_no_noops); the dataset is OUT/NAME/1.0.0."""
    image_encoding: Literal["jpeg", "png"] = "jpeg"
    """--format rlds: images as JPEG (quality 95, as OpenVLA's sets) or PNG (exact pixels, larger)."""


def command_line(config: ExportConfig) -> str:
    """The ``libero-gym export`` command that gives ``config``: the positional, then every non-default flag."""
    import shlex

    words = ["libero-gym", "export", config.collection]
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if field.name == "collection" or value == field.default:
            continue
        flag = "--" + field.name.replace("_", "-")
        if isinstance(value, bool):
            words.append(flag if value else "--no-" + field.name.replace("_", "-"))
        else:
            words += [flag, str(value)]
    return shlex.join(words)


def export(config: ExportConfig) -> int:
    """Run the export; returns the exit code."""
    from rich.console import Console

    from libero_gym.data.export import export_collection

    _check_export(config)
    if config.format in ("lerobot", "rlds"):
        return _export_vla(config)
    from pathlib import Path

    if Path(config.collection).is_file():
        raise InvalidInputError(f"{config.collection}: is a file; --format hdf5 exports a collection folder "
                                "(--format lerobot and rlds also take LIBERO HDF5 files)")
    out = config.out if config.out is not None else config.collection
    with folder_lock(out, "export folder"):  # one writer per folder, before anything is written
        result = export_collection(
            config.collection, config.out,
            compression=None if config.compression == "none" else config.compression,
            only_success=config.only_success, filter_noops=config.filter_noops, command=command_line(config),
        )
    console = Console()
    for path in result.files:
        console.print(f"wrote {path}")
    console.print(f"{result.episodes} demos, {result.frames} steps; manifest {result.manifest}")
    if config.filter_noops:
        from libero_gym.data.card import noop_summary

        console.print(f"no-op filter: {noop_summary(result.records)} (per episode: {result.card})")
    return 0


_FORMAT_ONLY: dict[str, tuple[tuple[str, ...], str]] = {
    "compression": (("hdf5",), "--compression applies to --format hdf5 only (LeRobot parquet files use snappy)"),
    "video": (("lerobot",), "--no-video applies to --format lerobot only"),
    "settle_steps": (("lerobot", "rlds"), "--settle-steps applies to --format lerobot and rlds only"),
    "image_size": (("lerobot", "rlds"), "--image-size applies to --format lerobot and rlds only (collect "
                                        "--image-size N renders HDF5 images)"),
    "name": (("rlds",), "--name applies to --format rlds only"),
    "image_encoding": (("rlds",), "--image-encoding applies to --format rlds only"),
}
"""Flags that only some formats take: field -> (formats, error)."""


def _check_export(config: ExportConfig) -> None:
    """Raise InvalidInputError, before anything is read or written, for flags the format does not take."""
    defaults = {field.name: field.default for field in dataclasses.fields(ExportConfig)}
    for key, (formats, message) in _FORMAT_ONLY.items():
        if config.format not in formats and getattr(config, key) != defaults[key]:
            raise InvalidInputError(f"{message}; formats are hdf5, lerobot, rlds")
    if config.image_size is not None and not 16 <= config.image_size <= 1024:
        raise InvalidInputError(f"image_size must be in [16, 1024], got {config.image_size}")


def _export_vla(config: ExportConfig) -> int:
    from pathlib import Path

    from rich.console import Console

    source = Path(config.collection)
    suffix = config.format
    default = source.with_name(source.stem + "_" + suffix) if source.is_file() else source / suffix
    out = Path(config.out) if config.out is not None else default
    console = Console()
    # No folder lock: the dataset is written into a temporary folder and renamed onto OUT,
    # which fails for all but the first of two exports racing for the same OUT.
    if config.format == "lerobot":
        from libero_gym.data.lerobot import export_lerobot

        result = export_lerobot(source, out, video=config.video, settle_steps=config.settle_steps,
                                only_success=config.only_success, filter_noops=config.filter_noops,
                                image_size=config.image_size, command=command_line(config))
        images = "MP4" if result.video else "PNG in parquet"
        console.print(f"wrote LeRobotDataset v3.0 {result.root}: {result.episodes} episodes, {result.frames} frames, "
                      f"{len(result.tasks)} task(s), images as {images}")
        root, records = result.root, result.records
    else:
        from libero_gym.data.pipeline import StepOptions
        from libero_gym.data.rlds import check_name, export_rlds

        name = check_name(config.name if config.name is not None else _snake(out.resolve().name))
        options = StepOptions(settle_steps=config.settle_steps, filter_noops=config.filter_noops,
                              image_size=config.image_size)
        rlds = export_rlds(source, out, name=name, options=options, only_success=config.only_success,
                           image_encoding=config.image_encoding, command=command_line(config))
        console.print(f"wrote RLDS dataset {rlds.builder_dir}: {rlds.episodes} episodes, {rlds.steps} steps, "
                      f"{rlds.shards} shard(s)")
        root, records = rlds.root, rlds.records
    if config.filter_noops:
        from libero_gym.data.card import noop_summary

        console.print(f"no-op filter: {noop_summary(records)} (per episode: {root / 'README.md'})")
    console.print(f"dataset card {root / 'README.md'}")
    return 0


def _snake(text: str) -> str:
    """A folder name as a TFDS dataset name: lower case, runs of other characters as ``_``."""
    import re

    name = re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
    return name if name[:1].isalpha() else f"libero_{name}".rstrip("_")


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
