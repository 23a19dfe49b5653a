"""``cli.py envs``: the table of every registered env id (config and function)."""

from __future__ import annotations

import dataclasses

from libero_gym import suites
from libero_gym.registration import suite_env_ids


@dataclasses.dataclass(frozen=True)
class EnvsConfig:
    """List every registered env id with its task's language instruction."""

    suite: str | None = None
    """Only this suite (``libero_goal``, ``Goal``, ``Long``, ...); default all."""


def list_envs(config: EnvsConfig) -> int:
    """Print the env-id table; returns the exit code."""
    from rich.console import Console
    from rich.table import Table

    only = suites.resolve_suite(config.suite) if config.suite is not None else None
    table = Table(title="libero-gym environments")
    table.add_column("env id", no_wrap=True)
    table.add_column("suite")
    table.add_column("scene")
    table.add_column("goal")
    table.add_column("language instruction")
    for env_id, suite in suite_env_ids().items():
        if only in (None, suite):
            n = len(suites.SUITES[suite])
            table.add_row(env_id, suite, "-", "-", f"suite env: task_id in [0, {n - 1}], a list, or 'all'")
    for task in suites.TASKS:
        if only in (None, task.suite):
            table.add_row(task.env_id, task.suite, task.scene_family, ",".join(task.goal_predicates), task.language)
    Console(width=200).print(table)
    return 0
