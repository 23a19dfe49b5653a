"""A vector env whose sub-envs are Ray actors: one machine or a whole Ray cluster.

``make_vector_env(n, ..., vectorization_mode="ray")`` (or ``make_vec(id, n,
vectorization_mode="ray")``) returns a :class:`RayVectorEnv`; everything else about
the envs (tasks dealt with ``task_id``/``task_per_worker``, ``init_state_ids`` dealt
round-robin, ``chunk_size`` for (Ta, 7) action chunks, observation modes) is the same
as for the sync and async vector envs, which it equals step for step
(tests/libero_gym/test_ray_vector.py).

Semantics are those of :class:`libero_gym.resilient_vector.ResilientAsyncVectorEnv`: Gymnasium
1.x ``NEXT_STEP`` autoreset, infos merged with ``_key`` masks, ``reset_mask`` honoured,
and a broken actor (killed, its process crashed, or its simulator raised) is replaced,
the episode it was running ended with ``truncated=True`` and ``info["episode_dropped"]``
and counted in ``dropped_episodes`` and ``num_restarts``. See docs/faults.md, "Vector
envs on Ray".

``import libero_gym`` does not import Ray; this module imports it when an env is made.

Shapes: N sub-envs (actors); observations are Dicts of arrays with a leading N axis;
actions (N, 7), or (N, Ta, 7) with ``chunk_size=Ta``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import pickle
import time
import traceback
from collections.abc import Callable, Sequence
from copy import deepcopy
from multiprocessing import connection as mp_connection
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space, concatenate, create_empty_array, iterate

from libero_gym.backend import FORWARDED_ENV_VARS, LOCAL_OBJECT_STORE_BYTES, start_or_connect  # noqa: F401
from libero_gym.errors import InvalidInputError, LiberoGymError
from libero_gym.resilient_vector import MAX_CONSECUTIVE_FAILURES, PROPAGATED_ERRORS, WorkerFailureError

logger = logging.getLogger(__name__)

START_TIMEOUT_S = 300.0
"""Seconds to wait for all actors to be placed and built: an actor starts and builds its env in under
30 s even on a loaded machine; longer means the resources of ``actor_options`` are taken by other jobs."""
LIVENESS_POLL_S = 1.0
"""Seconds of waiting for an answer after which the actors still owing one are checked with Ray: a killed
process closes its connection at once, but a node that vanished from the network closes nothing."""
DEATH_REPORT_TIMEOUT_S = 10.0
"""Seconds to wait for Ray's account of why an actor whose connection dropped died (it comes within ~1 s)."""
CLOSE_TIMEOUT_S = 10.0
"""Seconds ``close`` waits for the actors to close their simulators before killing them (as the async env)."""


@dataclasses.dataclass
class RemoteError:
    """An exception the env raised inside an actor, with the actor's traceback."""

    exception: BaseException
    traceback: str


class EnvActor:
    """One sub-env inside a Ray actor: Gymnasium's async worker loop behind a direct connection.

    The env function runs here, in the actor's process; a libero-gym env builds its
    simulator at its first reset, so nothing of MuJoCo ever lives in the driver. Ray
    places, supervises and kills the actor; the steps go over a
    ``multiprocessing.connection`` (TCP, authenticated with a per-env key) that
    :meth:`serve` answers, because a Ray actor call costs 2-7 ms per round trip on a
    loaded 2-core machine against 0.4 ms for the connection (a LIBERO state step is ~4 ms).
    """

    def __init__(self, env_fn: Callable[[], gym.Env[Any, Any]], authkey: bytes) -> None:
        import ray

        import libero_gym  # noqa: F401  (registers the ids in a fresh worker)

        self.env = env_fn()
        self.autoreset = False  # the last step ended an episode: the next step resets
        self.listener = mp_connection.Listener((ray.util.get_node_ip_address(), 0), authkey=authkey)

    def node_id(self) -> str:
        """The Ray node this actor runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()

    def address(self) -> tuple[tuple[str, int], str]:
        """Where :meth:`serve` listens, and the node id."""
        return self.listener.address, self.node_id()

    def serve(self) -> None:
        """Answer the driver's commands until ``close`` (or the connection drops): Gymnasium's worker loop.

        Each command gets ``(result, True)``, or ``(RemoteError, False)`` if the env raised;
        the loop goes on after an error (the driver decides whether to replace the actor).
        After ``close`` the actor exits: its ``serve`` call resolves with ``RayActorError``.
        """
        with self.listener.accept() as conn:
            self.listener.close()
            while True:
                try:
                    command, data = conn.recv()
                except (EOFError, OSError):  # the driver is gone
                    break
                try:
                    result = getattr(self, f"_{command}")(*data)
                except Exception as error:  # noqa: BLE001  (sent to the driver, which decides)
                    trace = traceback.format_exc()
                    try:
                        pickle.dumps(error)
                    except Exception:  # noqa: BLE001
                        error = RuntimeError(f"{type(error).__name__}: {error}")
                    conn.send((RemoteError(error, trace), False))
                    continue
                conn.send((result, True))
                if command == "close":
                    break
        import ray

        ray.actor.exit_actor()  # the simulator is closed: end the process, free the actor's resources

    def _reset(self, seed: int | None, options: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.autoreset = False
        return obs, info

    def _step(self, action: np.ndarray) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        if self.autoreset:
            obs, info = self.env.reset()
            reward, terminated, truncated = 0.0, False, False
        else:
            obs, reward, terminated, truncated, info = self.env.step(action)
        self.autoreset = bool(terminated or truncated)
        return obs, reward, terminated, truncated, info

    def _call(self, name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if name in ("reset", "step", "close", "set_attr"):
            raise InvalidInputError(f"call({name!r}): use the vector env's {name}() directly")
        attr = self.env.get_wrapper_attr(name)
        return attr(*args, **kwargs) if callable(attr) else attr

    def _set_attr(self, name: str, value: Any) -> None:
        self.env.set_wrapper_attr(name, value)

    def _close(self) -> None:
        self.env.close()


def connect(ray_address: str | None, num_cpus: int) -> bool:
    """:func:`libero_gym.backend.start_or_connect` (kept under this name for the vector env's callers).

    Args:
        ray_address: ``None``: the Ray this process is connected to, else a new local one with
            ``num_cpus`` logical CPUs; an address (``"auto"``, ``"host:6379"``): that cluster.
        num_cpus: logical CPUs of a local Ray (Ray prestarts about one idle worker process per CPU).

    Returns:
        Whether this call started or connected Ray (False: it was already connected).

    Raises:
        InvalidInputError: connected to another cluster already, or no cluster at the address.
        LiberoGymError: a local Ray did not start.
    """
    return start_or_connect(ray_address, num_cpus)


def deal_over_nodes(ray: Any, count: int) -> list[Any]:
    """``count`` soft node-affinity strategies: the live nodes with CPUs, each as often as it has CPUs.

    Ray's ``"SPREAD"`` does not spread actors that hold no CPU (ray-project/ray#27577), and its
    default strategy packs them on the first node: dealt, a cluster's nodes get their share.
    """
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    cpus = {node["NodeID"]: int(node["Resources"].get("CPU", 0)) for node in ray.nodes() if node["Alive"]}
    order = [node for r in range(max(cpus.values(), default=0)) for node, count_ in cpus.items() if count_ > r]
    return [NodeAffinitySchedulingStrategy(order[i % len(order)], soft=True) for i in range(count)]


class RayVectorEnv(VectorEnv):
    """A Gymnasium vector env (``NEXT_STEP`` autoreset) stepping one Ray actor per sub-env.

    Each step sends every actor its action and waits for all of them, as the async
    vector env does with its worker processes. Observations, rewards, terminations,
    truncations and infos are those of ``SyncVectorEnv``/``AsyncVectorEnv`` on the same
    env functions and seeds.

    An actor is *broken* when it dies (``ray.kill``, its process crashed or was OOM-killed,
    its node left the cluster) or when its env raises an exception that is not in
    ``propagate`` (default :data:`libero_gym.resilient_vector.PROPAGATED_ERRORS`). The broken actor
    is killed and replaced by a new one with the same env function, reset with a seed
    derived from the slot's last reset seed (``SeedSequence([seed, restarts of the
    slot])``; no seed if the slot had none), and the break is reported at that slot's
    step exactly as :class:`~libero_gym.resilient_vector.ResilientAsyncVectorEnv` reports it:

    * an episode was running: ``truncated=True``, ``reward=0``, the new env's reset
      observation, ``info["worker_restarted"]``, ``info["episode_dropped"]`` and
      ``info["worker_error"]`` (a string); the slot's next step is the ``NEXT_STEP``
      reset step (action ignored, ``reward=0``, the reset info).
    * the slot was between episodes: the step returns that reset, with
      ``info["worker_restarted"]``; nothing is dropped.

    ``num_restarts`` counts replaced actors, ``dropped_episodes`` dropped episodes. A
    break noticed during ``reset`` is repaired there (the new actor is reset as asked,
    ``info["worker_restarted"]``); one noticed during ``call`` is repaired, reported at
    the slot's next step, and the call is repeated on the new actor. A slot that breaks
    more than ``max_consecutive_failures`` times without a good step raises
    :class:`~libero_gym.resilient_vector.WorkerFailureError`. Propagated errors (user errors) are
    raised here; the actor that raised keeps its env (a user error does not break the
    simulator), but the other slots did step: call ``reset()`` before stepping again.

    Not covered: an actor that hangs without dying (no timeout), attributes set with
    ``set_attr`` (a new actor starts from its env function), the driver process itself.

    Args:
        env_fns: functions that build the sub-envs (picklable by Ray; called again on replacement).
        ray_address: see :func:`connect`.
        autoreset_mode: only ``NEXT_STEP`` (the dropped-episode protocol is defined for it).
        copy: return copies of the observation buffer (as Gymnasium's vector envs do).
        actor_options: Ray ``.options()`` for each actor. By default the slots are dealt over
            the cluster's live nodes in proportion to their CPUs (soft node affinity: a
            replacement goes to its slot's node, or elsewhere if that node is gone), and each
            actor has Ray's default actor resources (a node with a CPU to be placed on, no CPU
            held while it runs), so that more envs than cores share the cores as the async
            env's processes do, and a second vector env in the same Ray never waits for the
            first one's CPUs. ``{"num_cpus": 1}`` reserves a CPU per actor; a
            ``scheduling_strategy`` replaces the dealing; ``{"num_gpus": 0.25}`` or
            ``{"resources": {...}}`` place actors on GPU or labelled nodes.
        propagate: env exception types raised here instead of replacing the actor.
        max_consecutive_failures: breaks in a row of one slot before giving up.
    """

    def __init__(
        self,
        env_fns: Sequence[Callable[[], gym.Env[Any, Any]]],
        *,
        ray_address: str | None = None,
        autoreset_mode: AutoresetMode | str = AutoresetMode.NEXT_STEP,
        copy: bool = True,
        actor_options: dict[str, Any] | None = None,
        propagate: tuple[type[BaseException], ...] = PROPAGATED_ERRORS,
        max_consecutive_failures: int = MAX_CONSECUTIVE_FAILURES,
    ) -> None:
        super().__init__()
        if AutoresetMode(autoreset_mode) != AutoresetMode.NEXT_STEP:
            raise InvalidInputError(f"RayVectorEnv supports autoreset_mode NEXT_STEP only, got {autoreset_mode!r}")
        if len(env_fns) < 1:
            raise InvalidInputError("RayVectorEnv needs at least one env function")
        self.env_fns = list(env_fns)
        self.num_envs = len(self.env_fns)
        self.copy = copy
        self.autoreset_mode = AutoresetMode.NEXT_STEP
        self.propagate = propagate
        self.max_consecutive_failures = max_consecutive_failures
        # The spaces, from an env built here: a libero-gym env builds no simulator before its first reset
        # (AsyncVectorEnv does the same); a bad env argument fails here, with its own message.
        dummy = self.env_fns[0]()
        self.metadata = {**dummy.metadata, "autoreset_mode": self.autoreset_mode}
        self.render_mode = dummy.render_mode
        self.single_observation_space = dummy.observation_space
        self.single_action_space = dummy.action_space
        dummy.close()
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        self.action_space = batch_space(self.single_action_space, self.num_envs)
        self.observations = create_empty_array(self.single_observation_space, n=self.num_envs, fn=np.zeros)
        """The latest observations (N leading), updated in place by ``reset`` and ``step``."""

        import ray

        self._ray = ray
        self._options: dict[str, Any] = dict(actor_options or {})
        # A local Ray gets a CPU per env up to the machine's cores: more would only prestart idle workers.
        connect(ray_address, num_cpus=min(os.cpu_count() or 1, self.num_envs))
        needed = self.num_envs * float(self._options.get("num_cpus", 0))
        total = ray.cluster_resources().get("CPU", 0.0)
        if total < max(needed, 1):
            raise InvalidInputError(
                f"the Ray cluster has {total:g} CPUs; {self.num_envs} actors with actor_options={self._options} "
                f"need {max(needed, 1):g}"
            )
        self._actor_cls = ray.remote(EnvActor)
        self._strategies = deal_over_nodes(ray, self.num_envs) if "scheduling_strategy" not in self._options else None
        n = self.num_envs
        self.actors: list[Any] = [None] * n
        """One Ray actor handle per slot (replaced when broken)."""
        self._conns: list[mp_connection.Connection | None] = [None] * n  # the direct connection to each actor
        self._serving: list[Any] = [None] * n  # each actor's ``serve`` call: resolves with its death
        self._node_ids: list[str] = [""] * n
        self.num_restarts = 0
        """Actors started to replace broken ones."""
        self.dropped_episodes = 0
        """Episodes ended early (``truncated`` + ``episode_dropped``) because their actor broke."""
        self._start(range(n))
        self._env_obs: list[Any] = [None] * n  # the latest observation of each slot
        self._seeds: list[int | None] = [None] * n  # last explicit reset seed per slot
        self._slot_restarts = [0] * n
        self._failures = [0] * n  # breaks since the slot's last good step
        self._episode_over = [False] * n  # the slot's last step ended its episode (its actor resets next)
        self._reports: dict[int, tuple[dict[str, Any], str]] = {}  # replaced slots: (reset info, error), next step
        self._pending_reset: dict[int, dict[str, Any]] = {}  # dropped slots: next step returns this reset info

    # ------------------------------------------------------------------ reset and step
    def reset(
        self, *, seed: int | list[int | None] | None = None, options: dict[str, Any] | None = None
    ) -> tuple[Any, dict[str, Any]]:
        """Reset the sub-envs (all, or those of ``options["reset_mask"]``); seeds as Gymnasium's vector envs."""
        n = self.num_envs
        seeds = [None] * n if seed is None else [seed + i for i in range(n)] if isinstance(seed, int) else list(seed)
        if len(seeds) != n:
            raise InvalidInputError(f"seed must be an int or a list of {n} seeds, got {len(seeds)}")
        options = dict(options or {})
        mask = np.asarray(options.pop("reset_mask", np.ones(n, dtype=np.bool_)), dtype=np.bool_)
        if mask.shape != (n,) or not mask.any():
            raise InvalidInputError(f"options['reset_mask'] must be {n} booleans, at least one True, got {mask}")
        indices = [i for i in range(n) if mask[i]]
        for index in indices:
            if seeds[index] is not None:  # replacement seeds derive from the last explicit one
                self._seeds[index] = seeds[index]
        results, errors = self._exchange({i: ("reset", (seeds[i], options or None)) for i in indices})
        for index, error in errors.items():  # broke while resetting: replace it and reset again as asked
            if self._propagated(error) is None:
                self._count_failure(index, self._describe(error))
                self._replace(index)
                obs, info = self._reset_slot(index, seeds[index], options or None)
                results[index] = (obs, {**info, "worker_restarted": True})
        self._raise_propagated(errors)
        infos: dict[str, Any] = {}
        for index in indices:
            self._env_obs[index], info = results[index]
            self._reports.pop(index, None)
            self._pending_reset.pop(index, None)
            self._episode_over[index] = False
            infos = self._add_info(infos, info, index)
        return self._batch_observations(), infos

    def step(self, actions: Any) -> tuple[Any, np.ndarray, np.ndarray, np.ndarray, dict[str, Any]]:
        """Step every actor; slots with a replacement to report or a pending reset are not stepped."""
        if np.shape(actions) != self.action_space.shape:
            raise InvalidInputError(f"actions must have shape {self.action_space.shape}, got {np.shape(actions)}")
        n = self.num_envs
        skipped = set(self._reports) | set(self._pending_reset)
        results, errors = self._exchange({
            index: ("step", (action,))
            for index, action in enumerate(iterate(self.action_space, actions))
            if index not in skipped
        })
        for index, error in errors.items():
            if self._propagated(error) is None:
                self._recover(index, self._describe(error))
        self._raise_propagated(errors)
        rewards = np.zeros(n, dtype=np.float64)
        terminated = np.zeros(n, dtype=np.bool_)
        truncated = np.zeros(n, dtype=np.bool_)
        infos: dict[str, Any] = {}
        for index in range(n):
            if index in results:
                self._env_obs[index], rewards[index], terminated[index], truncated[index], info = results[index]
                self._failures[index] = 0
                infos = self._add_info(infos, info, index)
            elif index in self._reports:
                reset_info, error = self._reports.pop(index)
                extra = {"worker_restarted": True, "worker_error": error}
                if self._episode_over[index]:  # between episodes: this was the autoreset step anyway
                    infos = self._add_info(infos, {**reset_info, **extra}, index)
                else:
                    truncated[index] = True
                    self.dropped_episodes += 1
                    self._pending_reset[index] = reset_info
                    infos = self._add_info(infos, {**extra, "episode_dropped": True}, index)
            else:  # the NEXT_STEP reset after a dropped episode (done when the actor was replaced)
                infos = self._add_info(infos, self._pending_reset.pop(index), index)
            self._episode_over[index] = bool(terminated[index] or truncated[index])
        return self._batch_observations(), rewards, terminated, truncated, infos

    # ------------------------------------------------------------------ call, attributes, render
    def call(self, name: str, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
        """Call a method of every sub-env (or read an attribute), as ``AsyncVectorEnv.call``."""
        message = ("call", (name, args, kwargs))
        results, errors = self._exchange(dict.fromkeys(range(self.num_envs), message))
        self._raise_propagated(errors)
        for index, error in errors.items():  # replaced (reported at its next step); ask the new actor
            while error is not None:
                self._recover(index, self._describe(error))
                retry, retry_errors = self._exchange({index: message})
                results.update(retry)
                self._raise_propagated(retry_errors)
                error = retry_errors.get(index)
        return tuple(results[i] for i in range(self.num_envs))

    def get_attr(self, name: str) -> tuple[Any, ...]:
        """An attribute of every sub-env."""
        return self.call(name)

    def set_attr(self, name: str, values: list[Any] | tuple[Any, ...] | Any) -> None:
        """Set an attribute on every sub-env (one value, or one per sub-env); not replayed on replacement."""
        if not isinstance(values, (list, tuple)):
            values = [values] * self.num_envs
        if len(values) != self.num_envs:
            raise InvalidInputError(f"set_attr needs one value or {self.num_envs} values, got {len(values)}")
        _, errors = self._exchange({i: ("set_attr", (name, value)) for i, value in enumerate(values)})
        self._raise_propagated(errors)
        for index, error in errors.items():  # the new actor starts from its env function (documented)
            self._recover(index, self._describe(error))

    def render(self) -> tuple[Any, ...]:
        """Each sub-env's ``render()``."""
        return self.call("render")

    def node_ids(self) -> list[str]:
        """The Ray node id of each slot's actor."""
        return list(self._node_ids)

    def close_extras(self, timeout: float | None = None, terminate: bool = False, **kwargs: Any) -> None:
        """Close the simulators (up to ``timeout``, default :data:`CLOSE_TIMEOUT_S`), then kill the actors."""
        ray = getattr(self, "_ray", None)
        conns = getattr(self, "_conns", [])
        if not terminate:
            pending = [conn for conn in conns if conn is not None and self._try_send(conn, ("close", ()))]
            deadline = time.monotonic() + (CLOSE_TIMEOUT_S if timeout is None else timeout)
            while pending and time.monotonic() < deadline:
                for conn in mp_connection.wait(pending, timeout=max(0.0, deadline - time.monotonic())):
                    pending.remove(conn)
                    with contextlib.suppress(EOFError, OSError):
                        conn.recv()
        for index, conn in enumerate(conns):
            if conn is not None:
                conn.close()
                conns[index] = None
        if ray is not None and ray.is_initialized():  # else Ray is shut down (interpreter exit): actors gone with it
            if not terminate:  # closed actors exit by themselves: wait for that, so that none is left when we return
                serving = [ref for ref in getattr(self, "_serving", []) if ref is not None]
                if serving:
                    ray.wait(serving, num_returns=len(serving), timeout=max(0.0, deadline - time.monotonic()))
            for actor in getattr(self, "actors", []):
                if actor is not None:
                    ray.kill(actor, no_restart=True)

    # ------------------------------------------------------------------ internals
    def _start(self, indices: Sequence[int]) -> None:
        """Start the actors of ``indices``, wait until they have built their envs, connect to them."""
        ray = self._ray
        keys = {index: os.urandom(32) for index in indices}
        for index in indices:
            options = dict(self._options)
            if self._strategies is not None:
                options["scheduling_strategy"] = self._strategies[index]
            self.actors[index] = self._actor_cls.options(**options).remote(self.env_fns[index], keys[index])
        try:
            addresses = ray.get([self.actors[i].address.remote() for i in indices], timeout=START_TIMEOUT_S)
        except ray.exceptions.GetTimeoutError:
            self.close(terminate=True)
            raise LiberoGymError(
                f"the Ray actors were not all started within {START_TIMEOUT_S:.0f} s: the resources they ask for are taken"
            ) from None
        for index, (address, node_id) in zip(indices, addresses):
            self._serving[index] = self.actors[index].serve.remote()
            self._conns[index] = mp_connection.Client(tuple(address), authkey=keys[index])
            self._node_ids[index] = node_id

    def _exchange(self, messages: dict[int, tuple[str, tuple[Any, ...]]]) -> tuple[dict[int, Any], dict[int, Any]]:
        """Send each slot its command and wait for all answers.

        Returns:
            slot -> result for the slots that answered; slot -> :class:`RemoteError` (the env
            raised) or a string (the actor is dead or unreachable: why) for the others.
        """
        errors: dict[int, Any] = {}
        pending: dict[Any, int] = {}
        for index, message in messages.items():
            conn = self._conns[index]
            if conn is not None and self._try_send(conn, message):
                pending[conn] = index
            else:
                errors[index] = self._death(index)
        results: dict[int, Any] = {}
        while pending:
            ready = mp_connection.wait(list(pending), timeout=LIVENESS_POLL_S)
            if not ready:  # a slow answer: is its actor dead without a closed connection (a node gone)?
                waiting = {self._serving[index]: conn for conn, index in pending.items()}
                done, _ = self._ray.wait(list(waiting), num_returns=len(waiting), timeout=0)
                for ref in done:
                    index = pending.pop(waiting[ref])
                    errors[index] = self._death(index)
                continue
            for conn in ready:
                index = pending.pop(conn)
                try:
                    result, ok = conn.recv()
                except (EOFError, OSError):  # the actor's process is gone
                    errors[index] = self._death(index)
                    continue
                (results if ok else errors)[index] = result
        return results, errors

    @staticmethod
    def _try_send(conn: mp_connection.Connection, message: Any) -> bool:
        try:
            conn.send(message)
            return True
        except OSError:  # BrokenPipeError, ConnectionResetError: the actor died
            return False

    def _death(self, index: int) -> str:
        """Why slot ``index``'s actor stopped answering (Ray's account of its death, when it has one)."""
        ray = self._ray
        try:
            ray.get(self._serving[index], timeout=DEATH_REPORT_TIMEOUT_S)
        except ray.exceptions.RayError as error:
            lines = [line for line in str(error).splitlines() if line.strip()]
            return f"{type(error).__name__}: {lines[0] if lines else ''}"
        return "the connection to the actor was lost"

    def _propagated(self, error: Any) -> BaseException | None:
        """The env's own exception if it is one to raise here (a user error), else None (a break)."""
        if isinstance(error, RemoteError) and isinstance(error.exception, self.propagate):
            return error.exception
        return None

    def _raise_propagated(self, errors: dict[int, Any]) -> None:
        for index, error in errors.items():
            exception = self._propagated(error)
            if exception is not None:
                exception.add_note(f"raised in the Ray actor of slot {index}:\n{error.traceback}")
                raise exception

    @staticmethod
    def _describe(error: Any) -> str:
        if isinstance(error, RemoteError):
            return f"{type(error.exception).__name__}: {error.exception}"
        return str(error)

    def _recover(self, index: int, error: str) -> None:
        """Replace a broken actor and reset the new one; report it at the slot's next step."""
        self._count_failure(index, error)
        logger.warning("Ray vector env actor %d broke (%s): replacing it", index, error)
        self._replace(index)
        base = self._seeds[index]
        seed = None if base is None else int(np.random.SeedSequence([base, self._slot_restarts[index]]).generate_state(1)[0])
        self._env_obs[index], info = self._reset_slot(index, seed, None)
        self._reports[index] = (info, error)
        self._pending_reset.pop(index, None)

    def _reset_slot(self, index: int, seed: int | None, options: dict[str, Any] | None) -> tuple[Any, dict[str, Any]]:
        """Reset one slot's actor, replacing it until a reset succeeds (or the failure limit is hit)."""
        while True:
            results, errors = self._exchange({index: ("reset", (seed, options))})
            if index in results:
                return results[index]
            self._raise_propagated(errors)
            self._count_failure(index, self._describe(errors[index]))
            self._replace(index)

    def _count_failure(self, index: int, error: str) -> None:
        self._failures[index] += 1
        if self._failures[index] > self.max_consecutive_failures:
            raise WorkerFailureError(f"Ray vector env actor {index} broke {self._failures[index]} times in a row; last: {error}")

    def _replace(self, index: int) -> None:
        """Kill slot ``index``'s actor (if it still runs) and start a new one with the same env function."""
        conn = self._conns[index]
        if conn is not None:
            conn.close()
            self._conns[index] = None
        self._ray.kill(self.actors[index], no_restart=True)
        self._start([index])
        self.num_restarts += 1
        self._slot_restarts[index] += 1

    def _batch_observations(self) -> Any:
        self.observations = concatenate(self.single_observation_space, self._env_obs, self.observations)
        return deepcopy(self.observations) if self.copy else self.observations
