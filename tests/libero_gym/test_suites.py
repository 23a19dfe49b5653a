"""The static task table equals what LIBERO's benchmark reports."""

from __future__ import annotations

import os

import pytest

from libero_gym import suites
from libero_gym.errors import InvalidInputError


def test_130_tasks_in_five_suites() -> None:
    assert len(suites.TASKS) == 130
    assert {suite: len(tasks) for suite, tasks in suites.SUITES.items()} == {
        "libero_spatial": 10,
        "libero_object": 10,
        "libero_goal": 10,
        "libero_10": 10,
        "libero_90": 90,
    }
    assert {p for task in suites.TASKS for p in task.goal_predicates} == {
        "in", "on", "open", "close", "turnon", "turnoff"
    }


def test_table_matches_libero_benchmark() -> None:
    from libero_gym.libero_config import import_libero

    libero_pkg = import_libero()
    from libero.libero import benchmark

    for suite, tasks in suites.SUITES.items():
        bench = benchmark.get_benchmark_dict()[suite]()
        assert bench.n_tasks == len(tasks)
        for task in tasks:
            upstream = bench.get_task(task.index)
            assert (upstream.name, upstream.language, upstream.bddl_file, upstream.init_states_file) == (
                task.name, task.language, task.bddl_file, task.init_states_file
            )
            assert os.path.isfile(
                os.path.join(libero_pkg.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
            )


@pytest.mark.parametrize("name,key", [("Goal", "libero_goal"), ("LIBERO-Long", "libero_10"), ("10", "libero_10"),
                                      ("libero_90", "libero_90"), ("spatial", "libero_spatial")])
def test_resolve_suite(name: str, key: str) -> None:
    assert suites.resolve_suite(name) == key


def test_bad_suite_and_task_name_valid_choices() -> None:
    with pytest.raises(InvalidInputError, match="libero_goal"):
        suites.resolve_suite("kitchen")
    with pytest.raises(InvalidInputError, match=r"\[0, 9\]"):
        suites.get_task("libero_goal", 10)
    with pytest.raises(InvalidInputError, match="'all'"):
        suites.resolve_task_ids("libero_goal", "some")
    assert suites.resolve_task_ids("libero_goal", "all") == tuple(range(10))
