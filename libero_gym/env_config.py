"""One env description: which libero-gym env, which tasks, how it observes and acts.

:class:`EnvConfig` is what ``train`` builds its vector envs from, what a checkpoint
records (``agent.json``'s ``env``; the JSON of the former ``EnvInfo``, which it reads
unchanged), and what ``eval`` rebuilds. The lookup of an env id to its suite and tasks is
:func:`libero_gym.registration.resolve_env`.

    config = EnvConfig.resolve("LIBERO-Goal-v0", task_ids=(3,), obs_mode="pixels", image_size=64)
    env = config.make()                  # gym.make(...)
    envs = config.make_vec(4)            # libero_gym.vector.make_vec(...)
    assert EnvConfig.from_json(config.to_json()) == config
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import gymnasium as gym
from gymnasium.vector import VectorEnv

from libero_gym.registration import resolve_env, task_env_ids
from libero_gym.vector import make_vec


@dataclasses.dataclass(frozen=True)
class EnvConfig:
    """A libero-gym env: id, tasks, observation mode, image size, episode limit, action chunk.

    Attributes:
        env_id: the libero-gym id (``LIBERO-Goal-v0``, or a single-task id).
        task_ids: task indices within the suite (a single-task id's own index).
        obs_mode: ``state``, ``pixels`` or ``both``.
        image_size: camera image size (pixels/both), ``None`` for the env default.
        max_episode_steps: the episode's budget in control steps, ``None`` for the suite's; for
            a chunk env too (one budget: the env counts the control steps of its chunks).
        chunk_size: ``None`` (actions (7,)), or Ta: the env steps (Ta, 7) action chunks
            (``LiberoEnv(chunk_size=Ta)``).
    """

    env_id: str
    task_ids: tuple[int, ...] = ()
    obs_mode: str = "state"
    image_size: int | None = None
    max_episode_steps: int | None = None
    chunk_size: int | None = None

    @classmethod
    def resolve(cls, env_id: str, task_ids: Sequence[int] = (0,), *, strict: bool = False, **fields: Any) -> EnvConfig:
        """A config with ``task_ids`` checked and normalised (:func:`resolve_env`; a single-task id's own index)."""
        _, resolved = resolve_env(env_id, task_ids, strict=strict)
        return cls(env_id, resolved, **fields)

    @property
    def single_task(self) -> bool:
        """True for a single-task id (its task is fixed: no ``task_id`` argument)."""
        return self.env_id in task_env_ids()

    @property
    def suite(self) -> str:
        """The suite key (``libero_goal``)."""
        return resolve_env(self.env_id, self.task_ids or (0,), strict=False)[0]

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (lists for tuples); :meth:`from_json` inverts it."""
        return {**dataclasses.asdict(self), "task_ids": list(self.task_ids)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EnvConfig:
        """Read :meth:`to_json`'s dict, also the ``env`` of checkpoints written before this class (``EnvInfo``)."""
        return cls(
            str(data["env_id"]),
            tuple(int(t) for t in data.get("task_ids", ())),
            str(data.get("obs_mode", "state")),
            data.get("image_size"),
            data.get("max_episode_steps"),
            data.get("chunk_size"),  # absent in checkpoints written before chunk envs: per-step
        )

    def make_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``gym.make``/``make_vec`` besides the id and the task."""
        kwargs: dict[str, Any] = {"obs_mode": self.obs_mode}
        if self.image_size is not None:
            kwargs["image_size"] = self.image_size
        if self.chunk_size is not None:
            # The env counts the control steps of its chunks itself (step_limit, LiberoEnv docs):
            # gymnasium's TimeLimit counts chunks, so one of as many chunks never ends an episode first.
            kwargs["chunk_size"] = self.chunk_size
            if self.max_episode_steps is not None:
                kwargs["step_limit"] = self.max_episode_steps
                kwargs["max_episode_steps"] = self.max_episode_steps
        elif self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        return kwargs

    def gym_kwargs(self, **extra: Any) -> dict[str, Any]:
        """:meth:`make_kwargs` with the task (``task_id``, for a suite id) and ``extra`` (e.g. ``render_mode``)."""
        kwargs = {**self.make_kwargs(), **extra}
        if not self.single_task:
            kwargs["task_id"] = list(self.task_ids) if len(self.task_ids) > 1 else self.task_ids[0]
        return kwargs

    def make(self, **extra: Any) -> gym.Env[Any, Any]:
        """``gym.make`` of this env (the simulator is built lazily, at the first reset)."""
        return gym.make(self.env_id, **self.gym_kwargs(**extra))

    def make_vec(self, num_envs: int, vectorization_mode: str = "async", **extra: Any) -> VectorEnv:
        """:func:`libero_gym.vector.make_vec` of ``num_envs`` copies (``extra``: its options, e.g.
        ``restart_dead_workers``, ``init_state_ids``, ``render_mode``)."""
        return make_vec(self.env_id, num_envs, vectorization_mode=vectorization_mode, **self.gym_kwargs(**extra))

    def spaces(self) -> tuple[gym.Space[Any], gym.Space[Any]]:
        """Observation and action spaces, without building a simulator (it is lazy)."""
        probe = self.make()
        try:
            return probe.observation_space, probe.action_space
        finally:
            probe.close()
