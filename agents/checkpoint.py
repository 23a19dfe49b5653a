"""One checkpoint format for every agent: config as JSON plus torch state dicts.

A checkpoint is a folder (or the same two files in a ``.zip``)::

    agent.json   agent name and class path, the agent's config, the env it was
                 trained on (id, task ids, obs_mode, make kwargs, space
                 descriptions), step counters, library versions, and the size and
                 SHA-256 of params.pt
    params.pt    {"params": {name: state_dict}, "variables": {name: tensor},
                  "rng": {...}}  saved with ``torch.save``, loaded with
                 ``weights_only=True``: SB3's ``get_parameters()`` (policy and
                 optimizer state dicts), SB3's extra torch variables (e.g. SAC's
                 ``log_ent_coef``), and the torch/numpy/python RNG states.

No pickled objects, so a checkpoint loads under any code version that has the same
config fields (SB3 ``save_util``; diffusion_policy's dill checkpoints are the
cautionary tale). Writes are atomic: files go to a temporary sibling folder that
``os.replace`` moves into place, so a reader never sees half a checkpoint.
:class:`CheckpointManager` keeps the newest ``keep`` checkpoints of a run and falls
back to an older one, with a warning, when the newest does not verify.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import random
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from gymnasium import spaces

from agents.registry import PROTOCOL_CONFIG, SB3_POLICY, AgentSpec, resolve_agent
from libero_gym.errors import CheckpointError
from libero_gym.file_modes import set_default_mode

AGENT_FILE = "agent.json"
PARAMS_FILE = "params.pt"
FORMAT_VERSION = 1
"""Bumped when the layout of agent.json/params.pt changes incompatibly."""
STEP_PREFIX = "step_"
"""Checkpoint folders of a run: ``checkpoints/step_000000002000``."""


@dataclasses.dataclass(frozen=True)
class EnvInfo:
    """What a checkpoint records about the env it was trained on.

    Attributes:
        env_id: the libero-gym id (``LIBERO-Goal-v0``).
        task_ids: task indices within the suite.
        obs_mode: ``state``, ``pixels`` or ``both``.
        image_size: camera image size (pixels/both), ``None`` for the env default.
        max_episode_steps: episode limit in control steps, ``None`` for the suite's.
        chunk_size: ``None`` (actions (7,)), or Ta: the env steps (Ta, 7) action
            chunks (``LiberoEnv(chunk_size=Ta)``; the limit is then its ``step_limit``).
    """

    env_id: str
    task_ids: tuple[int, ...] = ()
    obs_mode: str = "state"
    image_size: int | None = None
    max_episode_steps: int | None = None
    chunk_size: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {**dataclasses.asdict(self), "task_ids": list(self.task_ids)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EnvInfo:
        return cls(
            str(data["env_id"]),
            tuple(int(t) for t in data.get("task_ids", ())),
            str(data.get("obs_mode", "state")),
            data.get("image_size"),
            data.get("max_episode_steps"),
            data.get("chunk_size"),  # absent in checkpoints written before chunk envs: per-step
        )

    def make_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``gym.make``/``make_vec`` (besides the id)."""
        kwargs: dict[str, Any] = {"obs_mode": self.obs_mode}
        if self.image_size is not None:
            kwargs["image_size"] = self.image_size
        if self.chunk_size is not None:
            # TimeLimit counts chunks, so the env counts its control steps itself (step_limit,
            # LiberoEnv docs); a TimeLimit of as many chunks never ends an episode first.
            kwargs["chunk_size"] = self.chunk_size
            if self.max_episode_steps is not None:
                kwargs["step_limit"] = self.max_episode_steps
                kwargs["max_episode_steps"] = self.max_episode_steps
        elif self.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.max_episode_steps
        return kwargs


def describe_space(space: spaces.Space[Any]) -> dict[str, Any]:
    """A JSON description of a Box/Discrete/Dict space (shapes, dtypes, bounds of Boxes)."""
    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "spaces": {key: describe_space(sub) for key, sub in space.spaces.items()}}
    if isinstance(space, spaces.Box):
        low, high = np.unique(space.low), np.unique(space.high)
        return {
            "type": "Box",
            "shape": list(space.shape),
            "dtype": str(space.dtype),
            "low": float(low[0]) if low.size == 1 else "varies",
            "high": float(high[0]) if high.size == 1 else "varies",
        }
    if isinstance(space, spaces.Discrete):
        return {"type": "Discrete", "n": int(space.n)}
    return {"type": type(space).__name__, "repr": repr(space)}


def space_from_description(desc: Mapping[str, Any]) -> spaces.Space[Any]:
    """Rebuild a space from :func:`describe_space`'s output (per-element bounds become +-inf)."""
    kind = desc.get("type")
    if kind == "Dict":
        return spaces.Dict({key: space_from_description(sub) for key, sub in desc["spaces"].items()})
    if kind == "Box":
        low = desc["low"] if desc["low"] != "varies" else -np.inf
        high = desc["high"] if desc["high"] != "varies" else np.inf
        return spaces.Box(low, high, tuple(desc["shape"]), np.dtype(desc["dtype"]))
    if kind == "Discrete":
        return spaces.Discrete(int(desc["n"]))
    raise CheckpointError(f"cannot rebuild a space from {desc}")


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for package in ("libero-gym", "torch", "stable-baselines3", "gymnasium", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


# ---------------------------------------------------------------------- RNG state
def get_rng_state() -> dict[str, Any]:
    """Torch, numpy (legacy global) and python ``random`` states as tensors and ints."""
    np_state = np.random.get_state()
    py_version, py_internal, py_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "numpy": {
            "keys": torch.from_numpy(np.asarray(np_state[1], dtype=np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "python": {
            "version": int(py_version),
            "internal": torch.tensor(py_internal, dtype=torch.int64),
            "gauss": py_gauss,
        },
    }


def set_rng_state(state: Mapping[str, Any]) -> None:
    """Restore what :func:`get_rng_state` returned."""
    torch.set_rng_state(state["torch"])
    np_state = state["numpy"]
    np.random.set_state(
        (
            "MT19937",
            np_state["keys"].numpy().astype(np.uint32),
            np_state["pos"],
            np_state["has_gauss"],
            np_state["cached_gaussian"],
        )
    )
    py = state["python"]
    random.setstate((py["version"], tuple(int(v) for v in py["internal"].tolist()), py["gauss"]))


# ---------------------------------------------------------------------- save
def agent_config_json(model: Any) -> dict[str, Any]:
    """The agent's config as JSON: ``config_dict()`` for built-ins, else SB3's constructor kwargs."""
    if hasattr(model, "config_dict"):
        return dict(model.config_dict())
    return dict(getattr(model, "_libero_gym_kwargs", {}))


def save_checkpoint(
    model: Any,
    path: str | os.PathLike[str],
    *,
    agent: str,
    env: EnvInfo,
    include_optimizer: bool = True,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``model`` as a checkpoint folder (or ``.zip``) at ``path``, atomically.

    Args:
        model: an SB3 ``BaseAlgorithm`` (built-in or plain SB3).
        path: target folder, or a file name ending in ``.zip``. An existing
            checkpoint there is replaced only once the new one is complete.
        agent: the agent's registry name (or ``module:Class`` path).
        env: the env the model acts in.
        include_optimizer: also save optimizer state dicts (needed to resume).
        extra: more JSON-able fields for ``agent.json`` (e.g. the run's config).

    Returns:
        The checkpoint path.
    """
    path = Path(path)
    spec = resolve_agent(agent)
    params = {
        name: state
        for name, state in model.get_parameters().items()
        if include_optimizer or not name.endswith("optimizer")
    }
    _, variable_names = model._get_torch_save_params()
    variables = {}
    for name in variable_names:
        value = _getattr_path(model, name)
        if value is not None:
            variables[name] = value.detach().cpu()
    buffer = io.BytesIO()
    torch.save({"params": params, "variables": variables, "rng": get_rng_state()}, buffer)
    blob = buffer.getvalue()
    meta = {
        "format_version": FORMAT_VERSION,
        "agent": spec.name,
        "class_path": spec.class_path,
        "config": agent_config_json(model),
        "env": env.to_json(),
        "observation_space": describe_space(_env_observation_space(model)),
        "action_space": describe_space(model.action_space),
        "num_timesteps": int(model.num_timesteps),
        "counters": {
            "n_updates": int(getattr(model, "_n_updates", 0)),
            "episode_num": int(getattr(model, "_episode_num", 0)),
        },
        "includes_optimizer": include_optimizer,
        "versions": _versions(),
        "params_bytes": len(blob),
        "params_sha256": hashlib.sha256(blob).hexdigest(),
        **dict(extra or {}),
    }
    meta_bytes = (json.dumps(meta, indent=2, sort_keys=False) + "\n").encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".zip":
        fd, tmp_name = tempfile.mkstemp(prefix=f".tmp-{path.name}-", dir=path.parent)
        with os.fdopen(fd, "wb") as handle, zipfile.ZipFile(handle, "w", zipfile.ZIP_STORED) as archive:
            archive.writestr(AGENT_FILE, meta_bytes)
            archive.writestr(PARAMS_FILE, blob)
        set_default_mode(tmp_name)  # mkstemp made it 0600; a plain open() gives 0666 & ~umask
        os.replace(tmp_name, path)
        return path
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{path.name}-", dir=path.parent))
    try:
        for name, data in ((PARAMS_FILE, blob), (AGENT_FILE, meta_bytes)):
            with open(tmp / name, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        set_default_mode(tmp)  # mkdtemp made it 0700; a plain mkdir gives 0777 & ~umask
        if path.exists():  # replace an older checkpoint of the same name only now
            trash = Path(tempfile.mkdtemp(prefix=f".old-{path.name}-", dir=path.parent))
            os.replace(path, trash / path.name)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return path


# ---------------------------------------------------------------------- load
def read_meta(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The ``agent.json`` of a checkpoint folder/zip (or a run folder's newest checkpoint)."""
    return _read_files(resolve_checkpoint(path), params=False)[0]


def read_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(agent.json, params.pt contents)`` of a checkpoint, verified.

    Raises:
        CheckpointError: missing, unreadable, or params.pt does not match its hash.
    """
    return _read_files(resolve_checkpoint(path), params=True)  # type: ignore[return-value]


def resolve_checkpoint(path: str | os.PathLike[str]) -> Path:
    """A checkpoint folder or zip; a run folder resolves to its newest valid checkpoint."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    if path.is_dir() and not (path / AGENT_FILE).exists():
        for candidate in (path / "checkpoints", path):
            if candidate.is_dir() and any(p.name.startswith(STEP_PREFIX) for p in candidate.iterdir()):
                return CheckpointManager(candidate).latest_valid()
        raise CheckpointError(
            f"{str(path)!r} is neither a checkpoint (no {AGENT_FILE}) nor a run folder with checkpoints"
        )
    return path


def _read_files(path: Path, *, params: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    try:
        if path.is_file():
            if not zipfile.is_zipfile(path):
                raise CheckpointError(f"checkpoint {str(path)!r} is neither a folder nor a zip")
            with zipfile.ZipFile(path) as archive:
                meta_bytes = archive.read(AGENT_FILE)
                blob = archive.read(PARAMS_FILE) if params else None
        else:
            meta_bytes = (path / AGENT_FILE).read_bytes()
            blob = (path / PARAMS_FILE).read_bytes() if params else None
    except (OSError, KeyError, zipfile.BadZipFile) as error:
        raise CheckpointError(f"cannot read checkpoint {str(path)!r}: {error}") from error
    try:
        meta = json.loads(meta_bytes)
    except json.JSONDecodeError as error:
        raise CheckpointError(f"{AGENT_FILE} of {str(path)!r} is not valid JSON: {error}") from error
    if not isinstance(meta, dict) or "agent" not in meta or "env" not in meta:
        raise CheckpointError(f"{AGENT_FILE} of {str(path)!r} is not a libero-gym checkpoint")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {meta['format_version']}; "
            f"this code reads up to {FORMAT_VERSION}"
        )
    if blob is None:
        return meta, None
    if len(blob) != meta.get("params_bytes", len(blob)) or hashlib.sha256(blob).hexdigest() != meta.get(
        "params_sha256", hashlib.sha256(blob).hexdigest()
    ):
        raise CheckpointError(f"{PARAMS_FILE} of {str(path)!r} is truncated or corrupt (size/hash mismatch)")
    try:
        data = torch.load(io.BytesIO(blob), map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises several types for a bad file
        raise CheckpointError(f"cannot load {PARAMS_FILE} of {str(path)!r}: {error}") from error
    return meta, data


def check_compatible(
    meta: Mapping[str, Any],
    *,
    agent: str | None = None,
    env_id: str | None = None,
    observation_space: spaces.Space[Any] | None = None,
    action_space: spaces.Space[Any] | None = None,
    where: str = "checkpoint",
) -> None:
    """Raise if a checkpoint belongs to another agent, env, or observation/action space.

    Raises:
        CheckpointError: naming what the checkpoint is for and what was asked.
    """
    if agent is not None:
        wanted = resolve_agent(agent)
        if meta["agent"] != wanted.name and meta.get("class_path") != wanted.class_path:
            raise CheckpointError(
                f"{where} is for agent {meta['agent']!r} ({meta.get('class_path')}), "
                f"not {wanted.name!r} ({wanted.class_path})"
            )
    env = meta["env"]
    if env_id is not None and env["env_id"] != env_id:
        raise CheckpointError(
            f"{where} is for env {env['env_id']!r} (obs_mode {env.get('obs_mode')!r}), not {env_id!r}"
        )
    if observation_space is not None and describe_space(observation_space) != meta["observation_space"]:
        raise CheckpointError(
            f"{where} is for env {env['env_id']!r} with obs_mode {env.get('obs_mode')!r} and observation space "
            f"{_space_summary(meta['observation_space'])}, not {_space_summary(describe_space(observation_space))}"
        )
    if action_space is not None and _step_space(describe_space(action_space)) != _step_space(meta["action_space"]):
        raise CheckpointError(
            f"{where} has action space {meta['action_space']}, not {describe_space(action_space)}"
        )


def _step_space(desc: Mapping[str, Any]) -> dict[str, Any]:
    """An action space as one control step sees it: a (Ta, 7) chunk of Boxes is its (7,) Box.

    The weights of an agent do not depend on whether its env steps chunks (DiffusionPPO
    acts in both), so a checkpoint of one kind loads on an env of the other.
    """
    out = dict(desc)
    if out.get("type") == "Box" and len(out.get("shape", ())) == 2:
        out["shape"] = list(out["shape"][1:])
    return out


def _space_summary(desc: Mapping[str, Any]) -> str:
    if desc.get("type") == "Dict":
        return "{" + ", ".join(f"{k}: {_space_summary(v)}" for k, v in desc["spaces"].items()) + "}"
    if desc.get("type") == "Box":
        return f"{tuple(desc['shape'])} {desc['dtype']}"
    if desc.get("type") == "Discrete":
        return f"Discrete({desc['n']})"
    return str(desc)


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
    from libero_gym.errors import InvalidInputError

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


def load_agent(
    path: str | os.PathLike[str],
    env: Any = None,
    *,
    agent: str | None = None,
    env_id: str | None = None,
    device: str = "auto",
    restore_rng: bool = False,
    tensorboard_log: str | None = None,
    verbose: int = 0,
) -> tuple[Any, dict[str, Any]]:
    """Rebuild the agent of a checkpoint on ``env`` and load its parameters.

    Args:
        path: checkpoint folder/zip, or a run folder (its newest valid checkpoint).
        env: an SB3 VecEnv with the checkpoint's spaces (an action chunk space and its
            per-step space are interchangeable); ``None`` builds the agent on a spaces-only
            env rebuilt from ``agent.json`` with the per-step action space (enough for
            ``predict``, one action per call).
        agent: expected agent name; a checkpoint of another agent is an error.
        env_id: expected env id; a checkpoint of another env is an error.
        device: torch device.
        restore_rng: also restore the torch/numpy/python RNG states (resume).
        tensorboard_log: TensorBoard folder for further training.
        verbose: SB3 verbosity.

    Returns:
        ``(model, agent.json)`` with ``model.num_timesteps`` and update counters restored.

    Raises:
        CheckpointError: unreadable, or for another agent/env/space.
    """
    meta, data = read_checkpoint(path)
    if env is None:
        from stable_baselines3.common.vec_env import DummyVecEnv

        from agents.registry import SpacesOnlyEnv

        obs_space = space_from_description(meta["observation_space"])
        # A standalone policy acts one control step at a time (``predict`` queues a chunk
        # agent's chunk per env), so a chunk env's (Ta, 7) space is rebuilt as (7,).
        act_space = space_from_description(_step_space(meta["action_space"]))
        env = DummyVecEnv([lambda: SpacesOnlyEnv(obs_space, act_space)])
    check_compatible(
        meta, agent=agent, env_id=env_id, observation_space=env.observation_space, action_space=env.action_space
    )
    spec = resolve_agent(meta["agent"])
    config = spec.make_config(meta["config"]) if spec.protocol == PROTOCOL_CONFIG else dict(meta["config"])
    model = build_agent(spec, env, config, device=device, tensorboard_log=tensorboard_log, verbose=verbose)
    load_params_into(model, data, strict=bool(meta.get("includes_optimizer", True)))
    model.num_timesteps = int(meta["num_timesteps"])
    model._n_updates = int(meta.get("counters", {}).get("n_updates", 0))
    model._episode_num = int(meta.get("counters", {}).get("episode_num", 0))
    if restore_rng:
        set_rng_state(data["rng"])
    return model, meta


def load_params_into(
    model: Any, data: Mapping[str, Any], *, strict: bool = True, only: tuple[str, ...] | None = None
) -> None:
    """Load the state dicts and torch variables of ``params.pt`` into ``model``.

    Args:
        model: the agent.
        data: what :func:`read_checkpoint` returned as the second item.
        strict: require every state dict the model saves (optimizers included).
        only: load only these top-level names (e.g. ``("policy",)`` for a warm start).

    Raises:
        CheckpointError: the state dicts do not fit the model (other architecture).
    """
    params = dict(data["params"])
    if only is not None:
        params = {name: value for name, value in params.items() if name in only}
    try:
        model.set_parameters(params, exact_match=strict and only is None, device=model.device)
    except (RuntimeError, ValueError, KeyError) as error:
        raise CheckpointError(f"checkpoint parameters do not fit the agent: {error}") from error
    if only is None:
        for name, value in data.get("variables", {}).items():
            target = _getattr_path(model, name)
            if target is not None:
                with torch.no_grad():
                    target.data.copy_(value.to(target.device))


def _env_observation_space(model: Any) -> spaces.Space[Any]:
    """The env's observation space (SB3 stores image spaces transposed to channel-first)."""
    env = model.get_env()
    while env is not None and hasattr(env, "venv"):
        env = env.venv
    return env.observation_space if env is not None else model.observation_space


def _getattr_path(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


# ---------------------------------------------------------------------- a run's checkpoints
class CheckpointManager:
    """The ``step_<N>`` checkpoints of one run: save, keep the newest ``keep``, find the latest valid.

    Args:
        directory: the run's ``checkpoints`` folder.
        keep: how many of the newest checkpoints to keep (>= 2 keeps the previous
            one while the next is written).
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def paths(self) -> list[Path]:
        """Checkpoint folders, oldest first."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in self.directory.iterdir():
            if path.is_dir() and path.name.startswith(STEP_PREFIX) and path.name[len(STEP_PREFIX) :].isdigit():
                found.append(path)
        return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))

    def save(self, model: Any, *, agent: str, env: EnvInfo, extra: Mapping[str, Any] | None = None) -> Path:
        """Save at ``step_<model.num_timesteps>`` and delete checkpoints beyond ``keep``."""
        path = self.directory / f"{STEP_PREFIX}{int(model.num_timesteps):012d}"
        save_checkpoint(model, path, agent=agent, env=env, extra=extra)
        for old in self.paths()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.directory.glob(".tmp-*"):  # left by a writer that was killed
            shutil.rmtree(stale, ignore_errors=True)
        return path

    def latest_valid(self) -> Path:
        """The newest checkpoint that reads and verifies; warns for each one skipped.

        Raises:
            CheckpointError: none is valid.
        """
        errors = []
        for path in reversed(self.paths()):
            try:
                _read_files(path, params=True)
            except CheckpointError as error:
                warnings.warn(f"skipping checkpoint {path}: {error}", stacklevel=2)
                errors.append(str(error))
                continue
            return path
        raise CheckpointError(f"no valid checkpoint in {str(self.directory)!r}" + (f": {errors}" if errors else ""))
