"""Metrics on hand-made sequences with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from libero_gym.data import metrics as M


def test_constant_velocity_path_has_zero_jerk() -> None:
    t = np.arange(50, dtype=np.float64)[:, None]
    path = np.hstack([0.01 * t, -0.02 * t, 0.3 + 0.0 * t])
    assert M.mean_squared_jerk(path, rate_hz=20.0) == pytest.approx(0.0, abs=1e-12)
    assert M.mean_squared_jerk(path) == pytest.approx(0.0, abs=1e-12)


def test_constant_acceleration_has_zero_jerk_but_cubic_does_not() -> None:
    t = np.arange(20, dtype=np.float64)
    assert M.mean_squared_jerk(0.5 * t**2) == pytest.approx(0.0, abs=1e-9)
    # x = t^3: third difference is 6 per step^3 everywhere, so MS jerk = 36, and
    # at 20 Hz (dt = 0.05 s per step) the jerk is 6 * 20^3 -> squared 36 * 20^6.
    assert M.mean_squared_jerk(t**3) == pytest.approx(36.0)
    assert M.mean_squared_jerk(t**3, rate_hz=20.0) == pytest.approx(36.0 * 20.0**6)


def test_jerk_sums_over_dims_and_averages_over_time() -> None:
    actions = np.zeros((10, 7))
    actions[5, 0] = 1.0  # one impulse: third differences 1, -3, 3, -1 at 4 of the 7 windows
    assert M.mean_squared_jerk(actions) == pytest.approx((1 + 9 + 9 + 1) / 7)


def test_short_sequences_have_undefined_jerk() -> None:
    assert math.isnan(M.mean_squared_jerk(np.zeros((3, 7))))


def test_path_length_of_known_paths() -> None:
    square = np.array([[0, 0, 0], [1, 0, 0], [1, 1, 0], [0, 1, 0], [0, 0, 0]], dtype=np.float64)
    assert M.path_length(square) == pytest.approx(4.0)
    diagonal = np.array([[0, 0, 0], [3, 4, 0]], dtype=np.float64)
    assert M.path_length(diagonal) == pytest.approx(5.0)
    assert M.path_length(np.zeros((1, 3))) == 0.0


def test_identical_episodes_have_zero_variance() -> None:
    episode = np.random.default_rng(0).uniform(-1, 1, size=(40, 7))
    assert M.action_variance([episode, episode.copy(), episode.copy()]) == pytest.approx(0.0, abs=1e-15)


def test_variance_is_matched_in_normalised_time() -> None:
    # The same ramp played at two speeds is the same trajectory in normalised time.
    slow = np.linspace(-1, 1, 101)[:, None].repeat(7, axis=1)
    fast = np.linspace(-1, 1, 26)[:, None].repeat(7, axis=1)
    assert M.action_variance([slow, fast]) == pytest.approx(0.0, abs=1e-12)


def test_variance_of_two_constant_episodes() -> None:
    a = np.full((30, 7), 0.5)
    b = np.full((45, 7), -0.5)
    # Variance of {0.5, -0.5} (ddof 0) is 0.25 at every time and dim.
    assert M.action_variance([a, b]) == pytest.approx(0.25)
    assert math.isnan(M.action_variance([a]))


def test_resample_endpoints_and_linearity() -> None:
    x = np.array([[0.0], [10.0]])
    grid = M.resample(x, 11)
    assert grid[:, 0] == pytest.approx(np.arange(11, dtype=np.float64))


def test_summarize_counts_success_and_lengths() -> None:
    t = np.arange(10, dtype=np.float64)[:, None]
    path = np.hstack([0.01 * t, 0 * t, 0 * t])  # 9 steps of 1 cm
    actions = [np.zeros((10, 7)), np.zeros((20, 7))]
    summary = M.summarize(actions, [path, path], [True, False])
    assert summary["episodes"] == 2
    assert summary["success_rate"] == pytest.approx(0.5)
    assert summary["length"] == pytest.approx(15.0)
    assert summary["length_std"] == pytest.approx(5.0)
    assert summary["ee_path_length"] == pytest.approx(0.09)
    assert summary["ee_jerk"] == pytest.approx(0.0, abs=1e-9)
    assert summary["action_variance"] == pytest.approx(0.0)
    assert math.isnan(M.summarize(actions, [path, path], [None, None])["success_rate"])
