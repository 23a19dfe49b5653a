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
:class:`ResilientAsyncVectorEnv`: a worker that dies or whose simulator raises is
restarted and the episode it was running is ended with ``truncated=True`` and
``info["episode_dropped"]`` (:func:`dropped_mask`), counted in
``dropped_episodes``; see the class docstring for what is guaranteed and
docs/faults.md for what is not covered.

``make_vector_env(..., vectorization_mode="ray", ray_address=None)`` returns a
:class:`libero_gym.ray_vector.RayVectorEnv`: each sub-env in a Ray actor, on this
machine or across a Ray cluster, with the same semantics (and the same restarts and
dropped episodes); Ray is imported only then.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import multiprocessing
import queue
import signal
import time
from collections.abc import Callable, Sequence
from copy import deepcopy
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import error as gym_error
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from gymnasium.vector.async_vector_env import AsyncState, _async_worker  # the documented base of custom workers
from gymnasium.vector.utils import CloudpickleWrapper, clear_mpi_env_vars, create_shared_memory, iterate
from gymnasium.vector.utils import read_from_shared_memory

from libero_gym import suites
from libero_gym.errors import InvalidInputError, LiberoGymError
from libero_gym.registration import suite_env_ids, task_env_ids
from libero_gym.signals import quiet_worker_signals

VECTORIZATION_MODES = ("async", "sync", "ray")
START_METHODS = ("forkserver", "spawn", "fork")

logger = logging.getLogger(__name__)


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
    if env_id in suite_env_ids():
        return make_vector_env(num_envs, suite=suite_env_ids()[env_id], env_id=env_id, **kwargs)
    tasks = task_env_ids()
    if env_id in tasks:
        if "task_id" in kwargs:
            raise InvalidInputError(f"{env_id} is a single-task id; use its suite id to choose task_id")
        task = tasks[env_id]
        return make_vector_env(num_envs, suite=task.suite, task_id=task.index, env_id=env_id, **kwargs)
    raise InvalidInputError(f"env_id must be a libero-gym id (see `python cli.py envs`), got {env_id!r}")


# --------------------------------------------------------------------------- worker restarts
# Exceptions from a worker that are the caller's to fix (or a bug in the caller's code): they
# propagate to the parent as Gymnasium's AsyncVectorEnv does. Every other exception a worker
# raises (MuJoCo's FatalError, robosuite's MujocoException on NaN/huge accelerations, a
# RuntimeError or ValueError deep in the simulator) means "this simulator broke", like a
# worker that died (SIGKILL, segfault): the worker is restarted and its episode dropped.
PROPAGATED_ERRORS: tuple[type[BaseException], ...] = (
    LiberoGymError,  # InvalidInputError (bad action shape, NaN action), DatasetError, ...
    gym_error.Error,  # ResetNeeded, AlreadyPendingCallError, ...
    TypeError, AttributeError, NameError, ImportError, NotImplementedError, AssertionError,
    KeyboardInterrupt,  # Ctrl-C reaches the workers too (same process group)
)
# A slot that breaks this many times without one good step in between is not a flaky
# simulator but a deterministic fault (a bug, a task that cannot be built): raise it.
MAX_CONSECUTIVE_FAILURES = 3
# Seconds to wait for a dead or failed worker process to be reaped before terminating it, and
# for a failed worker's error report (it is sent before the worker answers, so it is there at once).
_JOIN_TIMEOUT_S = 5.0
# Seconds close() waits for live workers to finish the call in flight and exit before terminating them:
# a LIBERO step or reset takes well under 2 s, and SIGTERM'd commands must be done within ~30 s.
_CLOSE_TIMEOUT_S = 10.0


class WorkerFailureError(RuntimeError):
    """A vector-env slot failed ``MAX_CONSECUTIVE_FAILURES`` times in a row (not user input: a bug)."""


def _worker(*args: Any) -> None:
    """Gymnasium's worker loop, with SIGINT and SIGTERM left to the parent (:func:`quiet_worker_signals`)."""
    quiet_worker_signals()
    _async_worker(*args)


def _resilient_worker(obs_buffer: Any, index: int, env_fn: Any, pipe: Any, parent_pipe: Any, _unused: Any,
                      error_queue: Any, autoreset_mode: AutoresetMode, semaphore: Any) -> None:
    """Gymnasium's worker loop, writing into the parent's shared buffer ``obs_buffer``.

    The buffer is bound here (not passed by ``AsyncVectorEnv``, which keeps no handle on
    it) so that a restarted worker writes into the same memory as the one it replaces.
    """
    quiet_worker_signals()
    _async_worker(index, env_fn, pipe, parent_pipe, obs_buffer, error_queue, autoreset_mode, semaphore)


@dataclasses.dataclass
class _Report:
    """A restart to report for one slot at its next step."""

    reset_info: dict[str, Any]
    """The info of the restarted worker's reset (the slot's observation is already in shared memory)."""
    error: str
    """What broke: the exception, or how the process died."""


class ResilientAsyncVectorEnv(AsyncVectorEnv):
    """An ``AsyncVectorEnv`` (shared memory, NEXT_STEP autoreset) that restarts broken workers.

    A worker is *broken* when its process dies (SIGKILL, segfault, OOM kill: the pipe
    reports end of file) or when it raises an exception that is not in ``propagate``
    (default :data:`PROPAGATED_ERRORS`). The parent then starts a new process with the
    same env function, resets it with a fresh seed derived from the slot's last reset
    seed (``SeedSequence([seed, restarts of the slot])``; no seed if the slot had none)
    and reports the break at that slot's step:

    * an episode was running: the step returns ``truncated=True``, ``reward=0``, the
      restarted env's reset observation and ``info["worker_restarted"]`` and
      ``info["episode_dropped"]`` True (plus ``info["worker_error"]``, a string). The
      dropped episode's final observation is lost: do not record the episode, do not
      bootstrap from that observation. Like any NEXT_STEP episode end, the slot's next
      step ignores its action and returns the reset (``reward=0``, not done, the reset info).
    * the slot was between episodes (its previous step ended one): the step returns the
      reset the worker would have done anyway, with ``info["worker_restarted"]`` True.

    Guarantees: every step returns for every slot an observation written by a live env
    after its own reset or step (shared memory is the same buffer; ``env.observations``
    stays valid); a finished episode is never dropped; a dropped one always ends with
    ``truncated`` and ``episode_dropped`` on the step that drops it; ``num_restarts``
    counts restarted processes and ``dropped_episodes`` dropped episodes. A death noticed
    outside ``step`` (``reset`` of other slots, ``call``) restarts the worker there and is
    reported at the slot's next step. Propagated errors are raised in the parent after
    the failed worker is restarted (not reset): call ``reset()`` before stepping again,
    since the other slots did step. A slot that breaks :data:`MAX_CONSECUTIVE_FAILURES`
    times without a good step raises :class:`WorkerFailureError`.

    Not covered: a worker that hangs without dying (no timeout), attributes set with
    ``set_attr`` (a restarted env starts from its env function), ``max_concurrency``, and a
    worker killed while holding the error queue's lock (the queue may then block).

    Args:
        env_fns: functions that build the sub-envs (picklable; called again on restart).
        context: multiprocessing start method.
        daemon: daemonic worker processes.
        propagate: worker exception types raised in the parent instead of restarting.
        max_consecutive_failures: breaks in a row of one slot before giving up.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env[Any, Any]]],
        *,
        context: str | None = None,
        daemon: bool = True,
        propagate: tuple[type[BaseException], ...] = PROPAGATED_ERRORS,
        max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES,
    ) -> None:
        dummy = env_fns[0]()  # the space, to allocate the buffer the workers share (AsyncVectorEnv does the same)
        space = dummy.observation_space
        dummy.close()
        self._ctx = multiprocessing.get_context(context)
        self._obs_buffer = create_shared_memory(space, n=len(env_fns), ctx=self._ctx)
        self._worker_fn = functools.partial(_resilient_worker, self._obs_buffer)
        super().__init__(env_fns, shared_memory=False, context=context, daemon=daemon, worker=self._worker_fn,
                         autoreset_mode=AutoresetMode.NEXT_STEP)
        # Workers write to ``_obs_buffer``; from here on this is a shared-memory env.
        self.shared_memory = True
        self.observations = read_from_shared_memory(self.single_observation_space, self._obs_buffer, n=self.num_envs)
        self.propagate = propagate
        self.max_consecutive_failures = max_consecutive_failures
        self.num_restarts = 0
        """Worker processes started to replace broken ones."""
        self.dropped_episodes = 0
        """Episodes ended early (``truncated`` + ``episode_dropped``) because their worker broke."""
        n = self.num_envs
        self._seeds: list[int | None] = [None] * n  # last reset seed per slot
        self._slot_restarts = [0] * n
        self._failures = [0] * n  # breaks since the slot's last good step
        self._episode_over = [False] * n  # the slot's last step ended its episode (worker autoresets next)
        self._reports: dict[int, _Report] = {}  # restarted slots, reported at their next step
        self._pending_reset: dict[int, dict[str, Any]] = {}  # dropped slots: next step returns this reset
        self._skipped: set[int] = set()  # slots not sent the current call
        self._reset_call: tuple[list[int | None], dict[str, Any] | None] = (self._seeds, None)  # the pending reset
        self._reset_mask = np.ones(n, dtype=np.bool_)  # which slots the pending reset resets

    # ------------------------------------------------------------------ step
    def step_async(self, actions: Any) -> None:
        """Send the actions; slots with a restart to report or a pending reset are not stepped."""
        self._assert_is_running()
        if self._state != AsyncState.DEFAULT:
            raise gym_error.AlreadyPendingCallError(
                f"Calling `step_async` while waiting for a pending call to `{self._state.value}` to complete.",
                str(self._state.value),
            )
        if np.shape(actions) != self.action_space.shape:
            raise InvalidInputError(f"actions must have shape {self.action_space.shape}, got {np.shape(actions)}")
        self._skipped = set(self._reports) | set(self._pending_reset)
        for index, action in enumerate(iterate(self.action_space, actions)):
            if index not in self._skipped and not self._send(index, ("step", action)):
                self._skipped.add(index)  # died between calls: restarted now, reported below
        self._state = AsyncState.WAITING_STEP

    def step_wait(self, timeout: float | None = None) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Collect the step results, restarting broken workers (see the class docstring)."""
        self._assert_is_running()
        if self._state != AsyncState.WAITING_STEP:
            raise gym_error.NoAsyncCallError("Calling `step_wait` without any prior call to `step_async`.", "step")
        if not self._poll_pipe_envs(timeout):
            self._state = AsyncState.DEFAULT
            raise multiprocessing.TimeoutError(f"The call to `step_wait` has timed out after {timeout} second(s).")
        n = self.num_envs
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=np.bool_)
        truncated = np.zeros(n, dtype=np.bool_)
        infos: dict[str, Any] = {}
        self._state = AsyncState.DEFAULT
        received = self._receive([i for i in range(n) if i not in self._skipped])
        for index in range(n):
            if index in received:
                _, rewards[index], terminated[index], truncated[index], info = received[index]
                self._failures[index] = 0
                infos = self._add_info(infos, info, index)
            elif index in self._reports:
                report = self._reports.pop(index)
                extra = {"worker_restarted": True, "worker_error": report.error}
                if self._episode_over[index]:  # between episodes: this was the autoreset step anyway
                    infos = self._add_info(infos, {**report.reset_info, **extra}, index)
                else:
                    truncated[index] = True
                    self.dropped_episodes += 1
                    self._pending_reset[index] = report.reset_info
                    infos = self._add_info(infos, {**extra, "episode_dropped": True}, index)
            else:  # the NEXT_STEP reset after a dropped episode (done when the worker restarted)
                infos = self._add_info(infos, self._pending_reset.pop(index), index)
            self._episode_over[index] = bool(terminated[index] or truncated[index])
        obs = deepcopy(self.observations) if self.copy else self.observations
        return obs, rewards, terminated, truncated, infos

    # ------------------------------------------------------------------ reset
    def reset_async(self, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None) -> None:
        """Send the resets (``options["reset_mask"]`` honoured); restart dead workers that are to reset."""
        self._assert_is_running()
        if self._state != AsyncState.DEFAULT:
            raise gym_error.AlreadyPendingCallError(
                f"Calling `reset_async` while waiting for a pending call to `{self._state.value}` to complete",
                str(self._state.value),
            )
        n = self.num_envs
        seeds = [None] * n if seed is None else [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
        if len(seeds) != n:
            raise InvalidInputError(f"seed must be an int or a list of {n} seeds, got {len(seeds)}")
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(n, dtype=np.bool_)), dtype=np.bool_)
        if mask.shape != (n,) or not mask.any():
            raise InvalidInputError(f"options['reset_mask'] must be {n} booleans, at least one True, got {mask}")
        self._reset_call = (seeds, options or None)
        self._skipped = set()
        for index in range(n):
            if mask[index]:
                if seeds[index] is not None:  # restart seeds derive from the last explicit one
                    self._seeds[index] = seeds[index]
                message = ("reset", {"seed": seeds[index], "options": options or None})
                if not self._send(index, message):  # was dead: restarted; reset it as asked, nothing to report
                    self._reports.pop(index, None)
                    self.parent_pipes[index].send(message)
            elif not self._send(index, ("reset-noop", None)):
                self._skipped.add(index)
        self._reset_mask = mask
        self._state = AsyncState.WAITING_RESET

    def reset_wait(self, timeout: float | None = None) -> tuple[Any, dict[str, Any]]:
        """Collect the resets; a worker that breaks while resetting is restarted and reset again."""
        self._assert_is_running()
        if self._state != AsyncState.WAITING_RESET:
            raise gym_error.NoAsyncCallError("Calling `reset_wait` without any prior call to `reset_async`.", "reset")
        if not self._poll_pipe_envs(timeout):
            self._state = AsyncState.DEFAULT
            raise multiprocessing.TimeoutError(f"The call to `reset_wait` has timed out after {timeout} second(s).")
        seeds, options = self._reset_call
        expected = [i for i in range(self.num_envs) if i not in self._skipped]
        self._state = AsyncState.DEFAULT
        received = self._receive(expected, retry_reset=(seeds, options))
        infos: dict[str, Any] = {}
        for index, (_, info) in sorted(received.items()):
            if self._reset_mask[index]:
                self._reports.pop(index, None)
                self._pending_reset.pop(index, None)
                self._episode_over[index] = False
            infos = self._add_info(infos, info, index)
        obs = deepcopy(self.observations) if self.copy else self.observations
        return obs, infos

    # ------------------------------------------------------------------ call
    def call_async(self, name: str, /, *args: object, **kwargs: object) -> None:
        """Like ``AsyncVectorEnv.call_async``, after restarting dead workers (reported at their next step)."""
        for index, process in enumerate(self.processes):
            if self._state == AsyncState.DEFAULT and not process.is_alive():
                self._recover(index, self._death_message(index))
        super().call_async(name, *args, **kwargs)

    def close_extras(self, timeout: float | None = None, terminate: bool = False) -> None:
        """Stop the workers without raising and without restarting any.

        A pending call (one that Ctrl-C or SIGTERM interrupted) is abandoned, not
        waited for; dead workers (a SIGTERM to the whole process group reaches them
        too) are only reaped; live ones are asked to close and, past ``timeout``
        (default :data:`_CLOSE_TIMEOUT_S`) or with ``terminate``, terminated.
        """
        self._state = AsyncState.DEFAULT
        for index, process in enumerate(self.processes):
            if not terminate and process.is_alive() and self.parent_pipes[index] is not None:
                with contextlib.suppress(OSError):  # died just now
                    self.parent_pipes[index].send(("close", None))
        deadline = time.monotonic() + (_CLOSE_TIMEOUT_S if timeout is None else timeout)
        for index, process in enumerate(self.processes):
            if not terminate:  # a worker answers a pending step first, then the close
                process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.terminate()
                process.join(_JOIN_TIMEOUT_S)
            if process.is_alive():
                process.kill()
                process.join()
            if self.parent_pipes[index] is not None:  # closed only once its worker is gone: no BrokenPipeError there
                self.parent_pipes[index].close()
                self.parent_pipes[index] = None

    # ------------------------------------------------------------------ internals
    def _send(self, index: int, message: tuple[str, Any]) -> bool:
        """Send to a worker; if it is dead, restart it, note the restart, return False."""
        pipe = self.parent_pipes[index]
        if pipe is not None and self.processes[index].is_alive():
            try:
                pipe.send(message)
                return True
            except OSError:  # BrokenPipeError, ConnectionResetError: died just now
                pass
        self._recover(index, self._death_message(index))
        return False

    def _receive(self, indices: list[int], retry_reset: tuple[list[Any], Any] | None = None) -> dict[int, Any]:
        """Results of the workers ``indices``; broken ones are restarted (and their reset resent).

        Returns:
            index -> the worker's result, for the workers that answered (all of ``indices``
            when ``retry_reset`` is given: a reset is retried until it succeeds).

        Raises:
            The first propagated error (after restarting the failed workers), or
            WorkerFailureError.
        """
        results: dict[int, Any] = {}
        failed: dict[int, str | None] = {}  # index -> death message, or None: an exception is queued
        for index in indices:
            try:
                result, ok = self.parent_pipes[index].recv()
            except (EOFError, OSError):
                failed[index] = self._death_message(index)
                continue
            if ok:
                results[index] = result
            else:
                failed[index] = None
        propagated: BaseException | None = None
        for _ in range(sum(v is None for v in failed.values())):
            try:
                index, exc_type, value, trace = self.error_queue.get(timeout=_JOIN_TIMEOUT_S)
            except queue.Empty:  # the report was lost (e.g. an exception that does not pickle)
                break
            if failed.get(index, "") is not None:
                continue  # not a slot waiting for its report (a stale entry): ignore it
            if issubclass(exc_type, self.propagate):
                propagated = propagated or value
                self._restart(index)
                failed.pop(index)
            else:
                logger.debug("worker %d raised:\n%s", index, trace)
                failed[index] = f"{exc_type.__name__}: {value}"
        if propagated is not None:
            for index in failed:
                self._restart(index)
            raise propagated
        for index, message in failed.items():
            if retry_reset is None:
                self._recover(index, message or "worker raised; its error report was lost")
            else:  # a reset that broke: restart and reset again with the same seed
                seeds, options = retry_reset
                self._count_failure(index, message or "")
                self._restart(index)
                self._send(index, ("reset", {"seed": seeds[index], "options": options}))
                results.update(self._receive([index], retry_reset))
                results[index][1]["worker_restarted"] = True
        return results

    def _recover(self, index: int, error: str) -> None:
        """Restart a broken worker and reset it; report it at the slot's next step."""
        self._count_failure(index, error)
        logger.warning("vector env worker %d broke (%s): restarting it", index, error)
        self._restart(index)
        base = self._seeds[index]
        seed = None if base is None else int(np.random.SeedSequence([base, self._slot_restarts[index]]).generate_state(1)[0])
        self.parent_pipes[index].send(("reset", {"seed": seed, "options": None}))
        (_, info), = self._receive([index], retry_reset=([seed] * self.num_envs, None)).values()
        self._reports[index] = _Report(reset_info=info, error=error)
        self._pending_reset.pop(index, None)

    def _count_failure(self, index: int, error: str) -> None:
        self._failures[index] += 1
        if self._failures[index] > self.max_consecutive_failures:
            raise WorkerFailureError(
                f"vector env worker {index} broke {self._failures[index]} times in a row; last: {error}"
            )

    def _restart(self, index: int) -> None:
        """Replace worker ``index`` by a new process running the same env function."""
        old_pipe, old_process = self.parent_pipes[index], self.processes[index]
        if old_pipe is not None:
            old_pipe.close()
        old_process.join(_JOIN_TIMEOUT_S)
        if old_process.is_alive():
            old_process.terminate()
            old_process.join()
        parent_pipe, child_pipe = self._ctx.Pipe()
        with clear_mpi_env_vars():
            process = self._ctx.Process(
                target=self._worker_fn,
                name=f"Worker<{type(self).__name__}>-{index}",
                args=(index, CloudpickleWrapper(self.env_fns[index]), child_pipe, parent_pipe, None,
                      self.error_queue, self.autoreset_mode, None),
                daemon=self.daemon,
            )
            process.start()
        child_pipe.close()
        self.parent_pipes[index], self.processes[index] = parent_pipe, process
        self.num_restarts += 1
        self._slot_restarts[index] += 1

    def _death_message(self, index: int) -> str:
        process = self.processes[index]
        process.join(_JOIN_TIMEOUT_S)
        code = process.exitcode
        if code is not None and code < 0:
            return f"worker process died from signal {signal.Signals(-code).name}"
        return f"worker process exited (exit code {code})"


def dropped_mask(infos: dict[str, Any], num_envs: int) -> np.ndarray:
    """Which slots' episodes ended because their worker broke (``(num_envs,)`` bool; none if absent)."""
    if "episode_dropped" not in infos:
        return np.zeros(num_envs, dtype=np.bool_)
    return np.asarray(infos["episode_dropped"], dtype=np.bool_) & np.asarray(infos["_episode_dropped"], dtype=np.bool_)
