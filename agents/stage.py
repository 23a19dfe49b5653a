"""``python -m agents.stage COMMAND CONFIG_JSON``: one library command, run from its typed config in its own process.

``generate`` runs each stage this way (:mod:`agents.pipeline`): the stage's config (``CollectConfig``,
``PretrainConfig``, ``EvalConfig``, ``TrainConfig``, ``ExportConfig``) is written as JSON by
:func:`write_config`, rebuilt here by :func:`read_config`, and given to the function ``cli.py COMMAND`` runs,
without a command line to parse. A process per stage keeps the simulator and its workers out of ``generate``
and lets it stop a stage by signal: SIGINT and SIGTERM stop the command through its own clean shutdown, as in
the CLI (:mod:`libero_gym.signals`).

Exit codes: the command's own (``collect``: 1 when it gave up before enough successes), 2 with one ``error:``
line for bad input, 130 after SIGINT, 143 after SIGTERM.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union

from agents.commands import run_eval, run_pretrain, run_train
from agents.configs import EvalConfig, PretrainConfig, TrainConfig
from libero_gym.data.commands import CollectConfig, ExportConfig, collect, export

COMMANDS: dict[str, tuple[type, Callable[[Any], int]]] = {
    "collect": (CollectConfig, collect),
    "pretrain": (PretrainConfig, run_pretrain),
    "eval": (EvalConfig, run_eval),
    "train": (TrainConfig, run_train),
    "export": (ExportConfig, export),
}
"""The commands a stage may run: name -> (config class, function), as ``cli.py`` names them."""

AGENT_CLASS = "class"
"""Key of a nested agent config's ``module:Class`` in the JSON (the agent is a union of config classes)."""


def config_to_json(config: Any) -> dict[str, Any]:
    """A command's config as JSON values; a nested agent config as ``{"class": module:Class, "config": {...}}``."""
    values: dict[str, Any] = {}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if dataclasses.is_dataclass(value):
            cls = type(value)
            values[field.name] = {AGENT_CLASS: f"{cls.__module__}:{cls.__qualname__}", "config": _plain(dataclasses.asdict(value))}
        else:
            values[field.name] = _plain(value)
    return values


def config_from_json(config_cls: type, values: dict[str, Any]) -> Any:
    """The inverse of :func:`config_to_json`: each value converted to its field's type (paths, tuples).

    Raises:
        InvalidInputError: a name that is no field of ``config_cls``, or values it refuses.
    """
    from agents.registry import import_path
    from libero_gym.errors import InvalidInputError

    hints = typing.get_type_hints(config_cls)
    unknown = sorted(set(values) - set(hints))
    if unknown:
        raise InvalidInputError(f"{config_cls.__name__} has no settings {unknown}")
    kwargs: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, dict) and AGENT_CLASS in value:
            kwargs[name] = import_path(value[AGENT_CLASS])(**value["config"])
        else:
            kwargs[name] = _typed(hints[name], value)
    try:
        return config_cls(**kwargs)
    except (TypeError, ValueError) as error:
        raise InvalidInputError(f"invalid {config_cls.__name__}: {error}") from None


def write_config(path: Path, config: Any) -> Path:
    """Write ``config`` as JSON to ``path`` (atomically); returns ``path``."""
    from libero_gym.data.dataset import write_json_atomic

    path.parent.mkdir(parents=True, exist_ok=True)
    write_json_atomic(path, config_to_json(config))
    return path


def read_config(command: str, path: Path) -> Any:
    """The config of ``command`` in ``path``.

    Raises:
        InvalidInputError: an unknown command, an unreadable file, or settings the config refuses.
    """
    from libero_gym.errors import InvalidInputError

    if command not in COMMANDS:
        raise InvalidInputError(f"command must be one of {list(COMMANDS)}, got {command!r}")
    try:
        values = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise InvalidInputError(f"cannot read the config {path}: {error}") from None
    return config_from_json(COMMANDS[command][0], values)


def _plain(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _typed(hint: Any, value: Any) -> Any:
    """``value`` as JSON gave it, as a field of type ``hint`` holds it (``Path``, tuples)."""
    if value is None:
        return None
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        members = [arg for arg in args if arg is not type(None)]
        return _typed(members[0], value) if len(members) == 1 else value
    if origin is tuple and isinstance(value, list):
        return tuple(_typed(args[0], item) for item in value)
    if hint is Path:
        return Path(value)
    return value


def main(argv: list[str] | None = None) -> int:
    """Run ``COMMAND`` from ``CONFIG_JSON``; returns the exit code."""
    from libero_gym.data.policies import register_policy
    from libero_gym.errors import LiberoGymError
    from libero_gym.signals import run_command

    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2:
        print(f"error: usage: python -m agents.stage {{{','.join(COMMANDS)}}} CONFIG_JSON, got {argv}", file=sys.stderr)
        return 2
    register_policy("checkpoint", "agents.policy:CheckpointPolicy")  # collect --policy checkpoint
    try:
        config = read_config(argv[0], Path(argv[1]))
    except LiberoGymError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return run_command(COMMANDS[argv[0]][1], config)


if __name__ == "__main__":
    sys.exit(main())
