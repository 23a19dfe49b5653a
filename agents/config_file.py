"""A command's settings from a YAML or JSON file (``generate --config FILE``), checked before anything runs.

The file holds a mapping of the config dataclass's field names to values. Each way it
can be wrong (unreadable, not valid YAML/JSON, not a mapping, an unknown field, a value
of the wrong type) is one :class:`~libero_gym.errors.InvalidInputError` that names the
file, and the line of a syntax error or the field at fault.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from pathlib import Path
from typing import Any, Literal, Union

from libero_gym.errors import InvalidInputError

YAML_SUFFIXES = (".yaml", ".yml")
"""Files read as YAML; any other is read as JSON (what ``generate`` writes: ``OUT/generate.json``)."""


def read_config_file(path: Path, config_cls: type) -> dict[str, Any]:
    """The settings in ``path`` for ``config_cls``, each value checked against its field's type.

    Args:
        path: a YAML (``.yaml``, ``.yml``) or JSON file holding one mapping.
        config_cls: the dataclass whose fields the mapping names.

    Returns:
        Field name -> value, as the file gives it (``None``: the field's default).

    Raises:
        InvalidInputError: unreadable file, a syntax error (with its line and column), a top level that is
            not a mapping, a name that is no field, or a value its field's type cannot hold.
    """
    where = f"--config {path}"
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{where}: cannot read it ({error})") from None
    values = _load_yaml(text, where) if path.suffix in YAML_SUFFIXES else _load_json(text, where)
    if not isinstance(values, dict):
        got = "an empty file" if not text.strip() else "null" if values is None else f"a {type(values).__name__}"
        raise InvalidInputError(f"{where}: must hold a mapping of settings (name: value), got {got}")
    hints = typing.get_type_hints(config_cls)
    fields = sorted(field.name for field in dataclasses.fields(config_cls))
    unknown = sorted((key for key in values if key not in hints), key=str)
    if unknown:
        raise InvalidInputError(f"{where}: unknown settings {unknown}; valid: {fields}")
    for name, value in values.items():
        if value is not None and not _holds(hints[name], value):
            raise InvalidInputError(f"{where}: {name} must be {_describe(hints[name])}, got {value!r}")
    return values


def _load_yaml(text: str, where: str) -> Any:
    import yaml

    try:
        return yaml.safe_load(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = " ".join(str(error.problem or error.context or "syntax error").split())
        raise InvalidInputError(f"{where}: not valid YAML{at}: {problem}") from None
    except yaml.YAMLError as error:  # e.g. a character YAML does not allow (its message names the position)
        raise InvalidInputError(f"{where}: not valid YAML: {' '.join(str(error).split())}") from None


def _load_json(text: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise InvalidInputError(
            f"{where}: not valid JSON at line {error.lineno}, column {error.colno}: {error.msg}"
        ) from None


def _holds(hint: Any, value: Any) -> bool:
    """Whether a field of type ``hint`` can take ``value`` (as YAML/JSON give it) on the command line."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if hint is type(None):
        return value is None
    if origin in (Union, types.UnionType):
        return any(_holds(arg, value) for arg in args)
    if origin is Literal:
        return any(type(value) is type(arg) and value == arg for arg in args)
    if origin is tuple:  # tuple[X, ...]; one value stands for a one-item tuple, as on the command line
        return all(_holds(args[0], item) for item in (value if isinstance(value, list) else [value]))
    if isinstance(value, bool) or hint is bool:
        return isinstance(value, bool) and hint is bool
    if hint is int:
        return isinstance(value, int)
    if hint is float:  # YAML 1.1 (PyYAML) reads 1e-4, without a dot, as a string
        return isinstance(value, int | float) or (isinstance(value, str) and _is_float(value))
    if hint in (str, Path):
        return isinstance(value, str | int | float)
    return True  # a type this check does not know: the parser checks it


def _describe(hint: Any) -> str:
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        return " or ".join(_describe(arg) for arg in args)
    if origin is Literal:
        return f"one of {list(args)}"
    if origin is tuple:
        return f"a list (each item {_describe(args[0])})"
    names = {type(None): "null", bool: "true or false", int: "an integer", float: "a number", str: "a string",
             Path: "a path"}  # fmt: skip
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True
