"""benchmarks/train_throughput.py: its phase timer wraps the functions it names, and unwraps them."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def _module():
    spec = importlib.util.spec_from_file_location("bench_train_throughput", REPO / "benchmarks" / "train_throughput.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_train_throughput"] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def test_phases_wrap_existing_functions_and_undo_restores_them() -> None:
    """Every timed function exists under the name the benchmark wraps (a rename fails here, not in a
    half-hour benchmark run), calls go through the timer while wrapped, and undo restores the originals."""
    from agents.diffusion_policy import DiffusionPolicy
    from agents.vec_env import SB3VecEnv

    bench = _module()
    before = (DiffusionPolicy.sample, SB3VecEnv.step_wait)
    timer = bench.PhaseTimer()
    undo = bench.instrument(timer)
    try:
        assert DiffusionPolicy.sample is not before[0] and SB3VecEnv.step_wait is not before[1]
    finally:
        for fn in undo:
            fn()
    assert (DiffusionPolicy.sample, SB3VecEnv.step_wait) == before


def test_nested_phases_count_exclusively() -> None:
    """A phase inside another is not counted twice: the phases add up to the time spent in them."""
    bench = _module()
    timer = bench.PhaseTimer()
    timer.enabled = True
    with timer.phase("update"):
        with timer.phase("inference"):
            sum(range(10_000))
        sum(range(10_000))
    assert set(timer.totals) == {"update", "inference"}
    assert all(seconds > 0 for seconds in timer.totals.values())
    assert timer.inside("update") is False  # the stack is empty again
