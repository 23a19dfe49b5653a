"""Every ``gymnasium.register`` call of libero-gym.

String entry points keep ``import libero_gym`` cheap: nothing here imports
MuJoCo, robosuite or LIBERO. Ids (see :mod:`libero_gym.suites`):

- one per suite: ``LIBERO-Spatial-v0``, ``LIBERO-Object-v0``, ``LIBERO-Goal-v0``,
  ``LIBERO-10-v0`` (alias ``LIBERO-Long-v0``), ``LIBERO-90-v0``;
- one per task (130): ``LIBERO-<Suite>-Task<i>-v0``;
- ``LIBERO-Custom-v0``: a task from the user's BDDL file (``bddl_file=PATH``), see
  :mod:`libero_gym.custom_tasks`.
"""

from __future__ import annotations

from collections.abc import Sequence

import gymnasium as gym

from libero_gym import suites
from libero_gym.errors import InvalidInputError

ENTRY_POINT = "libero_gym.env:LiberoEnv"
VECTOR_ENTRY_POINT = "libero_gym.vector:make_vector_env"
CUSTOM_ENV_ID = "LIBERO-Custom-v0"
CUSTOM_ENTRY_POINT = "libero_gym.custom_tasks:CustomLiberoEnv"
CUSTOM_MAX_EPISODE_STEPS = 400
"""Step limit of ``LIBERO-Custom-v0`` (LIBERO-90's; ``libero_gym.custom_tasks`` uses the same)."""


def suite_env_ids() -> dict[str, str]:
    """Suite env id -> suite key (aliases included)."""
    ids = {f"LIBERO-{name}-v0": key for key, name in suites.SUITE_ID_NAMES.items()}
    ids.update({f"LIBERO-{alias}-v0": key for alias, key in suites.SUITE_ALIASES.items()})
    return ids


def task_env_ids() -> dict[str, suites.Task]:
    """Single-task env id -> task, for all 130 tasks."""
    return {task.env_id: task for task in suites.TASKS}


def lookup_env(env_id: str) -> tuple[str, int | None]:
    """``(suite key, task index)`` of a libero-gym id; the index is ``None`` for a suite id.

    The one place an env id is looked up (``make_vec``, :class:`libero_gym.env_config.EnvConfig`,
    ``collect``, and the agents' commands all go through it).

    Raises:
        InvalidInputError: not a libero-gym id.
    """
    suite = suite_env_ids().get(env_id)
    if suite is not None:
        return suite, None
    task = task_env_ids().get(env_id)
    if task is None:
        raise InvalidInputError(f"env must be a libero-gym id (see `python cli.py envs`), got {env_id!r}")
    return task.suite, task.index


def resolve_env(env_id: str, task_ids: Sequence[int] = (), *, strict: bool = True) -> tuple[str, tuple[int, ...]]:
    """The suite and task indices that ``env_id`` (and ``task_ids``, for a suite id) name.

    Args:
        env_id: a libero-gym id: a suite id (``LIBERO-Goal-v0``) or a single-task id
            (``LIBERO-Goal-Task3-v0``).
        task_ids: task indices within the suite (a suite id needs at least one).
        strict: for a single-task id, refuse ``task_ids`` other than ``()``, ``(0,)`` (the
            default of the commands) or its own index; ``False`` ignores them.

    Raises:
        InvalidInputError: an unknown id, a task index out of range, task ids for a single-task id.
    """
    suite, index = lookup_env(env_id)
    if index is not None:
        if strict and tuple(task_ids) not in ((), (0,), (index,)):
            raise InvalidInputError(f"{env_id} is a single-task id; use its suite id to choose --task-id")
        return suite, (index,)
    if not task_ids:
        raise InvalidInputError("task_id needs at least one index")
    return suite, tuple(suites.get_task(suite, int(t)).index for t in task_ids)


def suite_env_id(suite: str) -> str:
    """The suite id (``LIBERO-Goal-v0``) of a suite key or name."""
    return f"LIBERO-{suites.SUITE_ID_NAMES[suites.resolve_suite(suite)]}-v0"


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
    if CUSTOM_ENV_ID not in gym.registry:
        gym.register(id=CUSTOM_ENV_ID, entry_point=CUSTOM_ENTRY_POINT, max_episode_steps=CUSTOM_MAX_EPISODE_STEPS)
    for env_id, task in task_env_ids().items():
        if env_id not in gym.registry:
            gym.register(
                id=env_id,
                entry_point=ENTRY_POINT,
                vector_entry_point=VECTOR_ENTRY_POINT,
                max_episode_steps=suites.MAX_EPISODE_STEPS[task.suite],
                kwargs={"suite": task.suite, "task_id": task.index},
            )
