"""Vectorized LIBERO envs: one simulator per worker process, built inside it.

``gym.make_vec("LIBERO-Goal-v0", num_envs=8)`` (no ``vectorization_mode``) comes
here through the registered ``vector_entry_point``; :func:`make_vec` is the same
with an env id. Async workers start with ``forkserver`` by default: a worker never
inherits the parent's threads (torch), GL contexts or simulators. Observations
travel through shared memory (Gymnasium's ``AsyncVectorEnv(shared_memory=True)``).

``gym.make_vec(..., vectorization_mode="async")`` uses Gymnasium's own
``AsyncVectorEnv`` with the platform's default start method; that is safe too,
because a libero-gym env builds its simulator lazily, in the worker.

``make_vector_env(..., restart_dead_workers=True)`` returns a
:class:`~libero_gym.resilient_vector.ResilientAsyncVectorEnv`: a worker that dies or whose
simulator raises is restarted and the episode it was running is ended with ``truncated=True``
and ``info["episode_dropped"]`` (:func:`~libero_gym.resilient_vector.dropped_mask`), counted in
``dropped_episodes``; see the class docstring for what is guaranteed and
docs/faults.md for what is not covered.

``make_vector_env(..., vectorization_mode="ray", ray_address=None)`` returns a
:class:`libero_gym.ray_vector.RayVectorEnv`: each sub-env in a Ray actor, on this
machine or across a Ray cluster, with the same semantics (and the same restarts and
dropped episodes); Ray is imported only then.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.async_vector_env import _async_worker  # the documented base of custom workers

from libero_gym import suites
from libero_gym.errors import InvalidInputError
from libero_gym.registration import lookup_env
from libero_gym.resilient_vector import ResilientAsyncVectorEnv
from libero_gym.signals import quiet_worker_signals

VECTORIZATION_MODES = ("async", "sync", "ray")
START_METHODS = ("forkserver", "spawn", "fork")

def _worker(*args: Any) -> None:
    """Gymnasium's worker loop, with SIGINT and SIGTERM left to the parent (:func:`quiet_worker_signals`)."""
    quiet_worker_signals()
    _async_worker(*args)


def _make_one(env_id: str, kwargs: dict[str, Any]) -> gym.Env[Any, Any]:
    """Build one env in a worker; module-level so workers unpickle it by reference."""
    import libero_gym  # noqa: F401  (registers the ids in a fresh worker)

    return gym.make(env_id, **kwargs)


def make_vector_env(
    num_envs: int = 1,
    *,
    suite: str = "libero_goal",
    task_id: int | Sequence[int] | str = 0,
    task_per_worker: bool = False,
    vectorization_mode: str = "async",
    context: str = "forkserver",
    shared_memory: bool = True,
    autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP,
    env_id: str | None = None,
    restart_dead_workers: bool = False,
    ray_address: str | None = None,
    **env_kwargs: Any,
) -> VectorEnv:
    """Make ``num_envs`` copies of a libero-gym env as one vector env.

    Args:
        num_envs: number of sub-envs (one worker process each in async mode).
        suite: suite key or id name.
        task_id: task index, list of indices or ``"all"``, as for ``LiberoEnv``.
        task_per_worker: give worker ``i`` the single task ``task_ids[i % n]``
            instead of letting every worker draw among all of them at each reset.
        vectorization_mode: ``"async"`` (processes), ``"sync"`` (in-process) or ``"ray"``
            (Ray actors: a :class:`~libero_gym.ray_vector.RayVectorEnv`, which always replaces
            broken actors as ``restart_dead_workers`` does; ``context`` and ``shared_memory``
            do not apply).
        context: multiprocessing start method for async workers.
        shared_memory: pass observations through shared memory (async).
        autoreset_mode: Gymnasium's autoreset mode.
        env_id: the registered id to make (default: the suite's id).
        restart_dead_workers: async only: a :class:`ResilientAsyncVectorEnv`, which restarts
            a worker that died or whose simulator raised, and drops (truncates, flags) the
            episode it was running. Needs shared memory and NEXT_STEP autoreset.
        ray_address: ``"ray"`` mode only: ``None`` uses the Ray this process is connected to
            or starts a local one; an address (``"auto"``, ``"host:6379"``) joins that cluster.
        **env_kwargs: further ``LiberoEnv`` arguments and ``max_episode_steps``. An
            ``init_state_ids`` sequence is dealt round-robin over the workers (worker
            ``w`` cycles through ``init_state_ids[w::num_envs]``), so that together they
            start from each listed init state once before any repeats.
    """
    if isinstance(num_envs, bool) or not isinstance(num_envs, int) or num_envs < 1:
        raise InvalidInputError(f"num_envs must be an int >= 1, got {num_envs!r}")
    if vectorization_mode not in VECTORIZATION_MODES:
        raise InvalidInputError(
            f"vectorization_mode must be one of {list(VECTORIZATION_MODES)}, got {vectorization_mode!r}"
        )
    if context not in START_METHODS:
        raise InvalidInputError(f"context must be one of {list(START_METHODS)}, got {context!r}")
    suite = suites.resolve_suite(suite)
    task_ids = suites.resolve_task_ids(suite, task_id)
    if env_id is None:
        env_id = f"LIBERO-{suites.SUITE_ID_NAMES[suite]}-v0"
    per_env_tasks: list[int | Sequence[int]] = (
        [task_ids[i % len(task_ids)] for i in range(num_envs)] if task_per_worker else [task_ids] * num_envs
    )
    init_state_ids = env_kwargs.pop("init_state_ids", None)
    if init_state_ids is not None and len(init_state_ids) < num_envs:
        raise InvalidInputError(f"init_state_ids needs at least num_envs={num_envs} ids, got {list(init_state_ids)}")
    per_env_init_states = [
        None if init_state_ids is None else tuple(init_state_ids)[w::num_envs] for w in range(num_envs)
    ]
    env_fns = [
        functools.partial(
            _make_one,
            env_id,
            {**env_kwargs, "suite": suite, "task_id": tasks, **({} if init_states is None else {"init_state_ids": init_states})},
        )
        for tasks, init_states in zip(per_env_tasks, per_env_init_states)
    ]
    if ray_address is not None and vectorization_mode != "ray":
        raise InvalidInputError(f"ray_address needs vectorization_mode='ray', got {vectorization_mode!r}")
    if vectorization_mode == "ray":
        from libero_gym.ray_vector import RayVectorEnv  # imports Ray: only when asked for

        return RayVectorEnv(env_fns, ray_address=ray_address, autoreset_mode=autoreset_mode)
    if restart_dead_workers:
        if vectorization_mode != "async" or not shared_memory or AutoresetMode(autoreset_mode) != AutoresetMode.NEXT_STEP:
            raise InvalidInputError(
                "restart_dead_workers needs vectorization_mode='async', shared_memory=True and NEXT_STEP autoreset"
            )
        return ResilientAsyncVectorEnv(env_fns, context=context)
    if vectorization_mode == "sync":
        return SyncVectorEnv(env_fns, autoreset_mode=autoreset_mode)
    return AsyncVectorEnv(env_fns, shared_memory=shared_memory, context=context, autoreset_mode=autoreset_mode,
                          worker=_worker)


def make_vec(env_id: str, num_envs: int = 1, **kwargs: Any) -> VectorEnv:
    """Like ``gym.make_vec`` for a libero-gym id, with the options of :func:`make_vector_env`."""
    suite, index = lookup_env(env_id)
    if index is None:
        return make_vector_env(num_envs, suite=suite, env_id=env_id, **kwargs)
    if "task_id" in kwargs:
        raise InvalidInputError(f"{env_id} is a single-task id; use its suite id to choose task_id")
    return make_vector_env(num_envs, suite=suite, task_id=index, env_id=env_id, **kwargs)
