"""``collect --backend ray``: the episode workers as Ray actors, on this machine or over a cluster.

:class:`RayEpisodeWorkers` has the four methods of the local backend's
:class:`libero_gym.data.collect.ProcessWorkers` (``idle``, ``assign``, ``busy``,
``events``, plus ``close``), so :func:`libero_gym.data.collect.run_collection` drives
either the same way and the episodes are the same: episode ``i`` is played by an
:class:`~libero_gym.data.worker.EpisodeWorker` with seed ``seed + i`` wherever it runs.

What runs where: the collection loop (which index goes where, the manifest, the cut
at the goal) runs in the ``collect`` process; each actor builds its simulator and
policy, plays the episodes it is sent and writes their shard and summary into
``OUT/episodes`` itself (as a local worker process does). On a cluster of several
machines ``OUT`` must therefore be on a filesystem that every node mounts at the same
path; the actors get the absolute path.

Faults: an actor that dies (killed, its process crashed, its node left) or whose
episode raised is killed and replaced; its episode is dropped and retried, as with
worker processes (:data:`libero_gym.data.collect.MAX_ATTEMPTS`).

Ray is imported when a :class:`RayEpisodeWorkers` is made, never at import.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from libero_gym.backend import shutdown, start_or_connect
from libero_gym.data.worker import CollectPlan, EpisodeWorker
from libero_gym.errors import InvalidInputError

CLOSE_TIMEOUT_S = 30.0
"""Seconds idle actors get to close their simulators before they are killed (as idle worker processes)."""


class EpisodeActor:
    """One collection worker inside a Ray actor: an :class:`EpisodeWorker`, built lazily at the first episode."""

    def __init__(self, plan: CollectPlan) -> None:
        self.worker = EpisodeWorker(plan)

    def run(self, index: int) -> dict[str, Any]:
        """Play episode ``index``, write it, return its summary (:meth:`EpisodeWorker.run`)."""
        return self.worker.run(index)

    def close(self) -> None:
        """Close the simulator."""
        self.worker.close()

    def node_id(self) -> str:
        """The Ray node this actor runs on."""
        import ray

        return ray.get_runtime_context().get_node_id()


def absolute_plan(plan: CollectPlan) -> CollectPlan:
    """``plan`` with absolute output and checkpoint paths: an actor's working folder is not this process's."""
    policy = plan.policy
    if policy.checkpoint is not None:
        policy = dataclasses.replace(policy, checkpoint=str(Path(policy.checkpoint).resolve()))
    return dataclasses.replace(plan, out_dir=str(Path(plan.out_dir).resolve()), policy=policy)


class RayEpisodeWorkers:
    """``size`` episode actors, dealt over the cluster's nodes in proportion to their CPUs.

    Args:
        plan: what to collect (its paths made absolute for the actors).
        size: number of actors (``collect --num-workers``).
        ray_address: see :func:`libero_gym.backend.start_or_connect`; a Ray started here is shut
            down by :meth:`close`.
        actor_options: Ray ``.options()`` for each actor, as for
            :class:`~libero_gym.ray_vector.RayVectorEnv` (default: Ray's default actor resources,
            slots dealt over the nodes).
    """

    def __init__(self, plan: CollectPlan, size: int, *, ray_address: str | None = None,
                 actor_options: dict[str, Any] | None = None) -> None:
        if size < 1:
            raise InvalidInputError(f"num_workers must be >= 1, got {size}")
        import ray

        from libero_gym.ray_vector import deal_over_nodes

        self._ray = ray
        # A local Ray gets a CPU per worker up to the machine's cores (more would prestart idle workers).
        self._owns_ray = start_or_connect(ray_address, num_cpus=min(os.cpu_count() or 1, size))
        self.plan = absolute_plan(plan)
        self._options = dict(actor_options or {})
        self._strategies = deal_over_nodes(ray, size) if "scheduling_strategy" not in self._options else None
        self._actor_cls = ray.remote(EpisodeActor)
        self.actors: list[Any] = [None] * size
        """One actor handle per slot (``None`` until started, or after it broke)."""
        self._calls: list[Any] = [None] * size  # the slot's ``run`` call in flight
        self._indices: list[int | None] = [None] * size  # the episode index in flight per slot
        self.num_restarts = 0
        """Actors started to replace broken ones."""

    def idle(self) -> list[int]:
        """Slots ready for an index (starting actors where none runs)."""
        for slot, actor in enumerate(self.actors):
            if actor is None:
                options = dict(self._options)
                if self._strategies is not None:
                    options["scheduling_strategy"] = self._strategies[slot]
                self.actors[slot] = self._actor_cls.options(**options).remote(self.plan)
        return [slot for slot, index in enumerate(self._indices) if index is None]

    def assign(self, slot: int, index: int) -> None:
        """Send episode ``index`` to the actor of ``slot``."""
        self._indices[slot] = index
        self._calls[slot] = self.actors[slot].run.remote(index)

    def busy(self) -> bool:
        """Whether an episode is in flight."""
        return any(index is not None for index in self._indices)

    def events(self, timeout: float) -> list[tuple[str, int, Any]]:
        """Finished episodes within ``timeout`` s: ``("done", index, summary)``, or ``("error", index, why)``
        when the actor raised or died (it is killed and replaced at the next :meth:`idle`)."""
        ray = self._ray
        calls = {ref: slot for slot, ref in enumerate(self._calls) if ref is not None}
        if not calls:
            return []
        ready, _ = ray.wait(list(calls), num_returns=len(calls), timeout=timeout, fetch_local=True)
        events: list[tuple[str, int, Any]] = []
        for ref in ready:
            slot = calls[ref]
            index = self._indices[slot]
            self._indices[slot], self._calls[slot] = None, None
            try:
                events.append(("done", index, ray.get(ref)))
            except ray.exceptions.RayTaskError as error:  # the episode raised: the env may be broken
                cause = error.cause if error.cause is not None else error
                events.append(("error", index, f"{type(cause).__name__}: {cause}"))
                self._discard(slot)
            except ray.exceptions.RayActorError as error:  # killed, crashed, or its node left
                lines = [line for line in str(error).splitlines() if line.strip()]
                events.append(("error", index, f"actor died ({type(error).__name__}: {lines[0] if lines else ''})"))
                self._discard(slot)
        return events

    def node_ids(self) -> list[str | None]:
        """The Ray node of each slot's actor (``None`` for a slot without one)."""
        refs = [actor.node_id.remote() if actor is not None else None for actor in self.actors]
        return [self._ray.get(ref) if ref is not None else None for ref in refs]

    def _discard(self, slot: int) -> None:
        self._ray.kill(self.actors[slot], no_restart=True)
        self.actors[slot] = None
        self.num_restarts += 1

    def close(self) -> None:
        """Stop the actors (idle ones close their simulators first; those mid-episode are killed: nothing is
        half-written, every file is written atomically); shut down a Ray started here."""
        ray = self._ray
        if not ray.is_initialized():
            return
        closing = [actor.close.remote() for actor, index in zip(self.actors, self._indices)
                   if actor is not None and index is None]  # fmt: skip
        if closing:
            ray.wait(closing, num_returns=len(closing), timeout=CLOSE_TIMEOUT_S)
        for slot, actor in enumerate(self.actors):
            if actor is not None:
                ray.kill(actor, no_restart=True)
                self.actors[slot] = None
        if self._owns_ray:
            shutdown()
