"""Checks of :class:`libero_gym.env.LiberoEnv`'s constructor arguments, each failing with the valid choices.

Run at construction, in the caller's process, so that a typo fails before any worker
or simulator starts.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from libero_gym.errors import InvalidInputError
from libero_gym.spaces import ACTION_DIM


def _is_int(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, (int, np.integer))


def check_choice(name: str, value: Any, choices: Sequence[Any]) -> None:
    """Raise unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise InvalidInputError(f"{name} must be one of {list(choices)}, got {value!r}")


def check_int(name: str, value: Any, low: int, high: int | None = None, optional: bool = False) -> None:
    """Raise unless ``value`` is an int in [low, high] (or None when ``optional``)."""
    if optional and value is None:
        return
    if not _is_int(value) or value < low or (high is not None and value > high):
        what = f"an int in [{low}, {high}]" if high is not None else f"an int >= {low}"
        raise InvalidInputError(f"{name} must be {'None or ' if optional else ''}{what}, got {value!r}")


def check_init_state_ids(init_state_ids: Sequence[int] | None, num_init_states: int) -> tuple[int, ...] | None:
    """``init_state_ids`` as a tuple of ints in [0, num_init_states), or None."""
    if init_state_ids is None:
        return None
    ids = tuple(init_state_ids)
    if not ids or any(not _is_int(i) or not 0 <= i < num_init_states for i in ids):
        raise InvalidInputError(
            f"init_state_ids must be a non-empty sequence of ints in [0, {num_init_states - 1}], got {ids!r}"
        )
    return tuple(int(i) for i in ids)


def check_action(action: Any) -> np.ndarray:
    """One action as (7,) float64; raise for another shape, NaN or inf."""
    array = np.asarray(action, dtype=np.float64)
    if array.shape != (ACTION_DIM,):
        raise InvalidInputError(f"action must have shape ({ACTION_DIM},), got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidInputError(f"action must be finite, got {array.tolist()} (NaN or inf)")
    return array


def check_actions(actions: Any) -> np.ndarray:
    """An action chunk as (Ta, 7) float64, Ta >= 1; raise for another shape, NaN or inf."""
    array = np.asarray(actions, dtype=np.float64)
    if array.ndim != 2 or array.shape[0] < 1 or array.shape[1] != ACTION_DIM:
        raise InvalidInputError(f"actions must have shape (Ta, {ACTION_DIM}) with Ta >= 1, got {array.shape}")
    if not np.all(np.isfinite(array)):
        raise InvalidInputError("actions must be finite (got NaN or inf)")
    return array
