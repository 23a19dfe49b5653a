"""libero-gym command line: ``libero-gym COMMAND --help`` (the installed script) or ``python cli.py COMMAND --help``.

Thin by design: each subcommand is a frozen config dataclass defined next to the
library function that runs it; this file only maps names to (config, function)
and turns user errors into one line on stderr and a non-zero exit.

Agents: ``train --agent NAME`` and ``pretrain --agent NAME`` take a registered agent
(``diffusion-ppo``, ``gaussian-ppo``; ``cli.py agents`` lists them) or any SB3 algorithm
as ``module:Class`` (``--agent stable_baselines3:SAC``); the agent's settings are the
``--agent.*`` flags, which ``train --agent NAME --help`` lists.

Interruptions: Ctrl-C (SIGINT) and SIGTERM (what Slurm and Kubernetes send before
they kill a job) both stop a command the same way, through its ``KeyboardInterrupt``
cleanup (``train`` writes a checkpoint, ``collect`` keeps its finished episodes;
both stop their workers), then one line and exit 130 (``interrupted``) or 143
(``terminated``). See :mod:`libero_gym.signals`.
"""

from __future__ import annotations

import contextlib
import io
import re
import sys
from collections.abc import Callable
from typing import Annotated, Any, Union

import tyro

from agents.configs import (
    SB3_SUBCOMMAND,
    AgentsConfig,
    EvalConfig,
    PretrainConfig,
    TrainConfig,
    agent_arguments,
    init_from_defaults,
)
from agents.commands import run_eval, run_pretrain, run_train
from agents.pipeline import GENERATE_AGENTS, GenerateConfig, expand_config_file, generate
from agents.registry import available_agents
from agents.student import StudentConfig, student
from libero_gym.data.commands import CollectConfig, ExportConfig, StatsConfig, collect, export, stats
from libero_gym.data.policies import register_policy
from libero_gym.doctor import DoctorConfig, doctor
from libero_gym.env_table import EnvsConfig, list_envs
from libero_gym.errors import InvalidInputError, LiberoGymError
from libero_gym.signals import run_command

register_policy("checkpoint", "agents.policy:CheckpointPolicy")
"""``collect --policy checkpoint``: a trained agent (the library knows it only by this path)."""


def list_agents(config: AgentsConfig) -> int:
    """Print the agent table."""
    from rich.console import Console
    from rich.table import Table


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


# name -> (config class, function taking that config). Config classes live in
# light modules (no torch, MuJoCo or LIBERO at import), so `--help` is quick.
COMMANDS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "envs": (EnvsConfig, list_envs),
    "doctor": (DoctorConfig, doctor),
    "agents": (AgentsConfig, list_agents),
    "train": (TrainConfig, run_train),
    "pretrain": (PretrainConfig, run_pretrain),
    "student": (StudentConfig, student),
    "eval": (EvalConfig, run_eval),
    "generate": (GenerateConfig, generate),
    "collect": (CollectConfig, collect),
    "export": (ExportConfig, export),
    "stats": (StatsConfig, stats),
}


def _one_line(box: str) -> str:
    """tyro's boxed parse error as one line: its first paragraph, and the valid choices when tyro lists
    them ("Available subcommands: ..."), frame and colours removed.

    tyro 1.0 offers no public structured error (its ``tyro._errors`` hook is private and experimental), so
    this reads the text it prints."""
    words: list[str] = []
    keep: bool | None = True  # the first paragraph, then only the one that lists the choices
    for line in re.sub(r"\x1b\[[0-9;]*m", "", box).splitlines():
        stripped = line.strip()
        if stripped.startswith(("╭", "╰")):
            continue
        if stripped.startswith("│ ─"):  # a rule between paragraphs
            keep = None  # decided by the paragraph's first line
            continue
        text = stripped.strip("│╭╮╰╯─ ").strip()
        if text and keep is None:
            keep = text.startswith("Available subcommands")
        if text and keep:
            words.append(text)
    return " ".join(words) or "invalid arguments (see --help)"


def _flag_value(argv: list[str], flag: str) -> str | None:
    """The value of ``--flag VALUE`` or ``--flag=VALUE`` in ``argv`` (dashes or underscores), else ``None``."""
    names = {flag, flag.replace("-", "_")}
    for i, arg in enumerate(argv):
        name, sep, value = arg.partition("=")
        if name in names:
            return value if sep else (argv[i + 1] if i + 1 < len(argv) else None)
    return None


AGENT_COMMANDS = ("train", "pretrain", "generate")
"""The commands whose ``--agent`` selects the agent and its ``--agent.*`` flags (``generate``: one of
:data:`agents.pipeline.GENERATE_AGENTS`, given to the commands it runs)."""


def _select_agent(argv: list[str]) -> list[str]:
    """``train``/``pretrain`` ``--agent NAME`` (or ``--agent=NAME``) as the tyro arguments it stands for
    (:func:`agents.configs.agent_arguments`), moved right after the command so that the ``--agent.*`` flags
    may come anywhere; the last ``--agent`` wins. The earlier spelling ``agent:NAME`` (and ``agent:sb3`` with
    ``--agent.class-path``) is read the same way.

    Raises:
        InvalidInputError: an unknown agent, or ``--agent`` without a value.
    """
    if not argv or argv[0] not in AGENT_COMMANDS:
        return argv
    chosen: list[str] = []
    rest: list[str] = []
    args = iter(argv[1:])
    for arg in args:
        flag, sep, value = arg.partition("=")
        if flag == "--agent":
            value = value if sep else next(args, "")
            if not value or value.startswith("-"):
                raise InvalidInputError(
                    f"--agent needs a value: one of {sorted(available_agents())} or a module:Class path "
                    f"(e.g. stable_baselines3:SAC), got {value!r}"
                )
            chosen = _agent_arguments(argv[0], value)
        elif arg == "agent:sb3":
            chosen = [SB3_SUBCOMMAND]
        elif arg.startswith("agent:"):
            chosen = _agent_arguments(argv[0], arg.removeprefix("agent:"))
        else:
            rest.append(arg)
    if not chosen and argv[0] == "generate" and any(arg.startswith("--agent.") for arg in rest):
        chosen = [next(iter(GENERATE_AGENTS))]  # its default agent, named: tyro then reads every --agent.* flag
    return argv[:1] + chosen + rest


def _agent_arguments(command: str, name: str) -> list[str]:
    """What ``COMMAND --agent NAME`` stands for (:func:`agents.configs.agent_arguments`; ``generate`` takes only
    the agents of :data:`agents.pipeline.GENERATE_AGENTS`).

    Raises:
        InvalidInputError: an agent the command does not take.
    """
    if command == "generate":
        if name not in GENERATE_AGENTS:
            raise InvalidInputError(f"--agent must be one of {list(GENERATE_AGENTS)} for generate, got {name!r}")
        return [name]
    return agent_arguments(name)


def _defaults(argv: list[str]) -> dict[str, Any]:
    """Per-command default configs read from the command line before it is parsed: ``train
    --init-from PATH`` takes the checkpoint's agent and settings as defaults, which flags override."""
    if argv[:1] == ["train"] and (path := _flag_value(argv, "--init-from")):
        return {"train": init_from_defaults(path)}
    return {}


def _parse(argv: list[str]) -> Any:
    """tyro over every command: a union of the configs, one subcommand each; ``--agent NAME`` becomes the
    agent's subcommand first (:func:`_select_agent`).

    Raises:
        LiberoGymError: an unknown ``--agent``, or an unreadable ``--init-from`` checkpoint.
    """
    argv = _select_agent(argv)
    defaults = _defaults(argv)
    members = [
        Annotated[config_cls, tyro.conf.subcommand(name, default=defaults[name])]
        if name in defaults
        else Annotated[config_cls, tyro.conf.subcommand(name)]
        for name, (config_cls, _) in COMMANDS.items()
    ]
    return tyro.cli(
        Union[tuple(members)],  # noqa: UP007 (a runtime-built union)
        args=argv,
        description=__doc__,
        config=(tyro.conf.CascadeSubcommandArgs,),
    )


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``), run the command, return the exit code.

    Also the ``libero-gym`` console script (pyproject's ``[project.scripts]``; the script exits with
    the returned code)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["generate"]:  # --config FILE: the file's settings as flags before the given ones
        try:
            argv = expand_config_file(argv)
        except LiberoGymError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            config = _parse(argv)
    except LiberoGymError as error:  # an unknown --agent, an unreadable --init-from checkpoint
        print(f"error: {error}", file=sys.stderr)
        return 2
    except SystemExit as exit_:
        if exit_.code in (0, None):  # --help: show what tyro wrote
            sys.stderr.write(captured.getvalue())
            raise
        print(f"error: {_one_line(captured.getvalue())}", file=sys.stderr)
        return 2
    sys.stderr.write(captured.getvalue())
    function = next(fn for config_cls, fn in COMMANDS.values() if type(config) is config_cls)
    return run_command(function, config)


if __name__ == "__main__":
    sys.exit(main())
