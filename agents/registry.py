"""Agents by CLI name: the built-ins, project-registered ones, and any SB3 class by path.

An agent is a Stable-Baselines3 ``BaseAlgorithm`` subclass. Built-ins follow one
constructor protocol, ``Cls(env, config=None, *, seed, device, tensorboard_log,
verbose)`` with a frozen config dataclass and ``config_dict()``; everything else is
treated as a plain SB3 algorithm, ``Cls("MultiInputPolicy", env, **kwargs)`` with a
JSON dict of keyword arguments as its "config".

Names resolve in this order: a registered name (``gaussian-ppo``), else a
``module:Class`` path (``stable_baselines3:SAC``). Classes are imported lazily, so
importing this module never imports torch. (LeRobot's ``register_subclass``.)
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Mapping
from typing import Any

import gymnasium as gym

from agents.agent_configs import SB3AgentConfig
from libero_gym.errors import InvalidInputError

PROTOCOL_CONFIG = "config"
"""Constructor protocol of the built-ins: ``Cls(env, config, *, seed, device, ...)``."""
PROTOCOL_SB3 = "sb3"
"""Constructor protocol of plain SB3 algorithms: ``Cls(policy, env, **kwargs)``."""
SB3_POLICY = "MultiInputPolicy"
"""SB3's policy for Dict observations (every libero-gym obs_mode is a Dict)."""


@dataclasses.dataclass(frozen=True)
class AgentSpec:
    """How to build one agent.

    Attributes:
        name: CLI name (``gaussian-ppo``) or the ``module:Class`` path itself.
        class_path: ``module:Class`` of the SB3 ``BaseAlgorithm`` subclass.
        config_path: ``module:Class`` of its frozen config dataclass (protocol
            ``config``), or ``None`` for plain SB3 classes (kwargs dict).
        description: one line for ``cli.py agents``.
    """

    name: str
    class_path: str
    config_path: str | None = None
    description: str = ""

    @property
    def protocol(self) -> str:
        """``"config"`` for classes with a config dataclass, else ``"sb3"``."""
        return PROTOCOL_CONFIG if self.config_path is not None else PROTOCOL_SB3

    def load_class(self) -> type:
        """Import and return the algorithm class."""
        return import_path(self.class_path)

    def load_config_class(self) -> type | None:
        """Import and return the config dataclass (``None`` for plain SB3 classes)."""
        return import_path(self.config_path) if self.config_path is not None else None

    def make_config(self, overrides: Mapping[str, Any] | None = None) -> Any:
        """The agent's config: its dataclass with ``overrides``, or the kwargs dict.

        Raises:
            InvalidInputError: an override names no field of the config.
        """
        overrides = dict(overrides or {})
        config_cls = self.load_config_class()
        if config_cls is None:
            return overrides
        fields = {field.name for field in dataclasses.fields(config_cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise InvalidInputError(
                f"agent config keys for {self.name} must be among {sorted(fields)}, got {unknown}"
            )
        try:
            return config_cls(**overrides)
        except (TypeError, ValueError) as error:
            raise InvalidInputError(f"invalid config for {self.name}: {error}") from error


_REGISTRY: dict[str, AgentSpec] = {}


def register_agent(
    name: str,
    class_path: str | type,
    config_path: str | type | None = None,
    description: str = "",
    *,
    overwrite: bool = False,
) -> AgentSpec:
    """Register an agent under a CLI name.

    Args:
        name: the name ``--agent`` takes (lower-case, dashes; no ``:``).
        class_path: the ``BaseAlgorithm`` subclass or its ``module:Class`` path.
        config_path: its config dataclass or path (constructor protocol
            ``Cls(env, config, *, seed, device, tensorboard_log, verbose)``);
            ``None`` for a plain SB3 class (``Cls(policy, env, **kwargs)``).
        description: one line for ``cli.py agents``.
        overwrite: replace an existing registration of ``name``.

    Returns:
        The registered spec.

    Raises:
        InvalidInputError: ``name`` is taken or malformed.
    """
    if not name or ":" in name:
        raise InvalidInputError(f"agent name must be non-empty without ':', got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise InvalidInputError(f"agent {name!r} is already registered (pass overwrite=True to replace it)")
    config = _as_path(config_path) if config_path is not None else None
    spec = AgentSpec(name, _as_path(class_path), config, description)
    _REGISTRY[name] = spec
    return spec


def available_agents() -> dict[str, AgentSpec]:
    """Registered agents by name (a copy)."""
    return dict(_REGISTRY)


def find_agent(name: str) -> AgentSpec:
    """The spec ``--agent NAME`` names, found without importing anything: a registered name, a registered
    agent's ``module:Class`` path, else an unregistered ``module:Class`` path (its class is checked by
    :func:`resolve_agent`, when the agent is built).

    Raises:
        InvalidInputError: neither a registered name nor a ``module:Class`` path (the message lists the
            registered names).
    """
    if name in _REGISTRY:
        return _REGISTRY[name]
    module_name, _, attr = name.partition(":")
    if not module_name or not attr:
        raise InvalidInputError(
            f"agent must be one of {sorted(_REGISTRY)} or a 'module:Class' path "
            f"(e.g. stable_baselines3:SAC), got {name!r}"
        )
    for spec in _REGISTRY.values():  # a built-in given by its path keeps its protocol
        if spec.class_path == name:
            return spec
    return AgentSpec(name, name, None, "third-party SB3 algorithm")


def resolve_agent(name: str) -> AgentSpec:
    """The spec for a registered name or a ``module:Class`` path, its class checked.

    Raises:
        InvalidInputError: unknown name (the message lists the available ones), or
            a path that does not import to a Stable-Baselines3 ``BaseAlgorithm``.
    """
    spec = find_agent(name)
    if spec.name in _REGISTRY:
        return spec
    cls = import_path(name)
    from stable_baselines3.common.base_class import BaseAlgorithm

    if not (isinstance(cls, type) and issubclass(cls, BaseAlgorithm)):
        raise InvalidInputError(f"agent {name!r} must be a stable_baselines3 BaseAlgorithm subclass, got {cls!r}")
    return AgentSpec(name, name, None, f"third-party SB3 algorithm {cls.__name__}")


def spec_of(config: Any) -> AgentSpec:
    """The agent a config is for: the registered agent of its config class, or the SB3 class it names.

    Raises:
        InvalidInputError: a config class no registered agent has, or an SB3 class path that does
            not import to a ``BaseAlgorithm`` subclass.
    """
    if isinstance(config, SB3AgentConfig):
        for spec in _REGISTRY.values():  # a plain SB3 class registered under a short name
            if spec.config_path is None and spec.class_path == config.class_path:
                return spec
        return resolve_agent(config.class_path)
    path = _as_path(type(config))
    for spec in _REGISTRY.values():
        if spec.config_path == path:
            return spec
    raise InvalidInputError(
        f"agent config {path} belongs to no registered agent; agents are {sorted(_REGISTRY)} or a module:Class path"
    )


def build_agent(
    spec: AgentSpec,
    env: Any,
    config: Any,
    *,
    seed: int | None = None,
    device: str = "auto",
    tensorboard_log: str | None = None,
    verbose: int = 0,
) -> Any:
    """Construct an agent of ``spec`` on ``env`` (an SB3 VecEnv).

    ``config`` is the agent's config dataclass (built-ins) or a dict of SB3
    constructor keyword arguments (plain SB3 classes).

    Raises:
        InvalidInputError: the SB3 class rejects the keyword arguments.
    """
    cls = spec.load_class()
    if spec.protocol == PROTOCOL_CONFIG:
        return cls(env, config, seed=seed, device=device, tensorboard_log=tensorboard_log, verbose=verbose)
    kwargs = dict(config)
    try:
        model = cls(
            SB3_POLICY, env, seed=seed, device=device, tensorboard_log=tensorboard_log, verbose=verbose, **kwargs
        )
    except TypeError as error:
        raise InvalidInputError(f"invalid agent config for {spec.name}: {error}") from error
    model._libero_gym_kwargs = kwargs  # what agent.json records as its config
    return model


def check_spaces(spec: AgentSpec, observation_space: Any, action_space: Any) -> None:
    """Fail early and clearly if the agent cannot act in this action space.

    SB3 algorithms pass ``supported_action_spaces`` to ``BaseAlgorithm.__init__``,
    which asserts on it before any network or buffer is built; so the check
    constructs the class with ``_init_setup_model=False`` on a space-only env
    (cheap) and turns SB3's assertion into a user error.

    Raises:
        InvalidInputError: the action space is not supported (e.g. DQN on a Box).
    """
    if spec.protocol != PROTOCOL_SB3:
        return  # built-ins are written for libero-gym's spaces
    from stable_baselines3.common.vec_env import DummyVecEnv

    cls = spec.load_class()
    probe = DummyVecEnv([lambda: SpacesOnlyEnv(observation_space, action_space)])
    try:
        cls(SB3_POLICY, probe, _init_setup_model=False)
    except AssertionError as error:
        if "action space" in str(error).lower():
            raise InvalidInputError(
                f"agent {spec.name} does not support libero-gym's action space {action_space}: {error}"
            ) from error
        raise
    finally:
        probe.close()


def import_path(path: str) -> Any:
    """Import ``module:attr`` (``attr`` may be dotted).

    Raises:
        InvalidInputError: malformed path, missing module or attribute.
    """
    module_name, sep, attr = path.partition(":")
    if not sep or not module_name or not attr:
        raise InvalidInputError(f"a class path must look like 'module:Class', got {path!r}")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        if error.name is not None and module_name.startswith(error.name):
            raise InvalidInputError(f"cannot import module {module_name!r} for {path!r}: {error}") from error
        raise
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InvalidInputError(f"module {module_name!r} has no attribute {attr!r} (from {path!r})")
        obj = getattr(obj, part)
    return obj


def _as_path(obj: str | type) -> str:
    return obj if isinstance(obj, str) else f"{obj.__module__}:{obj.__qualname__}"


class SpacesOnlyEnv(gym.Env[Any, Any]):
    """The smallest env SB3's constructors accept: the spaces, nothing behind them."""

    def __init__(self, observation_space: Any, action_space: Any) -> None:
        self.observation_space = observation_space
        self.action_space = action_space

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> Any:
        super().reset(seed=seed)
        return self.observation_space.sample(), {}

    def step(self, action: Any) -> Any:
        return self.observation_space.sample(), 0.0, False, False, {}


register_agent(
    "gaussian-ppo",
    "agents.gaussian_ppo:GaussianPPO",
    "agents.agent_configs:GaussianPPOConfig",
    "PPO with a Gaussian MLP policy (SB3), the baseline",
)
register_agent(
    "diffusion-ppo",
    "agents.diffusion_ppo:DiffusionPPO",
    "agents.agent_configs:DiffusionPPOConfig",
    "DPPO: PPO over the denoising chain of a diffusion policy on action chunks",
)
