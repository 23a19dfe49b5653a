"""What ``collect`` runs: a small policy protocol and a registry of policies.

A policy is built once per collection worker (inside it, after the worker
starts), then for every episode::

    obs, info = env.reset(seed=...)
    policy.reset(env.unwrapped)          # privileged policies read the simulator here
    while not done:
        action = policy.act(obs)         # (7,) float in [-1, 1]

Built-in names: ``random`` (uniform actions), ``scripted`` (the privileged
expert of :mod:`libero_gym.experts.scripted`) and ``checkpoint`` (a trained
agent of any registered kind, loaded from a checkpoint folder through
``agents.checkpoint``, acting with ``predict(obs, deterministic=True)``).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

import numpy as np

from libero_gym.errors import CheckpointError, InvalidInputError


@runtime_checkable
class Policy(Protocol):
    """What ``collect`` needs from a policy."""

    def reset(self, env: Any) -> None:
        """Called after every env reset with the unwrapped ``LiberoEnv``."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """The (7,) action for observation ``obs``."""


# Optional members ``collect`` uses when present: ``obs_mode`` ("state", "pixels" or
# "both": what the env must observe for ``act``; default "state"), ``image_size``
# (the image size ``act`` expects) and ``seed(int)`` (re-seed the policy's own
# randomness before each episode, so that an episode index always replays the same).


@dataclasses.dataclass(frozen=True)
class PolicySpec:
    """How a collection worker builds a policy (picklable: it travels to workers)."""

    name: str = "random"
    """Registry name: ``random``, ``scripted`` or ``checkpoint``."""
    checkpoint: str | None = None
    """Checkpoint folder (policy ``checkpoint`` only)."""
    deterministic: bool = True
    """Use the mean/mode action of a trained agent (SB3 ``predict`` semantics)."""
    seed: int = 0
    """Seed of the policy's own randomness (``random``)."""


class RandomPolicy:
    """Uniform actions in [-1, 1]^7, seeded."""

    obs_mode = "state"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def seed(self, seed: int) -> None:
        """Re-seed (``collect`` calls this with each episode's seed, so episodes replay)."""
        self.rng = np.random.default_rng(seed)

    def reset(self, env: Any) -> None:
        """Nothing to do: the randomness is seeded per episode by :meth:`seed`."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """A uniform random action."""
        return self.rng.uniform(-1.0, 1.0, size=7)


class CheckpointPolicy:
    """A trained agent loaded from a checkpoint folder, acting deterministically or stochastically.

    Uses ``agents.checkpoint``'s loader; the loaded object must offer SB3's
    ``predict(obs, deterministic=...) -> (action, state)``.
    """

    def __init__(self, path: str, deterministic: bool = True) -> None:
        self.path = path
        self.deterministic = deterministic
        self.model, self.env_config = load_checkpoint(path)
        self.obs_mode = str(self.env_config.get("obs_mode", "state"))
        self.image_size = self.env_config.get("image_size")

        self._state: Any = None
        self._episode_start = True

    def seed(self, seed: int) -> None:
        """Re-seed the agent's sampling (torch, numpy, its action space) before each episode, so that an
        episode index always replays the same (a diffusion policy samples x_T even when deterministic)."""
        set_seed = getattr(self.model, "set_random_seed", None)
        if callable(set_seed):
            set_seed(seed)

    def reset(self, env: Any) -> None:
        """Mark an episode start (chunked and recurrent policies re-plan there)."""
        self._state = None
        self._episode_start = True

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """``model.predict(obs, state, episode_start, deterministic)``'s action (SB3 semantics)."""
        action, self._state = self.model.predict(
            obs, state=self._state, episode_start=np.array([self._episode_start]), deterministic=self.deterministic
        )
        self._episode_start = False
        return np.asarray(action, dtype=np.float64).reshape(7)


def load_checkpoint(path: str) -> tuple[Any, dict[str, Any]]:
    """Load an agent through ``agents.checkpoint``; return (model, env config dict).

    Raises:
        CheckpointError: the agents package has no checkpoint loader, or it fails.
    """
    try:
        module = importlib.import_module("agents.checkpoint")
    except ModuleNotFoundError as error:
        raise CheckpointError(
            f"cannot load {path}: the agents package has no checkpoint loader (agents.checkpoint: {error})"
        ) from None
    loader = getattr(module, "load_agent", None)
    if loader is None:
        raise CheckpointError(f"cannot load {path}: agents.checkpoint has no load_agent function")
    # CPU: one env per collection worker, and a worker must not grab a GPU per process.
    loaded = loader(path, device="cpu")
    model, env_config = _unpack_loaded(loaded)
    if not hasattr(model, "predict"):
        raise CheckpointError(f"{path}: the loaded object {type(model).__name__} has no predict(obs, deterministic)")
    return model, env_config


def _unpack_loaded(loaded: Any) -> tuple[Any, dict[str, Any]]:
    """Accept the shapes a loader may return: a model, (model, meta), or an object with .model."""
    meta: Any = {}
    if isinstance(loaded, tuple):
        loaded, meta = loaded[0], (loaded[1] if len(loaded) > 1 else {})
    model = getattr(loaded, "model", None) if not hasattr(loaded, "predict") else loaded
    if model is None:
        model = getattr(loaded, "agent", loaded)
    for source in (meta, loaded):
        for attr in ("env_config", "env_kwargs", "env"):
            value = source.get(attr) if isinstance(source, dict) else getattr(source, attr, None)
            if isinstance(value, dict):
                return model, dict(value)
            if dataclasses.is_dataclass(value) and not isinstance(value, type):
                return model, dataclasses.asdict(value)
    return model, {}


def _scripted(spec: PolicySpec) -> Policy:
    try:
        module = importlib.import_module("libero_gym.experts.scripted")
    except ModuleNotFoundError as error:
        raise InvalidInputError(f"policy 'scripted' is unavailable: {error}") from None
    expert = module.ScriptedExpert()
    if not hasattr(expert, "obs_mode"):
        expert.obs_mode = "state"
    return expert


def _checkpoint(spec: PolicySpec) -> Policy:
    if not spec.checkpoint:
        raise InvalidInputError("policy 'checkpoint' needs --checkpoint DIR")
    return CheckpointPolicy(spec.checkpoint, deterministic=spec.deterministic)


POLICIES: dict[str, Callable[[PolicySpec], Policy]] = {
    "random": lambda spec: RandomPolicy(spec.seed),
    "scripted": _scripted,
    "checkpoint": _checkpoint,
}
"""Policy name -> builder (imports lazily)."""


def make_policy(spec: PolicySpec) -> Policy:
    """Build the policy a spec names: a registered name, or a ``module:Class`` path.

    A ``module:Class`` policy is built as ``Class()``, or ``Class(spec.checkpoint)``
    when a checkpoint is given (its one argument, e.g. a file it loads).

    Raises:
        InvalidInputError: unknown name (the message lists the registered ones).
        CheckpointError: the checkpoint cannot be loaded.
    """
    check_policy_name(spec.name)
    if spec.name in POLICIES:
        return POLICIES[spec.name](spec)
    module_name, _, attr = spec.name.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise InvalidInputError(f"cannot import policy {spec.name!r}: {error}") from None
    return cls(spec.checkpoint) if spec.checkpoint else cls()


def check_policy_name(name: str) -> None:
    """Raise InvalidInputError unless ``name`` is a registered policy or a ``module:Class`` path."""
    module_name, sep, attr = name.partition(":")
    if name not in POLICIES and not (sep and module_name and attr):
        raise InvalidInputError(f"policy must be one of {sorted(POLICIES)} or a 'module:Class' path, got {name!r}")


def policy_obs_mode(policy: Any) -> str:
    """The observation mode a policy acts from (``state`` unless it says otherwise)."""
    return str(getattr(policy, "obs_mode", "state"))
