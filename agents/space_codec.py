"""Observation and action spaces as JSON, for ``agent.json`` (:mod:`agents.checkpoint`).

A checkpoint records its agent's spaces so that a loader can check an env against
them and rebuild them without an env (``load_agent(path)`` acts standalone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from gymnasium import spaces

from libero_gym.errors import CheckpointError


def describe_space(space: spaces.Space[Any]) -> dict[str, Any]:
    """A JSON description of a Box/Discrete/Dict space (shapes, dtypes, bounds of Boxes)."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: describe_space(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, spaces.Box):
        low, high = np.unique(space.low), np.unique(space.high)
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": float(low[0]) if low.size == 1 else "varies",
            "high": float(high[0]) if high.size == 1 else "varies",
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    return {"type": type(space).__name__, "repr": repr(space)}


def space_from_description(desc: Mapping[str, Any]) -> spaces.Space[Any]:
    """Rebuild a space from :func:`describe_space`'s output (per-element bounds become +-inf)."""
    kind = desc.get("type")
    if kind == "Dict":
        return spaces.Dict({key: space_from_description(sub) for key, sub in desc["spaces"].items()})
    if kind == "Box":
        low = desc["low"] if desc["low"] != "varies" else -np.inf
        high = desc["high"] if desc["high"] != "varies" else np.inf
        return spaces.Box(low, high, tuple(desc["shape"]), np.dtype(desc["dtype"]))
    if kind == "Discrete":
        return spaces.Discrete(int(desc["n"]))
    raise CheckpointError(f"cannot rebuild a space from {desc}")


def step_space(desc: Mapping[str, Any]) -> dict[str, Any]:
    """An action space as one control step sees it: a (Ta, 7) chunk of Boxes is its (7,) Box.

    The weights of an agent do not depend on whether its env steps chunks (DiffusionPPO
    acts in both), so a checkpoint of one kind loads on an env of the other.
    """
    out = dict(desc)
    if out.get("type") == "Box" and len(out.get("shape", ())) == 2:
        out["shape"] = list(out["shape"][1:])
    return out


def space_summary(desc: Mapping[str, Any]) -> str:
    if desc.get("type") == "Dict":
        return "{" + ", ".join(f"{k}: {space_summary(v)}" for k, v in desc["spaces"].items()) + "}"
    if desc.get("type") == "Box":
        return f"{tuple(desc['shape'])} {desc['dtype']}"
    if desc.get("type") == "Discrete":
        return f"Discrete({desc['n']})"
    return str(desc)
