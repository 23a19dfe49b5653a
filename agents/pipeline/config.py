"""``generate``'s settings: :class:`GenerateConfig`, its agents and their defaults, the tasks it names.

Light at import (no torch, MuJoCo or LIBERO): ``cli.py generate --help`` reads it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import tyro

from agents.agent_configs import DiffusionPPOConfig, GaussianPPOConfig
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

LOCAL_MAX_WORKERS = 2
"""``--max-workers`` of ``--backend local`` when not given: one task at a time with 2 envs, sized for a 2-core machine."""

RL_SEED_OFFSET = 10_000
"""Rollout episodes are reset with seeds ``seed + 10000 + i``: never the demos' seeds (``seed + i``)."""

GENERATE_AGENTS: dict[str, Any] = {
    "diffusion-ppo": DiffusionPPOConfig(),
    "gaussian-ppo": GaussianPPOConfig(learning_rate=1e-4, n_steps=512, batch_size=256, n_epochs=5, gamma=0.999),
}
"""The agents ``generate --agent`` takes, each with its defaults in ``generate`` (the ``--agent.*`` flags override
them). DiffusionPPO: its own defaults. Gaussian PPO fine-tuning from BC (as in docs/results.md): SB3 PPO with a
smaller step than from scratch (3e-4 washes out the BC policy), 512 x 2 env steps per update in minibatches of
256, 5 epochs, and DPPO's per-step discount 0.999 for sparse, 100-500-step episodes."""


def _agent_union() -> Any:
    """The agents of :data:`GENERATE_AGENTS` as one union, each a tyro subcommand with its generate defaults."""
    members = [
        Annotated[type(default), tyro.conf.subcommand(name, default=default, prefix_name=False)]
        for name, default in GENERATE_AGENTS.items()
    ]
    return Union[tuple(members)]  # noqa: UP007 (a runtime-built union)


GenerateAgent = _agent_union()
"""What ``generate --agent`` may be: DiffusionPPO's or Gaussian PPO's typed settings."""


def agent_name(agent: Any) -> str:
    """The registered name of an agent config (``diffusion-ppo``)."""
    from agents.registry import spec_of

    return spec_of(agent).name


def flat_settings(config: Any, prefix: str = "") -> dict[str, Any]:
    """A config dataclass as ``{dotted field name: JSON value}``, nested configs flattened (``policy.horizon_steps``)."""
    flat: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            flat.update(flat_settings(value, f"{prefix}{field.name}."))
        else:
            flat[f"{prefix}{field.name}"] = plain(value)
    return flat


def agent_flags(agent: Any, base: Any) -> list[str]:
    """``--agent.*`` flags that turn ``base`` into ``agent`` (same class): one per differing setting."""
    flags: list[str] = []
    old = flat_settings(base)
    for key, value in flat_settings(agent).items():
        if old.get(key) == value:
            continue
        parent, _, leaf = f"agent.{key}".replace("_", "-").rpartition(".")
        flag = f"--{parent}.{leaf}"
        if isinstance(value, bool):
            flags.append(flag if value else f"--{parent}.no-{leaf}")
        elif isinstance(value, list):
            flags += [flag, *(str(v) for v in value)]
        else:
            flags.append(f"{flag}={value}")
    return flags


def agent_from_mapping(values: dict[str, Any]) -> Any:
    """An agent config from ``{"name": NAME, SETTING: VALUE, ...}`` (a saved ``generate.json``), the settings over
    the agent's generate defaults (nested settings as mappings).

    Raises:
        InvalidInputError: an agent ``generate`` does not take, or a setting it does not have.
    """
    values = dict(values)
    name = values.pop("name", None)
    if name not in GENERATE_AGENTS:
        raise InvalidInputError(f"agent must be one of {list(GENERATE_AGENTS)}, got {name!r}")
    default = GENERATE_AGENTS[name]
    from agents.registry import spec_of

    return spec_of(default).make_config(_merge(dataclasses.asdict(default), values))


def _merge(base: dict[str, Any], values: dict[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in values.items():
        merged[key] = _merge(base[key], value) if isinstance(value, dict) and isinstance(base.get(key), dict) else value
    return merged


def plain(value: Any) -> Any:
    """A setting as JSON gives it back (paths as strings, tuples as lists)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [plain(v) for v in value]
    return value


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
    agent: GenerateAgent = GENERATE_AGENTS["diffusion-ppo"]
    """--agent NAME: the policy that is cloned (bc) and fine-tuned (rl): diffusion-ppo (the method) or gaussian-ppo
    (the baseline, with PPO fine-tuning defaults); its settings are the --agent.* flags (`generate --agent NAME
    --help`), given to both stages."""
    demos: int = 50
    """Scripted demonstrations per task for behaviour cloning. Demos are cheap (~1 min per task for 50) and the
    lever that mattered most on LIBERO-Goal: BC 30% -> 88% (task 1), 42% -> 62% (2), 54% -> 68% (4) from 10 to 50
    (docs/results.md)."""
    bc_epochs: int = 200
    """BC passes over the demonstrations (50 demos are ~6k samples: ~19k gradient steps at batch 64)."""
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
        """The settings that determine a stage's result: a finished stage is stale when one changes (the agent's
        settings count for bc and rl: the BC checkpoint holds them, and rl starts from it)."""
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
        settings: dict[str, Any] = {}
        for key in keys:
            if key == "agent":  # the agent's name and each of its settings, refused by name when changed
                settings["agent"] = self.agent_name
                settings.update({f"agent.{k}": v for k, v in flat_settings(self.agent).items()})
            else:
                settings[key] = plain(getattr(self, key))
        return settings

    @property
    def agent_name(self) -> str:
        """The agent's registered name (``diffusion-ppo``)."""
        return agent_name(self.agent)

    def resolved(self) -> dict[str, Any]:
        """The config as ``generate.json`` holds it (``--config`` reads it back): the agent as its name and settings."""
        values = {f.name: plain(getattr(self, f.name)) for f in dataclasses.fields(self) if f.name != "agent"}
        return {**values, "agent": {"name": self.agent_name, **dataclasses.asdict(self.agent)}, "restart_from": None,
                "config": None}

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
            from agents.registry import spec_of

            check_agent_sampling(spec_of(self.agent).load_class(), self.sampling, self.agent_name)
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
    agent: list[str] = []
    for name, value in values.items():
        if name in ("config", "restart_from") or value is None:
            continue
        if name == "agent":  # a name, or {"name": NAME, SETTING: VALUE...} over that agent's generate defaults
            agent = _agent_file_flags(value, path)
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
    rest = rest[:position] + rest[position + width:]
    given = _agent_given(rest)
    if given is None or agent[1:2] == [given]:  # another --agent given: the file's agent settings do not apply
        flags += agent
    return command + flags + rest


def _agent_given(argv: Sequence[str]) -> str | None:
    """The last ``--agent NAME`` of ``argv``, else None."""
    name = None
    for i, arg in enumerate(argv):
        if arg == "--agent" and i + 1 < len(argv):
            name = argv[i + 1]
        elif arg.startswith("--agent="):
            name = arg.partition("=")[2]
    return name


def _agent_file_flags(value: Any, path: str) -> list[str]:
    """``--agent NAME`` and the ``--agent.*`` flags of a config file's ``agent`` entry."""
    if isinstance(value, str):
        value = {"name": value}
    if not isinstance(value, dict):
        raise InvalidInputError(f"--config {path}: agent must be one of {list(GENERATE_AGENTS)} or a mapping with "
                                f"their name and settings, got {value!r}")  # fmt: skip
    try:
        agent = agent_from_mapping(value)
    except InvalidInputError as error:
        raise InvalidInputError(f"--config {path}: {error}") from None
    name = value["name"]
    return ["--agent", name, *agent_flags(agent, GENERATE_AGENTS[name])]
