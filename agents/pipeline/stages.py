"""One stage of one task: the library commands it runs, each as its typed config.

A stage is one or more commands (``collect``, ``pretrain``, ``eval``, ``train``, ``export``), each built as
the config its library function takes (:class:`StageCommand`) and run in a child process by
``python -m agents.stage COMMAND CONFIG_JSON`` (:mod:`agents.stage`). :meth:`StageCommand.cli_argv` is the
``cli.py`` command line that does the same, which the task's ``log.txt`` and the manifest record.
"""

from __future__ import annotations

import dataclasses
import typing
from pathlib import Path
from typing import Any

from agents.pipeline.config import GENERATE_AGENTS, RL_SEED_OFFSET, RL_STAGES, GenerateConfig, TaskRef, agent_flags, agent_name
from libero_gym.errors import InvalidInputError


@dataclasses.dataclass(frozen=True)
class StageCommand:
    """One library command of a stage: its name and the settings its config is built from."""

    command: str
    """The command as ``cli.py`` names it: collect, pretrain, eval, train, export."""
    settings: dict[str, Any]
    """The config's fields the stage sets, in the order the command line shows them; the rest keep their defaults."""

    @property
    def config(self) -> Any:
        """The command's typed config (``CollectConfig``, ``PretrainConfig``, ...)."""
        from agents.stage import COMMANDS

        return COMMANDS[self.command][0](**self.settings)

    def cli_argv(self) -> list[str]:
        """The arguments after ``cli.py`` of the equivalent command line (``collect --policy scripted ...``)."""
        from agents.stage import COMMANDS

        hints = typing.get_type_hints(COMMANDS[self.command][0], include_extras=True)
        argv = [self.command]
        for name, value in self.settings.items():
            flag = "--" + name.replace("_", "-")
            if name == "agent":
                base = GENERATE_AGENTS.get(agent_name(value))
                argv += ["--agent", agent_name(value), *agent_flags(value, type(base)() if base is not None else value)]
            elif _positional(hints[name]):
                argv += [str(v) for v in (value if isinstance(value, tuple) else (value,))]
            elif isinstance(value, bool):
                argv.append(flag if value else "--no-" + name.replace("_", "-"))
            elif isinstance(value, tuple):
                argv += [flag, *(str(v) for v in value)]
            else:
                argv += [flag, str(value)]
        return argv


def _positional(hint: Any) -> bool:
    from tyro.conf import _markers

    return typing.get_origin(hint) is typing.Annotated and _markers.Positional in typing.get_args(hint)[1:]


@dataclasses.dataclass(frozen=True)
class StageRun:
    """The commands of one stage of one task, and where its outputs go."""

    commands: tuple[StageCommand, ...]
    """Run in order; each after the one before it succeeded (export: LIBERO's HDF5, then the other formats)."""
    output: Path
    """Its output folder or file (removed before a non-resumable stage starts again)."""
    resumable: bool
    """Continues from what a killed run left (``resume``); otherwise its output is removed first."""


def stage_run(config: GenerateConfig, task: TaskRef, stage: str, folder: Path, ray_address: str | None = None
              ) -> StageRun:  # fmt: skip
    """The commands that run ``stage`` of ``task`` in the task's ``folder``.

    With ``--backend ray`` the stages with env workers (demos, bc_eval, rl, rollouts) run on ``--backend ray``
    at ``ray_address`` (the cluster ``generate`` joined or started; default ``config.ray_address``), so that
    their workers are actors of that one cluster.
    """
    ray: dict[str, Any] = {}
    if config.backend == "ray":
        address = ray_address if ray_address is not None else config.ray_address
        ray = {"backend": "ray", **({} if address is None else {"ray_address": address})}
    env = {"env": task.env, "task_id": (task.index,), **ray}
    workers = config.envs_per_task
    limit = {} if config.max_episode_steps is None else {"max_episode_steps": config.max_episode_steps}
    if stage == "demos":
        return StageRun((StageCommand("collect", {
            "policy": "scripted", **env, "episodes": config.demos, "until_successes": True,
            "max_episodes": config.max_attempts * config.demos, "num_workers": workers, "images": False,
            "seed": config.seed, "out": str(folder / "demos"), "resume": True, "progress": False}),),
            folder / "demos", True)  # fmt: skip
    if stage == "bc":
        demos = tuple(sorted((folder / "demos").glob("*.hdf5")))
        return StageRun((StageCommand("pretrain", {
            "dataset": demos, "run_dir": folder / "bc", "agent": config.agent, "epochs": config.bc_epochs,
            "batch_size": config.bc_batch_size, "seed": config.seed, "progress": False}),),
            folder / "bc", False)  # fmt: skip
    if stage in ("bc_eval", "rl_eval"):
        # the fine-tuned policy in each mode; the BC start as the rollouts would sample it
        modes = (config.sampling,) if stage == "bc_eval" else ("deterministic", "stochastic", config.sampling)
        checkpoint = folder / "bc" / "checkpoint" if stage == "bc_eval" else folder / "rl"
        return StageRun((StageCommand("eval", {
            "checkpoint": checkpoint, "episodes": config.eval_episodes, "num_envs": workers, "seed": config.seed,
            "sampling": tuple(dict.fromkeys(modes)), **limit, **ray, "json_out": folder / f"{stage}.json"}),),
            folder / f"{stage}.json", False)  # fmt: skip
    if stage == "rl":
        # the agent's settings are the BC checkpoint's (bc ran with them), so --init-from changes none of them
        return StageRun((StageCommand("train", {
            "agent": config.agent, **env, "init_from": folder / "bc" / "checkpoint", "total_timesteps": config.rl_steps,
            "target_success": config.target_success, "num_envs": workers, "checkpoint_every": config.checkpoint_every,
            **limit, "seed": config.seed, "resume": folder / "rl", "progress": False}),),
            folder / "rl", True)  # fmt: skip
    if stage == "rollouts":
        policy: dict[str, Any] = {"policy": "scripted"} if config.source == "scripted" else {
            "policy": "checkpoint", "checkpoint": str(folder / "rl"), "sampling": config.sampling}  # fmt: skip
        return StageRun((StageCommand("collect", {
            **policy, **env, **limit, "episodes": config.episodes, "until_successes": True,
            "max_episodes": config.max_attempts * config.episodes, "num_workers": workers, "images": config.images,
            "image_size": config.image_size, "seed": config.seed + RL_SEED_OFFSET, "out": str(folder / "rollouts"),
            "resume": True, "export": False, "progress": False}),),
            folder / "rollouts", True)  # fmt: skip
    if stage == "export":
        # LIBERO's HDF5 first (the successful episodes); the other formats are converted from that file.
        first = StageCommand("export", {"collection": str(folder / "rollouts"), "out": str(folder / "export"),
                                        "only_success": True})  # fmt: skip
        others = tuple(StageCommand("export", {"collection": str(folder / "export"), "format": fmt,
                                               "out": str(folder / "export" / fmt)})
                       for fmt in config.formats if fmt != "hdf5")  # fmt: skip
        return StageRun((first, *others), folder / "export", False)
    raise InvalidInputError(f"stage must be one of {list(RL_STAGES)}, got {stage!r}")
