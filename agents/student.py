"""``student``: one multi-task policy for every task of a suite, behaviour-cloned from a mix of datasets.

The third stage of the data pipeline: a student trained on generated data measures a
data source by the downstream success it buys. The student is one policy for all the
tasks of a suite; it knows the task from the ``task_index`` of the observation, whose
one-hot enters the first linear layer of the encoder, i.e. a learned task embedding
(one column of that layer per task; LIBERO's lifelong-learning study found task
embeddings as good as language embeddings).

Data (``--dataset``, any mix, one suite):

* a ``generate`` output folder: every ``OUT/tasks/*/export/*.hdf5``;
* a ``collect`` output folder: its exported ``OUT/*_demo.hdf5`` files;
* a LIBERO-layout HDF5 file, or a folder of them (e.g. LIBERO's ``libero_goal/``);
* a LeRobot v3 folder written by ``export --format lerobot``: its episodes are read
  back from the HDF5 demos its ``meta/episodes`` provenance names (LeRobot's features
  carry no simulator state, which the state observations are regenerated from).

Episodes are grouped by task and, with ``--episodes-per-task N``, N are drawn per task
without replacement by a generator seeded with ``(seed, task index)``: the same seed
draws the same episodes whatever the other tasks hold, so two sources are compared at
equal size. A task with fewer episodes than N gives all it has (reported in
``draw.json`` and the summary). Failed episodes are left out unless
``--no-only-success``.

Training reuses :mod:`agents.pretrain`: observations are regenerated for the student's
obs mode by replaying the stored MuJoCo states, the chunk at step t is
``actions[t : t + Ta]``, and :func:`agents.pretrain.fit_bc` runs AdamW with warm-up and
cosine decay and an EMA of the weights. The heads are those of the RL agents, so a
student checkpoint is also a start for ``train --init-from``: ``diffusion`` (the
diffusion policy of ``diffusion-ppo``, denoising loss) and ``gaussian`` (the
Gaussian of ``gaussian-ppo``, mean squared error of its mean; one action per step).
Optional Gaussian input noise (``--obs-noise``) perturbs the low-dimensional
observations of every minibatch, in units of each dimension's std over the data.

Output (``RUN_DIR``): ``config.json``, ``draw.json`` (the episodes drawn per task),
``logs/``, ``checkpoint/`` (evaluate with ``eval --checkpoint RUN_DIR/checkpoint
--task-id all``).

Shapes: N samples, Ta chunk length, Da = 7 action dims, D a low-dimensional observation's size.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from libero_gym.errors import DatasetError, InvalidInputError

if TYPE_CHECKING:
    import torch

    from libero_gym.data.dataset import Episode

CHECKPOINT_DIR = "checkpoint"
HEADS: tuple[str, ...] = ("diffusion", "gaussian")
"""``--head`` choices: the policy of ``diffusion-ppo`` or of ``gaussian-ppo``."""
HEAD_AGENTS = {"diffusion": "diffusion-ppo", "gaussian": "gaussian-ppo"}
NOISY_KEYS = ("proprio", "object")
"""Observations ``--obs-noise`` perturbs (the low-dimensional ones; images are left alone)."""
STD_FLOOR = 1e-3
"""Floor on a dimension's std for ``--obs-noise`` (constant dimensions get a little noise, not none)."""


@dataclasses.dataclass(frozen=True)
class StudentConfig:
    """Train one multi-task student (all tasks of a suite, conditioned on the task) by behaviour cloning from a
    mix of datasets."""

    dataset: tuple[Path, ...]
    """Datasets to mix (one suite): generate output folders (OUT/tasks/*/export/*.hdf5), collect output folders,
    LIBERO-layout HDF5 files or folders of them, LeRobot v3 folders written by `export --format lerobot`."""
    run_dir: Path
    """Output folder: config.json, draw.json, logs/, checkpoint/."""
    episodes_per_task: int | None = None
    """Episodes drawn per task (seeded, without replacement), so sources compare at equal size; None: all."""
    only_success: bool = True
    """Leave out episodes recorded as failures (episodes with no success flag, e.g. LIBERO's own, are kept)."""
    env: str | None = None
    """Suite env id (e.g. LIBERO-Goal-v0); default the suite of the datasets."""
    obs_mode: Literal["state", "pixels"] = "state"
    """state: proprio + object state (CPU); pixels: both cameras through the FiLM-ResNet encoder (a GPU)."""
    image_size: int | None = None
    """Camera size for pixels; default the size of the datasets' stored images (else 128)."""
    head: Literal["diffusion", "gaussian"] = "diffusion"
    """diffusion: diffusion policy over action chunks (diffusion-ppo's); gaussian: Gaussian MLP trained by mean
    squared error, one action per step (gaussian-ppo's)."""
    horizon_steps: int = 8
    """Ta, actions per chunk of the diffusion head, all executed before re-planning (diffusion_policy: 8)."""
    mlp_dims: tuple[int, ...] = (512, 512, 512)
    """Widths of the head's MLP (diffusion: residual noise-prediction MLP; gaussian: net_arch)."""
    encoder_dims: tuple[int, ...] = (256, 256)
    """Widths of the state encoder's MLP (diffusion head)."""
    obs_noise: float = 0.0
    """Std of Gaussian noise added to proprio and object inputs while training, in units of each dimension's std
    over the data; 0: none."""
    epochs: int = 300
    """Passes over the drawn demonstrations."""
    batch_size: int = 256
    """Minibatch size (diffusion_policy's for state-based tasks)."""
    learning_rate: float = 3e-4
    """AdamW learning rate (diffusion_policy's state-based configs use 1e-4 over many more epochs)."""
    weight_decay: float = 1e-6
    """AdamW weight decay (diffusion_policy default)."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """Learning rate after the warm-up: cosine decay to 0 over the run, or constant."""
    lr_warmup_steps: int = 500
    """Optimizer steps of linear warm-up, at most a tenth of the run (diffusion_policy: 500)."""
    ema_max_decay: float = 0.9999
    """Max decay of the weights' EMA, which the checkpoint holds (diffusion_policy's EMAModel); 0: off."""
    seed: int = 0
    """Seed of the per-task draw, the network's initialisation, shuffling and noise."""
    device: str = "auto"
    """torch device: auto, cpu, cuda."""
    torch_threads: int = 1
    """CPU threads of torch (see train --torch-threads)."""
    progress: bool = True
    """Show a progress bar."""

    def validate(self) -> None:
        """Raise :class:`InvalidInputError` for values no run can use."""
        if not self.dataset:
            raise InvalidInputError("--dataset needs at least one dataset")
        if self.head not in HEADS:
            raise InvalidInputError(f"head must be one of {list(HEADS)}, got {self.head!r}")
        if self.obs_mode not in ("state", "pixels"):
            raise InvalidInputError(f"obs_mode must be one of ['state', 'pixels'], got {self.obs_mode!r}")
        for name in ("epochs", "batch_size", "horizon_steps", "torch_threads"):
            if getattr(self, name) < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.episodes_per_task is not None and self.episodes_per_task < 1:
            raise InvalidInputError(f"episodes_per_task must be >= 1 or None, got {self.episodes_per_task}")
        if self.image_size is not None and self.image_size < 8:
            raise InvalidInputError(f"image_size must be >= 8, got {self.image_size}")
        if not self.mlp_dims or min(self.mlp_dims) < 1 or not self.encoder_dims or min(self.encoder_dims) < 1:
            raise InvalidInputError(
                f"mlp_dims and encoder_dims must be positive sizes, got {self.mlp_dims}, {self.encoder_dims}"
            )
        if self.learning_rate <= 0 or self.obs_noise < 0 or self.lr_warmup_steps < 0:
            raise InvalidInputError(
                f"learning_rate must be > 0, obs_noise and lr_warmup_steps >= 0, got "
                f"{self.learning_rate}, {self.obs_noise}, {self.lr_warmup_steps}"
            )
        if not 0 <= self.ema_max_decay < 1:
            raise InvalidInputError(f"ema_max_decay must be in [0, 1), got {self.ema_max_decay}")

    def agent_config(self) -> Any:
        """The typed config of the head's agent (``diffusion-ppo`` or ``gaussian-ppo``)."""
        from agents.agent_configs import DiffusionPolicyConfig, DiffusionPPOConfig, EncoderConfig, GaussianPPOConfig

        if self.head == "gaussian":
            return GaussianPPOConfig(net_arch=tuple(self.mlp_dims))
        encoder = EncoderConfig(state_dims=tuple(self.encoder_dims))
        policy = DiffusionPolicyConfig(horizon_steps=self.horizon_steps, mlp_dims=tuple(self.mlp_dims), encoder=encoder)
        return DiffusionPPOConfig(policy=policy)


# ---------------------------------------------------------------------- sources and the draw
@dataclasses.dataclass(frozen=True)
class EpisodeRef:
    """One demonstration: where it is stored and which task it plays."""

    file: Path
    """LIBERO-layout HDF5 file."""
    demo: str
    """Its ``data/demo_i`` key."""
    suite: str
    task_index: int
    source: str
    """The ``--dataset`` entry it came from."""


def source_files(source: str | Path) -> list[Path]:
    """The LIBERO-layout HDF5 files behind one ``--dataset`` entry (not LeRobot folders).

    Raises:
        DatasetError: no such path, or no HDF5 files where the layout says they should be.
    """
    path = Path(source)
    if not path.exists():
        raise DatasetError(f"dataset {str(path)!r} does not exist")
    if path.is_file():
        return [path]
    if (path / "tasks").is_dir():  # generate output
        files = sorted(path.glob("tasks/*/export/*.hdf5"))
        if not files:
            raise DatasetError(
                f"{path}: a generate folder with no exported datasets (tasks/*/export/*.hdf5); run its export stage"
            )
        return files
    files = sorted(p for p in path.glob("*.hdf5") if not p.name.startswith("."))
    if not files:
        hint = " (a collect folder: export it, or collect with --export)" if (path / "episodes").is_dir() else ""
        raise DatasetError(f"{path}: no *.hdf5 datasets{hint}")
    return files


def is_lerobot(path: Path) -> bool:
    """True for a LeRobot v3 dataset folder (``meta/info.json``)."""
    return path.is_dir() and (path / "meta" / "info.json").is_file()


def lerobot_episodes(path: Path) -> list[tuple[Path, str]]:
    """The (HDF5 file, demo key) behind each episode of a LeRobot v3 folder that ``export --format lerobot`` wrote.

    Raises:
        DatasetError: not v3, no provenance columns (a LeRobot dataset from elsewhere), or a source file gone.
    """
    import pyarrow.parquet as pq

    from libero_gym.data.lerobot import CODEBASE_VERSION, PROVENANCE_PREFIX

    info = json.loads((path / "meta" / "info.json").read_text())
    if info.get("codebase_version") != CODEBASE_VERSION:
        version = info.get("codebase_version")
        raise DatasetError(f"{path}: LeRobot {version} dataset; the student reads {CODEBASE_VERSION}")
    files = sorted((path / "meta" / "episodes").glob("chunk-*/file-*.parquet"))
    file_key, demo_key = PROVENANCE_PREFIX + "source_file", PROVENANCE_PREFIX + "source_demo"
    out: list[tuple[Path, str]] = []
    for file in files:
        table = pq.read_table(file)
        if file_key not in table.column_names:
            raise DatasetError(
                f"{path}: no {file_key} column; the student replays simulator states, which only LeRobot folders "
                "written by `export --format lerobot` point back to"
            )
        out += list(zip(map(Path, table.column(file_key).to_pylist()), table.column(demo_key).to_pylist()))
    missing = sorted({str(f) for f, _ in out if not f.is_file()})
    if missing:
        raise DatasetError(f"{path}: its source demos are gone ({missing[0]}...); they hold the simulator states")
    if not out:
        raise DatasetError(f"{path}: no episodes")
    return out


def scan_episodes(sources: Sequence[str | Path], only_success: bool = True) -> list[EpisodeRef]:
    """Every usable demonstration of the sources, in a fixed order (source, file, demo).

    Raises:
        DatasetError: unreadable files, a file whose task is unknown, or no episodes at all.
    """
    import h5py

    from libero_gym.data.dataset import PROVENANCE_ATTR, _attr, demo_keys, validate_dataset
    from libero_gym.data.libero_metadata import resolve_task

    refs: list[EpisodeRef] = []
    for source in sources:
        path = Path(source)
        pairs: list[tuple[Path, str | None]]
        if is_lerobot(path):
            pairs = [(f, d) for f, d in lerobot_episodes(path)]
        else:
            pairs = [(f, None) for f in source_files(path)]
        tasks: dict[Path, Any] = {}
        for file, wanted in pairs:
            if file not in tasks:
                validate_dataset(file, require_images=False)
                with h5py.File(file, "r") as handle:
                    attrs = handle["data"].attrs
                    provenance = json.loads(_attr(attrs[PROVENANCE_ATTR])) if PROVENANCE_ATTR in attrs else {}
                    tasks[file] = resolve_task(provenance, str(_attr(attrs.get("bddl_file_name", ""))))
                if tasks[file] is None:
                    raise DatasetError(
                        f"{file}: cannot tell which libero-gym task it holds (problem_info/bddl_file_name)"
                    )
            task = tasks[file]
            with h5py.File(file, "r") as handle:
                data = handle["data"]
                for demo in [wanted] if wanted is not None else demo_keys(data):
                    if demo not in data:
                        raise DatasetError(f"{file}: no data/{demo}")
                    success = data[demo].attrs.get("success")
                    if only_success and success is not None and not bool(_attr(success)):
                        continue
                    refs.append(EpisodeRef(file, str(demo), task.suite, task.index, str(source)))
    if not refs:
        raise DatasetError(f"no {'successful ' if only_success else ''}episodes in {[str(s) for s in sources]}")
    suites = sorted({r.suite for r in refs})
    if len(suites) > 1:
        raise DatasetError(f"the datasets mix suites {suites}; one student is trained per suite")
    return refs


def draw_episodes(refs: Sequence[EpisodeRef], per_task: int | None, seed: int) -> dict[int, list[EpisodeRef]]:
    """Task index -> the episodes drawn for it: ``per_task`` without replacement (all when fewer, or None).

    Each task's draw uses its own generator seeded ``(seed, task index)``, so it depends only
    on that task's episodes (in :func:`scan_episodes` order) and the seed.
    """
    by_task: dict[int, list[EpisodeRef]] = {}
    for ref in refs:
        by_task.setdefault(ref.task_index, []).append(ref)
    drawn: dict[int, list[EpisodeRef]] = {}
    for task in sorted(by_task):
        pool = by_task[task]
        if per_task is None or per_task >= len(pool):
            drawn[task] = list(pool)
            continue
        index = np.random.default_rng([seed, task]).choice(len(pool), size=per_task, replace=False)
        drawn[task] = [pool[i] for i in sorted(index)]
    return drawn


def stored_image_size(refs: Sequence[EpisodeRef]) -> int | None:
    """Height of the stored agentview images of the first episode that has them, else None."""
    import h5py

    for ref in refs:
        with h5py.File(ref.file, "r") as handle:
            obs = handle["data"][ref.demo].get("obs")
            if obs is not None and "agentview_rgb" in obs:
                return int(obs["agentview_rgb"].shape[1])
    return None


# ---------------------------------------------------------------------- observations
@dataclasses.dataclass
class StudentData:
    """Regenerated observations and action chunks of every drawn demo step."""

    observations: dict[str, np.ndarray]
    """key -> [N, ...] in the env's observation dtypes."""
    chunks: np.ndarray
    """[N, Ta, Da] float32 in [-1, 1]."""
    episodes: dict[int, int]
    """Task index -> demos used."""
    observation_space: Any
    action_space: Any


def _read_episodes(refs: Sequence[EpisodeRef]) -> Iterator[Episode]:
    """The drawn episodes, one file open at a time (state arrays only)."""
    import h5py

    from libero_gym.data.dataset import _read_episode

    by_file: dict[Path, list[str]] = {}
    for ref in refs:
        by_file.setdefault(ref.file, []).append(ref.demo)
    for file, demos in by_file.items():
        with h5py.File(file, "r") as handle:
            for demo in demos:
                yield _read_episode(handle["data"][demo], images=False)


def load_student_data(
    env_id: str, drawn: dict[int, list[EpisodeRef]], obs_mode: str, image_size: int, horizon: int, seed: int
) -> StudentData:
    """Replay every drawn episode in its task (one env per task) and build (observation, chunk) pairs.

    Observations come from :func:`libero_gym.data.replay.env_observations`, chunks from
    :func:`agents.pretrain.action_chunks`, exactly as ``pretrain`` builds them.
    """
    from agents.pretrain import action_chunks
    from libero_gym.data.replay import env_observations
    from libero_gym.env_config import EnvConfig

    observations: dict[str, list[np.ndarray]] = {}
    chunks: list[np.ndarray] = []
    spaces_: tuple[Any, Any] | None = None
    for task, refs in drawn.items():
        env = EnvConfig(env_id, (task,), obs_mode, image_size if obs_mode != "state" else None).make()
        try:
            env.reset(seed=seed)  # builds the task's simulator
            spaces_ = spaces_ or (env.observation_space, env.action_space)
            for episode in _read_episodes(refs):
                restore = "init_state_id" in episode.attrs  # our demos record their scene; LIBERO's do not
                steps = episode.policy_steps  # the recorded settle steps are the env's reset, not a decision
                for key, value in env_observations(env, episode, restore=restore).items():
                    observations.setdefault(key, []).extend(value[steps])
                chunks.append(action_chunks(episode.actions[steps], horizon))
        finally:
            env.close()
    assert spaces_ is not None
    return StudentData(
        {key: np.stack(values) for key, values in observations.items()},
        np.concatenate(chunks),
        {task: len(refs) for task, refs in drawn.items()},
        *spaces_,
    )


class ObservationNoise:
    """Adds N(0, (scale * std_d)^2) to each low-dimensional observation dimension d of a minibatch.

    The stds are those of the training data (floored at :data:`STD_FLOOR`); the noise comes
    from a seeded generator, so a run is reproducible.
    """

    def __init__(self, observations: dict[str, np.ndarray], scale: float, seed: int, device: Any) -> None:
        import torch

        self.stds = {
            key: torch.as_tensor(np.maximum(observations[key].astype(np.float64).std(axis=0), STD_FLOOR) * scale,
                                 dtype=torch.float32, device=device)
            for key in NOISY_KEYS if key in observations
        }  # fmt: skip
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def __call__(self, observation: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """The minibatch (key -> [B, D]) with noise on the low-dimensional keys."""
        import torch

        out = dict(observation)
        for key, std in self.stds.items():
            value = observation[key].float()
            noise = torch.randn(value.shape, generator=self.generator, device=value.device, dtype=value.dtype)
            out[key] = value + noise * std
        return out


# ---------------------------------------------------------------------- training
@dataclasses.dataclass(frozen=True)
class StudentResult:
    """What a finished student run reports."""

    run_dir: Path
    checkpoint: Path
    env_id: str
    episodes: dict[int, int]
    """Task index -> demos trained on."""
    samples: int
    epochs: int
    first_loss: float
    final_loss: float
    wall_time_s: float


def train_student(config: StudentConfig) -> StudentResult:
    """Draw, replay and behaviour-clone the student; see the module docstring.

    Raises:
        InvalidInputError: bad config values, or a run folder that already holds a student.
        DatasetError: unusable datasets (missing, unknown task, mixed suites, nothing left after filtering).
        FolderInUseError: another process is writing the run folder.
    """
    from libero_gym.locking import folder_lock

    config.validate()
    with folder_lock(config.run_dir, "run folder"):
        return _train_locked(config)


def _train_locked(config: StudentConfig) -> StudentResult:
    """:func:`train_student`, its run folder locked."""
    import torch
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.checkpoint import save_checkpoint
    from agents.pretrain import fit_bc
    from agents.registry import SpacesOnlyEnv, build_agent, resolve_agent
    from agents.run_folder import make_logger
    from libero_gym import suites
    from libero_gym.atomic_files import jsonable, write_json_atomic
    from libero_gym.env_config import EnvConfig
    from libero_gym.registration import lookup_env, suite_env_id

    torch.set_num_threads(config.torch_threads)
    run_dir = Path(config.run_dir)
    if (run_dir / CHECKPOINT_DIR).exists():
        raise InvalidInputError(f"{str(run_dir)!r} already holds a student checkpoint; choose another --run-dir")
    start = time.perf_counter()
    refs = scan_episodes(config.dataset, config.only_success)
    suite = refs[0].suite
    env_id = config.env or suite_env_id(suite)
    env_suite, single = lookup_env(env_id)
    if env_suite != suite or single is not None:
        raise InvalidInputError(f"env must be the suite id {suite_env_id(suite)} of the datasets, got {env_id}")
    drawn = draw_episodes(refs, config.episodes_per_task, config.seed)
    image_size = config.image_size or stored_image_size(refs) or 128
    agent_config = config.agent_config()
    spec = resolve_agent(HEAD_AGENTS[config.head])
    horizon = config.horizon_steps if config.head == "diffusion" else 1
    data = load_student_data(env_id, drawn, config.obs_mode, image_size, horizon, config.seed)

    torch.manual_seed(config.seed)
    vec_env = DummyVecEnv([lambda: SpacesOnlyEnv(data.observation_space, data.action_space)])
    model = build_agent(spec, vec_env, agent_config, seed=config.seed, device=config.device)
    model.fit_normalization(data.observations, data.chunks)
    env = EnvConfig(env_id, tuple(sorted(drawn)), config.obs_mode, image_size if config.obs_mode != "state" else None)

    run_dir.mkdir(parents=True, exist_ok=True)
    draw = {
        "seed": config.seed,
        "episodes_per_task": config.episodes_per_task,
        "tasks": {str(task): [{"file": str(r.file), "demo": r.demo, "source": r.source} for r in refs_]
                  for task, refs_ in drawn.items()},
        "missing_tasks": [t for t in range(len(suites.get_suite(suite))) if t not in drawn],
    }  # fmt: skip
    write_json_atomic(run_dir / "draw.json", draw, sort_keys=False)
    resolved = {
        "student": {k: jsonable(v) for k, v in dataclasses.asdict(config).items()},
        "agent": {"name": spec.name, "class_path": spec.class_path, "config": jsonable(model.config_dict())},
        "env": env.to_json(),
        "episodes": {str(k): v for k, v in data.episodes.items()},
        "samples": len(data.chunks),
    }
    write_json_atomic(run_dir / "config.json", resolved, sort_keys=False)
    logger = make_logger(run_dir / "logs")
    augment = None
    if config.obs_noise > 0:
        augment = ObservationNoise(data.observations, config.obs_noise, config.seed, model.device)
    first_loss, final_loss = fit_bc(
        model, data.observations, data.chunks, config, logger, progress=config.progress, augment=augment
    )
    checkpoint = save_checkpoint(
        model,
        run_dir / CHECKPOINT_DIR,
        agent=spec.name,
        env=env,
        include_optimizer=False,
        extra={"student": {"episodes": resolved["episodes"], "samples": len(data.chunks), "epochs": config.epochs,
                           "final_bc_loss": final_loss, "head": config.head, "obs_noise": config.obs_noise}},
    )  # fmt: skip
    return StudentResult(
        run_dir, checkpoint, env_id, data.episodes, len(data.chunks), config.epochs, first_loss, final_loss,
        time.perf_counter() - start,
    )  # fmt: skip


def print_summary(result: StudentResult) -> None:
    """A few lines: demos per task, loss, checkpoint."""
    per_task = ", ".join(f"{task}: {n}" for task, n in sorted(result.episodes.items()))
    print(
        f"student on {result.env_id}: demos per task {{{per_task}}} ({result.samples} steps), "
        f"{result.epochs} epochs in {result.wall_time_s:.1f}s\n"
        f"bc loss {result.first_loss:.4f} (epoch 1) -> {result.final_loss:.4f}\n"
        f"checkpoint: {result.checkpoint} (evaluate: cli.py eval --checkpoint {result.checkpoint} --task-id all)"
    )


def student(config: StudentConfig) -> int:
    """``cli.py student``: train and print the summary."""
    print_summary(train_student(config))
    return 0
