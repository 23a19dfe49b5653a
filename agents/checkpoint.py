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
:class:`agents.run_folder.CheckpointManager` keeps the newest ``keep`` checkpoints of a run
and falls back to an older one, with a warning, when the newest does not verify; the
spaces' JSON is :mod:`agents.space_codec`, the RNG states :mod:`agents.rng_state`.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import tempfile
import warnings
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from gymnasium import spaces

from agents.registry import PROTOCOL_CONFIG, SpacesOnlyEnv, build_agent, resolve_agent
from agents.rng_state import get_rng_state, set_rng_state
from agents.space_codec import describe_space, space_from_description, space_summary, step_space
from libero_gym.env_config import EnvConfig
from libero_gym.errors import CheckpointError
from libero_gym.file_modes import set_default_mode

AGENT_FILE = "agent.json"
PARAMS_FILE = "params.pt"
FORMAT_VERSION = 1
"""Bumped when the layout of agent.json/params.pt changes incompatibly."""
STEP_PREFIX = "step_"
"""Checkpoint folders of a run: ``checkpoints/step_000000002000`` (:mod:`agents.run_folder`)."""


def _versions() -> dict[str, str]:
    from importlib import metadata

    out = {}
    for package in ("libero-gym", "torch", "stable-baselines3", "gymnasium", "numpy"):
        try:
            out[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            out[package] = "unknown"
    return out


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
    env: EnvConfig,
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
                return latest_valid_checkpoint(candidate)
        raise CheckpointError(
            f"{str(path)!r} is neither a checkpoint (no {AGENT_FILE}) nor a run folder with checkpoints"
        )
    return path


def step_checkpoints(directory: str | os.PathLike[str]) -> list[Path]:
    """The ``step_<N>`` checkpoint folders of a run's ``checkpoints`` folder, oldest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    found = []
    for path in directory.iterdir():
        if path.is_dir() and path.name.startswith(STEP_PREFIX) and path.name[len(STEP_PREFIX) :].isdigit():
            found.append(path)
    return sorted(found, key=lambda p: int(p.name[len(STEP_PREFIX) :]))


def latest_valid_checkpoint(directory: str | os.PathLike[str]) -> Path:
    """The newest ``step_<N>`` checkpoint in ``directory`` that reads and verifies; warns for each one skipped.

    Raises:
        CheckpointError: none is valid.
    """
    errors = []
    for path in reversed(step_checkpoints(directory)):
        try:
            _read_files(path, params=True)
        except CheckpointError as error:
            warnings.warn(f"skipping checkpoint {path}: {error}", stacklevel=3)
            errors.append(str(error))
            continue
        return path
    raise CheckpointError(f"no valid checkpoint in {str(directory)!r}" + (f": {errors}" if errors else ""))


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
            f"{space_summary(meta['observation_space'])}, not {space_summary(describe_space(observation_space))}"
        )
    if action_space is not None and step_space(describe_space(action_space)) != step_space(meta["action_space"]):
        raise CheckpointError(
            f"{where} has action space {meta['action_space']}, not {describe_space(action_space)}"
        )


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

        obs_space = space_from_description(meta["observation_space"])
        # A standalone policy acts one control step at a time (``predict`` queues a chunk
        # agent's chunk per env), so a chunk env's (Ta, 7) space is rebuilt as (7,).
        act_space = space_from_description(step_space(meta["action_space"]))
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


# ---------------------------------------------------------------------- SB3's save/load API
class CheckpointSaveLoad:
    """SB3's ``model.save(path)`` / ``Cls.load(path, env)`` through the one checkpoint format.

    Mixed into the built-in agents in place of SB3's zip of pickles: ``save`` writes
    :func:`save_checkpoint`'s folder (or ``.zip`` when ``path`` ends so), ``load`` is
    :func:`load_agent` (``env`` optional: without it the agent is rebuilt on a spaces-only
    env, enough for ``predict``). The env is recorded as unknown (no id); ``train``'s
    checkpoints record theirs.
    """

    def save(self, path: str | os.PathLike[str], exclude: Any = None, include: Any = None) -> None:
        """Write a checkpoint at ``path`` (``exclude``/``include``: SB3's, ignored; the format holds state
        dicts and JSON, nothing else)."""
        cls = type(self)
        agent = resolve_agent(f"{cls.__module__}:{cls.__qualname__}").name
        shape = getattr(self, "action_space").shape or ()  # noqa: B009 (a BaseAlgorithm attribute)
        env = EnvConfig(env_id="", chunk_size=int(shape[0]) if len(shape) == 2 else None)
        save_checkpoint(self, path, agent=agent, env=env)

    @classmethod
    def load(  # type: ignore[override]
        cls, path: str | os.PathLike[str], env: Any = None, device: str = "auto", **kwargs: Any
    ) -> Any:
        """The agent saved at ``path``, on ``env`` (SB3 VecEnv with its spaces) or standalone.

        Raises:
            CheckpointError: unreadable, or a checkpoint of another agent class.
        """
        model, _ = load_agent(path, env, device=device, **kwargs)
        if not isinstance(model, cls):
            raise CheckpointError(f"{path} holds a {type(model).__name__}, not a {cls.__name__}")
        return model
