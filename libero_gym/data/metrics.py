"""Trajectory-quality metrics on action and end-effector sequences (pure numpy).

Shape legend: T steps of an episode, D action dims (7), N episodes of one task,
L points of the common normalised time grid.

Definitions (one line each; docs/data.md repeats them):

- ``length``: T, the number of control steps of an episode.
- ``action_jerk``: mean over t of the squared norm of the third finite difference
  of the action sequence, ``mean_t ||a[t+3] - 3a[t+2] + 3a[t+1] - a[t]||^2``
  (action units per step^3, squared; 0 for actions linear in time).
- ``ee_jerk``: the same on the end-effector position at the control rate,
  ``mean_t ||Δ³p[t] * f^3||^2`` with f = 20 Hz (m^2/s^6).
- ``action_variance``: actions of the N episodes of a task resampled (linearly) to
  L points of normalised time [0, 1], variance across episodes at each point,
  averaged over time and action dims (0 for identical episodes).
- ``ee_path_length``: sum over t of ``||p[t+1] - p[t]||`` (m).
- ``success_rate``: fraction of episodes whose success flag is set (the
  ``success`` attribute when recorded, else a positive reward).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

CONTROL_HZ = 20.0
"""LIBERO's control frequency (robosuite ``control_freq=20``); sets ee_jerk's time unit."""
RESAMPLE_POINTS = 100
"""Points of the normalised time grid for action_variance (a percent of the episode each)."""


def third_difference(x: np.ndarray) -> np.ndarray:
    """(T, D) -> (T-3, D): ``x[t+3] - 3x[t+2] + 3x[t+1] - x[t]``."""
    x = np.asarray(x, dtype=np.float64)
    return np.diff(x, n=3, axis=0)


def mean_squared_jerk(x: np.ndarray, rate_hz: float | None = None) -> float:
    """Mean over time of the squared norm of the third difference of (T, D) ``x``.

    Args:
        x: the sequence, (T, D) (or (T,), treated as D=1).
        rate_hz: sample rate; when given the difference is scaled by ``rate_hz**3``
            (a jerk in units/s^3), else it is per step^3.

    Returns:
        The mean squared jerk; NaN when T < 4.
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    if x.shape[0] < 4:
        return float("nan")
    jerk = third_difference(x)
    if rate_hz is not None:
        jerk = jerk * rate_hz**3
    return float(np.mean(np.sum(jerk**2, axis=1)))


def path_length(positions: np.ndarray) -> float:
    """Sum of the Euclidean step lengths of a (T, 3) path."""
    positions = np.asarray(positions, dtype=np.float64)
    if positions.shape[0] < 2:
        return 0.0
    return float(np.sum(np.linalg.norm(np.diff(positions, axis=0), axis=1)))


def resample(x: np.ndarray, points: int = RESAMPLE_POINTS) -> np.ndarray:
    """Linearly resample (T, D) ``x`` to (points, D) on normalised time [0, 1]."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    steps = x.shape[0]
    if steps == 1:
        return np.repeat(x, points, axis=0)
    source = np.linspace(0.0, 1.0, steps)
    target = np.linspace(0.0, 1.0, points)
    return np.stack([np.interp(target, source, x[:, d]) for d in range(x.shape[1])], axis=1)


def action_variance(episodes: Sequence[np.ndarray], points: int = RESAMPLE_POINTS) -> float:
    """Variance across episodes at matched normalised time, mean over time and dims.

    Args:
        episodes: N (T_i, D) action sequences of one task.
        points: L, the common grid size.

    Returns:
        The mean variance; NaN for fewer than 2 episodes.
    """
    if len(episodes) < 2:
        return float("nan")
    grid = np.stack([resample(actions, points) for actions in episodes])  # (N, L, D)
    return float(np.mean(np.var(grid, axis=0)))


def episode_metrics(actions: np.ndarray, ee_pos: np.ndarray) -> dict[str, float]:
    """Per-episode metrics: length, action_jerk, ee_jerk, ee_path_length."""
    return {
        "length": float(np.asarray(actions).shape[0]),
        "action_jerk": mean_squared_jerk(actions),
        "ee_jerk": mean_squared_jerk(ee_pos, rate_hz=CONTROL_HZ),
        "ee_path_length": path_length(ee_pos),
    }


def summarize(
    actions: Sequence[np.ndarray], ee_pos: Sequence[np.ndarray], success: Sequence[bool | None]
) -> dict[str, float]:
    """Metrics of a group of episodes (one task): means of the per-episode ones plus
    ``episodes``, ``success_rate``, ``length_std`` and ``action_variance``."""
    per = [episode_metrics(a, p) for a, p in zip(actions, ee_pos)]
    known = [bool(s) for s in success if s is not None]
    out: dict[str, float] = {
        "episodes": float(len(per)),
        "success_rate": float(np.mean(known)) if known else float("nan"),
    }
    for key in ("length", "action_jerk", "ee_jerk", "ee_path_length"):
        values = np.array([m[key] for m in per], dtype=np.float64)
        out[key] = float(np.nanmean(values)) if values.size and not np.all(np.isnan(values)) else float("nan")
    lengths = np.array([m["length"] for m in per])
    out["length_std"] = float(np.std(lengths)) if lengths.size else float("nan")
    out["action_variance"] = action_variance(list(actions))
    return out
