"""Every ``gymnasium.register`` call of libero-gym.

String entry points keep ``import libero_gym`` cheap: nothing here imports
MuJoCo, robosuite or LIBERO. Ids (see :mod:`libero_gym.suites`):

- one per suite: ``LIBERO-Spatial-v0``, ``LIBERO-Object-v0``, ``LIBERO-Goal-v0``,
  ``LIBERO-10-v0`` (alias ``LIBERO-Long-v0``), ``LIBERO-90-v0``;
- one per task (130): ``LIBERO-<Suite>-Task<i>-v0``.
"""

from __future__ import annotations

import gymnasium as gym

from libero_gym import suites

ENTRY_POINT = "libero_gym.env:LiberoEnv"
VECTOR_ENTRY_POINT = "libero_gym.vector:make_vector_env"


def suite_env_ids() -> dict[str, str]:
    """Suite env id -> suite key (aliases included)."""
    ids = {f"LIBERO-{name}-v0": key for key, name in suites.SUITE_ID_NAMES.items()}
    ids.update({f"LIBERO-{alias}-v0": key for alias, key in suites.SUITE_ALIASES.items()})
    return ids


def task_env_ids() -> dict[str, suites.Task]:
    """Single-task env id -> task, for all 130 tasks."""
    return {task.env_id: task for task in suites.TASKS}


def all_env_ids() -> list[str]:
    """Every id libero-gym registers, suite ids first."""
    return [*suite_env_ids(), *task_env_ids()]


def register_envs() -> None:
    """Register all ids; a no-op for ids already registered."""
    for env_id, suite in suite_env_ids().items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                max_episode_steps=suites.MAX_EPISODE_STEPS[suite],
                kwargs={"suite": suite},
            )
    for env_id, task in task_env_ids().items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                max_episode_steps=suites.MAX_EPISODE_STEPS[task.suite],
                kwargs={"suite": task.suite, "task_id": task.index},
            )
