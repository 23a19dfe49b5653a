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


def test_action_recorder_restores_the_adapter_and_checksum_sees_every_field() -> None:
    """The replay reference: recording patches SB3VecEnv only while it lasts, and the checksum that proves the
    replay ran the training's trajectories changes with any observation, reward or done."""
    import numpy as np

    from agents.vec_env import SB3VecEnv

    bench = _module()
    before = (SB3VecEnv.step_async, SB3VecEnv.step_wait)
    recorder = bench.ActionRecorder()
    with recorder.record():
        assert (SB3VecEnv.step_async, SB3VecEnv.step_wait) != before
    assert (SB3VecEnv.step_async, SB3VecEnv.step_wait) == before
    step = ({"proprio": np.zeros((2, 3))}, np.zeros(2), np.zeros(2, dtype=bool), [{}, {}])
    base = bench.checksum(step)
    for changed in (({"proprio": np.full((2, 3), 0.5)}, *step[1:]), (step[0], np.ones(2), *step[2:]),
                    (*step[:2], np.ones(2, dtype=bool), step[3])):  # fmt: skip
        assert bench.checksum(changed) != base
