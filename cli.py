"""libero-gym command line: ``python cli.py COMMAND --help``.

Thin by design: each subcommand is a frozen config dataclass defined next to the
library function that runs it; this file only maps names to (config, function)
and turns user errors into one line on stderr and a non-zero exit.

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
from typing import Any

import tyro

from libero_gym.commands import Doctor, Envs, doctor, list_envs

# name -> (config class, function taking that config). Config classes live in
# light modules (no torch, MuJoCo or LIBERO at import), so `--help` is quick.
COMMANDS: dict[str, tuple[type, Callable[[Any], Any]]] = {
    "envs": (Envs, list_envs),
    "doctor": (Doctor, doctor),
}


def _register_optional_commands() -> None:
    """Add the agents' and data commands (their modules import lazily)."""
    try:
        from agents.commands import COMMANDS as AGENT_COMMANDS
    except ImportError as error:  # pragma: no cover - only while the package is incomplete
        if "agents.commands" not in str(error):
            raise
    else:
        COMMANDS.update(AGENT_COMMANDS)
    try:
        from libero_gym.data.commands import COMMANDS as DATA_COMMANDS
    except ImportError as error:  # pragma: no cover
        if "libero_gym.data.commands" not in str(error):
            raise
    else:
        COMMANDS.update(DATA_COMMANDS)


def _one_line(box: str) -> str:
    """tyro's boxed parse error as one line: its first paragraph, frame and colours removed."""
    words: list[str] = []
    for line in re.sub(r"\x1b\[[0-9;]*m", "", box).splitlines():
        stripped = line.strip()
        if stripped.startswith(("╭", "╰")):
            continue
        if stripped.startswith("│ ─"):  # the rule that ends the first paragraph
            break
        text = stripped.strip("│╭╮╰╯─ ").strip()
        if text:
            words.append(text)
    return " ".join(words) or "invalid arguments (see --help)"


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv``, run the command, return the exit code."""
    from gymnasium import error as gym_error

    from libero_gym.errors import LiberoGymError
    from libero_gym.signals import EXIT_INTERRUPTED, EXIT_TERMINATED, Terminated, sigterm_raises

    _register_optional_commands()
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["generate"]:  # --config FILE: the file's settings as flags before the given ones
        from agents.generate import expand_config_file

        try:
            argv = expand_config_file(argv)
        except LiberoGymError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
    captured = io.StringIO()
    try:
        with contextlib.redirect_stderr(captured):
            config = tyro.extras.subcommand_cli_from_dict(
                {name: config_cls for name, (config_cls, _) in COMMANDS.items()},
                args=argv,
                description=__doc__,
            )
    except SystemExit as exit_:
        if exit_.code in (0, None):  # --help: show what tyro wrote
            sys.stderr.write(captured.getvalue())
            raise
        print(f"error: {_one_line(captured.getvalue())}", file=sys.stderr)
        return 2
    sys.stderr.write(captured.getvalue())
    function = next(fn for config_cls, fn in COMMANDS.values() if type(config) is config_cls)
    try:
        with sigterm_raises():
            result = function(config)
    except (LiberoGymError, gym_error.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(result) if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
