"""What ``collect`` runs: a small policy protocol and a registry of policies.

A policy is built once per collection worker (inside it, after the worker
starts), then for every episode::

    obs, info = env.reset(seed=...)
    policy.reset(env.unwrapped)          # privileged policies read the simulator here
    while not done:
        action = policy.act(obs)         # (7,) float in [-1, 1]

Built-in names: ``random`` (uniform actions) and ``scripted`` (the privileged
expert of :mod:`libero_gym.experts.scripted`). Applications register more with
:func:`register_policy`: ``cli.py`` registers ``checkpoint`` (a trained agent,
:class:`agents.policy.CheckpointPolicy`), so that the library never imports the apps.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any, Protocol, runtime_checkable

import numpy as np

from libero_gym.errors import InvalidInputError


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
    """Registry name (``random``, ``scripted``, what an application registered) or ``module:Class``."""
    checkpoint: str | None = None
    """Checkpoint folder (for policies that load one, e.g. ``checkpoint``)."""
    sampling: str = "deterministic"
    """How a trained agent acts: ``deterministic`` (its evaluation action, SB3 ``predict(deterministic=True)``),
    ``stochastic`` (its training-rollout sampling), or a further mode the agent names (diffusion-ppo:
    ``zero-init``); the policy builder checks it."""
    seed: int = 0
    """Seed of the policy's own randomness (``random``)."""


class RandomPolicy:
    """Uniform actions in [-1, 1]^7, seeded."""

    obs_mode = "state"

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    @classmethod
    def from_spec(cls, spec: PolicySpec) -> RandomPolicy:
        """Seeded with ``spec.seed``."""
        return cls(spec.seed)

    def seed(self, seed: int) -> None:
        """Re-seed (``collect`` calls this with each episode's seed, so episodes replay)."""
        self.rng = np.random.default_rng(seed)

    def reset(self, env: Any) -> None:
        """Nothing to do: the randomness is seeded per episode by :meth:`seed`."""

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        """A uniform random action."""
        return self.rng.uniform(-1.0, 1.0, size=7)


class ScriptedPolicy:
    """Builds the privileged scripted expert (:mod:`libero_gym.experts.scripted`, imported in the worker)."""

    @classmethod
    def from_spec(cls, spec: PolicySpec) -> Policy:
        """A :class:`~libero_gym.experts.scripted.ScriptedExpert` (it reads the simulator at ``reset``)."""
        from libero_gym.experts.scripted import ScriptedExpert  # MuJoCo-side code: only in the worker

        return ScriptedExpert()


POLICIES: dict[str, str] = {
    "random": "libero_gym.data.policies:RandomPolicy",
    "scripted": "libero_gym.data.policies:ScriptedPolicy",
}
"""Policy name -> ``module:Class`` whose ``from_spec(spec)`` builds it (imported lazily, in the worker).

The library registers ``random`` and ``scripted``; an application adds its own with
:func:`register_policy` (``cli.py`` registers ``checkpoint``, a trained agent of the ``agents``
package: the library never imports the apps)."""


def register_policy(name: str, factory: str, *, overwrite: bool = False) -> None:
    """Register ``name`` -> ``factory``, the ``module:Class`` path of a policy builder.

    The class must offer ``from_spec(spec: PolicySpec) -> Policy``; it may offer
    ``check(spec: PolicySpec) -> None``, which :func:`check_policy_spec` calls once, before any
    worker starts, so that a bad argument (an unreadable checkpoint) is one error, not one per worker.

    Raises:
        InvalidInputError: a malformed name or path, or ``name`` taken by another factory (without
            ``overwrite``).
    """
    module_name, sep, attr = factory.partition(":")
    if not name or ":" in name or not (sep and module_name and attr):
        raise InvalidInputError(f"a policy needs a name without ':' and a 'module:Class', got {name!r}, {factory!r}")
    if name in POLICIES and POLICIES[name] != factory and not overwrite:
        raise InvalidInputError(f"policy {name!r} is already registered as {POLICIES[name]} (pass overwrite=True)")
    POLICIES[name] = factory


def policy_factory(name: str) -> str | None:
    """The registered ``module:Class`` builder of ``name`` (``None`` for a ``module:Class`` policy path).

    Raises:
        InvalidInputError: neither a registered name nor a ``module:Class`` path.
    """
    check_policy_name(name)
    return POLICIES.get(name)


def check_policy_spec(spec: PolicySpec, factory: str | None = None) -> None:
    """Run the builder's ``check(spec)``, if it has one (in the parent, before any worker starts).

    Raises:
        InvalidInputError: unknown name; or what the check raises (e.g. CheckpointError).
    """
    factory = factory if factory is not None else policy_factory(spec.name)
    if factory is not None:
        check = getattr(_import(factory), "check", None)
        if callable(check):
            check(spec)


def make_policy(spec: PolicySpec, factory: str | None = None) -> Policy:
    """Build the policy a spec names: a registered name, or a ``module:Class`` path.

    Args:
        spec: what to build.
        factory: the builder's ``module:Class`` (:func:`policy_factory` of the parent process,
            which travels to the workers with the plan); default: this process's registry.

    A ``module:Class`` policy is built as ``Class()``, or ``Class(spec.checkpoint)``
    when a checkpoint is given (its one argument, e.g. a file it loads).

    Raises:
        InvalidInputError: unknown name (the message lists the registered ones).
        CheckpointError: the checkpoint cannot be loaded.
    """
    factory = factory if factory is not None else policy_factory(spec.name)
    if factory is not None:
        return _import(factory).from_spec(spec)
    cls = _import(spec.name)
    return cls(spec.checkpoint) if spec.checkpoint else cls()


def check_policy_name(name: str) -> None:
    """Raise InvalidInputError unless ``name`` is a registered policy or a ``module:Class`` path."""
    module_name, sep, attr = name.partition(":")
    if name not in POLICIES and not (sep and module_name and attr):
        raise InvalidInputError(f"policy must be one of {sorted(POLICIES)} or a 'module:Class' path, got {name!r}")


def _import(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as error:
        raise InvalidInputError(f"cannot import policy {path!r}: {error}") from None


def policy_obs_mode(policy: Any) -> str:
    """The observation mode a policy acts from (``state`` unless it says otherwise)."""
    return str(getattr(policy, "obs_mode", "state"))
