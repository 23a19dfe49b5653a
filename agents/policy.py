"""A trained agent as a ``collect`` policy (``cli.py collect --policy checkpoint``).

The library's collector (:mod:`libero_gym.data.policies`) knows policies only by a
``module:Class`` it is given; the application registers this one::

    from libero_gym.data.policies import register_policy
    register_policy("checkpoint", "agents.policy:CheckpointPolicy")

so that ``libero_gym`` never imports ``agents`` (docs/architecture.md).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from agents.checkpoint import load_agent, read_checkpoint
from agents.registry import resolve_agent
from agents.agent_configs import SAMPLINGS, check_agent_sampling
from libero_gym.data.policies import PolicySpec
from libero_gym.env_config import EnvConfig
from libero_gym.errors import InvalidInputError

ACTION_DIM = 7
"""libero-gym's per-step action (OSC delta pose 6 + gripper 1); ``collect`` steps plain envs."""


def _check_sampling_name(sampling: str) -> None:
    if sampling not in SAMPLINGS:
        raise InvalidInputError(f"sampling must be one of {list(SAMPLINGS)}, got {sampling!r}")


class CheckpointPolicy:
    """A trained agent loaded from a checkpoint folder, acting deterministically or stochastically.

    Acts through SB3's ``predict(obs, state, episode_start, deterministic) -> (action, state)``;
    a chunk agent (diffusion-ppo) queues its chunk and returns one control step per call.

    Attributes:
        obs_mode: the observation mode the agent was trained on (what ``collect`` must render).
        image_size: its camera image size (``None`` for state agents).
    """

    def __init__(self, path: str, sampling: str = "deterministic") -> None:
        """Load the agent at ``path``, acting in ``sampling`` mode (:data:`agents.agent_configs.SAMPLINGS`).

        Raises:
            InvalidInputError: an unknown sampling mode, or ``zero-init`` for an agent without it.
            CheckpointError: the checkpoint cannot be loaded.
        """
        _check_sampling_name(sampling)
        self.path = path
        self.sampling = sampling
        self.deterministic = sampling != "stochastic"
        # CPU: one env per collection worker, and a worker must not grab a GPU per process.
        self.model, meta = load_agent(path, device="cpu")
        check_agent_sampling(self.model, sampling, meta["agent"])
        if sampling == "zero-init":
            self.model.deterministic_mode = "zero-init"
        env = EnvConfig.from_json(meta["env"])
        self.obs_mode = env.obs_mode
        self.image_size = env.image_size
        self._state: Any = None
        self._episode_start = True

    @classmethod
    def check(cls, spec: PolicySpec) -> None:
        """Verify the checkpoint once, before any collection worker starts (each would fail on it).

        Raises:
            InvalidInputError: no checkpoint given, an unknown sampling mode, or one the checkpoint's
                agent class does not have (``zero-init`` for a non-diffusion agent).
            CheckpointError: unreadable checkpoint.
        """
        if not spec.checkpoint:
            raise InvalidInputError("policy 'checkpoint' needs --checkpoint DIR")
        _check_sampling_name(spec.sampling)
        meta, _ = read_checkpoint(spec.checkpoint)
        check_agent_sampling(resolve_agent(meta["agent"]).load_class(), spec.sampling, meta["agent"])

    @classmethod
    def from_spec(cls, spec: PolicySpec) -> CheckpointPolicy:
        """Load ``spec.checkpoint``, acting in ``spec.sampling`` mode."""
        if not spec.checkpoint:
            raise InvalidInputError("policy 'checkpoint' needs --checkpoint DIR")
        return cls(spec.checkpoint, sampling=spec.sampling)

    def seed(self, seed: int) -> None:
        """Re-seed the agent's sampling (torch, numpy, its action space) before each episode, so that an
        episode index always replays the same (a diffusion policy samples x_T even when deterministic)."""
        self.model.set_random_seed(seed)

    def reset(self, env: Any) -> None:
        """Mark an episode start (chunked and recurrent policies re-plan there)."""
        self._state = None
        self._episode_start = True

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``model.predict(obs, state, episode_start, deterministic)``'s action (SB3 semantics), shape (7,)."""
        action, self._state = self.model.predict(
            obs, state=self._state, episode_start=np.array([self._episode_start]), deterministic=self.deterministic
        )
        self._episode_start = False
        return np.asarray(action, dtype=np.float64).reshape(ACTION_DIM)
