"""LIBERO's HDF5 dataset layout: write it atomically, read it, validate it.

One module owns the layout, so that the writer, the reader, the validator and
the tests cannot drift apart. The layout is the one of LIBERO's human datasets
(``scripts/create_dataset.py`` in LIBERO; the files of ``libero_spatial`` etc.),
which LIBERO's loader, robomimic and the RLDS/LeRobot converters read::

    data/                              attrs: env_name, env_args (JSON), problem_info (JSON),
    |                                         bddl_file_name, bddl_file_content,
    |                                         macros_image_convention, tag, total, num_demos,
    |                                         libero_gym (JSON provenance, ours)
    +-- demo_<i>/                      attrs: num_samples, init_state (S,), model_file (XML)
        +-- actions        (T, 7)      float64  OSC_POSE delta + gripper, in [-1, 1]
        +-- states         (T, S)      float64  flattened MuJoCo state before action t
        +-- robot_states   (T, 9)      float64  gripper qpos (2), ee pos (3), ee quat xyzw (4)
        +-- rewards        (T,)        uint8    1 on the success step
        +-- dones          (T,)        uint8    1 on the last step
        +-- obs/
            +-- agentview_rgb    (T, H, W, 3) uint8   as rendered (upside down, OpenGL)
            +-- eye_in_hand_rgb  (T, H, W, 3) uint8   as rendered
            +-- gripper_states   (T, 2)  float64  finger joint positions (m)
            +-- joint_states     (T, 7)  float64  arm joint positions (rad)
            +-- ee_states        (T, 6)  float64  ee pos (m), ee orientation (axis-angle)
            +-- ee_pos           (T, 3)  float64
            +-- ee_ori           (T, 3)  float64  axis-angle (rad)

Shape legend: T steps of the episode, S length of the flattened MuJoCo state
(differs per scene), H and W image height and width.

Time alignment: ``obs/*[t]``, ``robot_states[t]`` and ``states[t]`` all describe
the moment *before* ``actions[t]`` (what the policy saw when it chose the action).
LIBERO's human datasets pair ``states[t]`` with the observation *after*
``actions[t]`` (their regeneration script records the step's return); ours are
consistent, so rendering ``states[t]`` gives ``obs/*_rgb[t]``.

Per-demo extra attributes (attributes never change the key layout):
``success``, ``init_state_id``, ``seed``, ``episode_index``, ``layout_seed``, ``body_poses``,
``settle_steps``.

Settle steps: our demos start where the env's reset starts, at LIBERO's init
state (``states[0] == init_state``), and their first ``settle_steps`` actions are
the reset's no-op settle steps (``[0]*6 + [-1]``), not policy decisions; the policy
acted from ``states[settle_steps]`` on. So a rebuild that sets ``states[0]`` and
plays every action (LIBERO's ``create_dataset.py``) starts as the recording did;
readers that want the policy's steps only skip them (:attr:`Episode.policy_steps`).
Files without the attribute (LIBERO's own, older exports) have none.

Rebuildable by LIBERO's own tooling: ``env_args`` holds the keyword arguments of
LIBERO's problem class (``TASK_MAPPING[problem_name](**env_kwargs)``, with
``controller_configs``), BDDL paths are relative to the LIBERO root as in LIBERO's
released files (:func:`portable_bddl_path`), and ``model_file`` compiles to the
model the demo ran in (:mod:`libero_gym.data.model_xml`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym.atomic_files import (  # noqa: F401  (remove_stale_temporaries, write_json_atomic: the data API)
    atomic_path,
    json_default,
    remove_stale_temporaries,
    write_json_atomic,
)
from libero_gym.data.libero_metadata import (  # noqa: F401  (re-exported: the data API)
    BDDL_FOLDER,
    bddl_path,
    DEFAULT_CAMERA_SIZE,
    env_args_for,
    env_class_name,
    LIBERO_BDDL_PREFIX,
    osc_pose_controller_config,
    portable_bddl_path,
    problem_info_for,
    resolve_bddl_file,
    resolve_task,
)
from libero_gym.errors import DatasetError
from libero_gym.suites import Task

IMAGE_KEYS: tuple[str, ...] = ("agentview_rgb", "eye_in_hand_rgb")
"""Camera datasets under ``obs/`` (LIBERO's names)."""

# key -> (dtype, shape after T; None = any length for that axis).
DEMO_ARRAYS: dict[str, tuple[type, tuple[int | None, ...]]] = {
    "actions": (np.float64, (7,)),
    "states": (np.float64, (None,)),
    "robot_states": (np.float64, (9,)),
    "rewards": (np.uint8, ()),
    "dones": (np.uint8, ()),
}
"""Arrays directly under ``demo_<i>``."""
OBS_ARRAYS: dict[str, tuple[type, tuple[int | None, ...]]] = {
    "agentview_rgb": (np.uint8, (None, None, 3)),
    "eye_in_hand_rgb": (np.uint8, (None, None, 3)),
    "gripper_states": (np.float64, (2,)),
    "joint_states": (np.float64, (7,)),
    "ee_states": (np.float64, (6,)),
    "ee_pos": (np.float64, (3,)),
    "ee_ori": (np.float64, (3,)),
}
"""Arrays under ``demo_<i>/obs``."""
DATA_ATTRS: tuple[str, ...] = (
    "env_name",
    "env_args",
    "problem_info",
    "bddl_file_name",
    "bddl_file_content",
    "macros_image_convention",
    "tag",
    "total",
    "num_demos",
)
"""Attributes of ``data``: those of LIBERO's released files plus ``bddl_file_content``
(written by LIBERO's ``create_dataset.py``)."""
DEMO_ATTRS: tuple[str, ...] = ("num_samples", "init_state", "model_file")
"""Attributes of every ``demo_<i>``."""
PROVENANCE_ATTR = "libero_gym"
"""Our extra attribute on ``data``: JSON of how the dataset was made."""
SETTLE_STEPS_ATTR = "settle_steps"
"""Per-demo attribute: how many leading steps are the env reset's settle steps."""
LIBERO_TAG = "libero-v1"
"""The ``tag`` attribute of LIBERO's released datasets."""
IMAGE_CONVENTION = "opengl"
"""robosuite's ``macros.IMAGE_CONVENTION`` that LIBERO's files record: images
stored as rendered, bottom row first (upside down)."""


@dataclasses.dataclass
class Episode:
    """One demonstration: the arrays and attributes of a ``demo_<i>`` group."""

    actions: np.ndarray
    """(T, 7) float64 actions."""
    states: np.ndarray
    """(T, S) float64 flattened MuJoCo states, before each action."""
    robot_states: np.ndarray
    """(T, 9) float64: gripper qpos, ee pos, ee quat (xyzw)."""
    rewards: np.ndarray
    """(T,) uint8."""
    dones: np.ndarray
    """(T,) uint8."""
    obs: dict[str, np.ndarray]
    """``obs/`` arrays by LIBERO name (images may be absent, see :data:`IMAGE_KEYS`)."""
    init_state: np.ndarray
    """(S,) float64, ``states[0]``."""
    model_file: str = ""
    """The MuJoCo XML of the scene."""
    attrs: dict[str, Any] = dataclasses.field(default_factory=dict)
    """Extra per-demo attributes (``success``, ``init_state_id``, ``seed``, ...)."""
    expert_actions: np.ndarray | None = None
    """(T, 7) float64, ``demo_<i>/expert_actions``: what a privileged expert commanded at each step when
    ``actions`` (what was executed) carry exploration noise (``collect --action-noise``); None otherwise.
    Behaviour cloning learns from these: the expert's corrections from states off its own path."""

    @property
    def num_samples(self) -> int:
        """T, the number of steps."""
        return int(self.actions.shape[0])

    @property
    def settle_steps(self) -> int:
        """How many leading steps are the reset's settle steps (0 for files without the attribute)."""
        return int(self.attrs.get(SETTLE_STEPS_ATTR, 0))

    @property
    def policy_steps(self) -> slice:
        """The steps the policy chose (all but the settle steps): ``actions[episode.policy_steps]``."""
        return slice(self.settle_steps, None)

    @property
    def success(self) -> bool | None:
        """The recorded success flag (``None`` when the file does not say)."""
        if "success" in self.attrs:
            return bool(self.attrs["success"])
        return None

    @property
    def has_images(self) -> bool:
        """Whether both camera arrays are present."""
        return all(key in self.obs for key in IMAGE_KEYS)


@dataclasses.dataclass
class LiberoDataset:
    """A LIBERO-layout file read into memory."""

    path: Path
    """Where it was read from."""
    episodes: list[Episode]
    """Demos in index order (``demo_0``, ``demo_1``, ...)."""
    env_args: dict[str, Any]
    """Parsed ``env_args``."""
    problem_info: dict[str, Any]
    """Parsed ``problem_info`` (problem_name, domain_name, language_instruction)."""
    attrs: dict[str, Any]
    """Every attribute of ``data`` (strings and numbers as stored)."""
    provenance: dict[str, Any]
    """Parsed ``libero_gym`` attribute; empty for files we did not write."""
    task: Task | None
    """The libero-gym task, when the file is one of the 130."""

    @property
    def language_instruction(self) -> str:
        """The task's language instruction."""
        return str(self.problem_info.get("language_instruction", ""))

    @property
    def total(self) -> int:
        """Total number of steps over all demos."""
        return sum(episode.num_samples for episode in self.episodes)


# ---------------------------------------------------------------------- writer
def write_dataset(
    path: str | os.PathLike[str],
    episodes: Iterable[Episode],
    task: Task,
    *,
    provenance: Mapping[str, Any] | None = None,
    env_args: Mapping[str, Any] | None = None,
    compression: str | None = None,
) -> Path:
    """Write ``episodes`` of one task as a LIBERO-layout HDF5 file, atomically.

    Args:
        path: output file (LIBERO names it ``<task name>_demo.hdf5``).
        episodes: the demos, written as ``demo_0``, ``demo_1``, ... in this order;
            any iterable (a generator streams large datasets through memory).
        task: the task they belong to (fills ``problem_info``, BDDL attributes).
        provenance: how the data was made (agent, checkpoint, seeds, versions);
            stored as JSON in the ``libero_gym`` attribute of ``data``.
        env_args: override of ``env_args`` (default :func:`env_args_for`).
        compression: h5py compression for arrays (``None`` as LIBERO, or ``"gzip"``,
            ``"lzf"``).

    Returns:
        The path written.
    """
    import h5py

    bddl = bddl_path(task)
    target = Path(path)
    with atomic_path(target) as tmp:
        with h5py.File(tmp, "w") as file:
            data = file.create_group("data")
            data.attrs["env_name"] = env_class_name(task)
            data.attrs["problem_info"] = json.dumps(problem_info_for(task))
            data.attrs["bddl_file_name"] = portable_bddl_path(task)
            data.attrs["bddl_file_content"] = bddl.read_text() if bddl.exists() else ""
            data.attrs["macros_image_convention"] = IMAGE_CONVENTION
            data.attrs["tag"] = LIBERO_TAG
            prov = {"suite": task.suite, "task_id": task.index, "task_name": task.name, **dict(provenance or {})}
            data.attrs[PROVENANCE_ATTR] = json.dumps(prov, sort_keys=True, default=json_default)
            total, count, image_size = 0, 0, 0
            for i, episode in enumerate(episodes):
                _check_episode(episode, f"episode {i}")
                group = data.create_group(f"demo_{i}")
                for key, (dtype, _) in DEMO_ARRAYS.items():
                    group.create_dataset(key, data=np.asarray(getattr(episode, key), dtype=dtype), compression=compression)
                if episode.expert_actions is not None:
                    group.create_dataset("expert_actions", data=np.asarray(episode.expert_actions, dtype=np.float64),
                                         compression=compression)  # fmt: skip
                obs = group.create_group("obs")
                for key, (dtype, _) in OBS_ARRAYS.items():
                    if key in episode.obs:
                        obs.create_dataset(key, data=np.asarray(episode.obs[key], dtype=dtype), compression=compression)
                group.attrs["num_samples"] = episode.num_samples
                group.attrs["init_state"] = np.asarray(episode.init_state, dtype=np.float64)
                group.attrs["model_file"] = episode.model_file
                for key, value in episode.attrs.items():
                    group.attrs[key] = value
                total += episode.num_samples
                count += 1
                if episode.has_images:
                    image_size = int(episode.obs["agentview_rgb"].shape[1])
            if count == 0:
                raise DatasetError(f"refusing to write {path}: no episodes")
            data.attrs["env_args"] = json.dumps(dict(env_args) if env_args else env_args_for(task, image_size))
            data.attrs["total"] = total
            data.attrs["num_demos"] = count
    return target


def _check_episode(episode: Episode, where: str) -> None:
    """Raise DatasetError unless an in-memory episode fits the layout."""
    arrays = {key: getattr(episode, key) for key in DEMO_ARRAYS}
    arrays.update({f"obs/{key}": value for key, value in episode.obs.items()})
    steps = episode.num_samples
    if steps < 1:
        raise DatasetError(f"{where}: empty episode")
    for key, value in arrays.items():
        name = key.removeprefix("obs/")
        table = OBS_ARRAYS if key.startswith("obs/") else DEMO_ARRAYS
        if name not in table:
            raise DatasetError(f"{where}: unknown array {key!r}")
        _check_shape(np.asarray(value).shape, table[name][1], steps, f"{where}: {key}")


def _check_shape(shape: tuple[int, ...], tail: tuple[int | None, ...], steps: int, where: str) -> None:
    if len(shape) != 1 + len(tail) or shape[0] != steps or any(
        want is not None and got != want for got, want in zip(shape[1:], tail)
    ):
        expected = "(" + ", ".join(["T", *("*" if d is None else str(d) for d in tail)]) + ")"
        raise DatasetError(f"{where} has shape {shape}, expected {expected} with T={steps}")


# ---------------------------------------------------------------------- reader / validator
def _open(path: str | os.PathLike[str]) -> Any:
    import h5py

    target = Path(path)
    if not target.exists():
        raise DatasetError(f"{target}: no such file")
    if target.is_dir():
        raise DatasetError(f"{target}: is a folder, not a LIBERO HDF5 file")
    if not h5py.is_hdf5(target):
        raise DatasetError(f"{target}: not an HDF5 file (expected a LIBERO dataset)")
    try:
        return h5py.File(target, "r")
    except OSError as error:
        raise DatasetError(f"{target}: unreadable HDF5 file (truncated or corrupt): {error}") from None


def demo_keys(data: Any) -> list[str]:
    """``demo_<i>`` names of a ``data`` group in index order."""
    names = [name for name in data.keys() if name.startswith("demo_") and name[5:].isdigit()]
    return sorted(names, key=lambda name: int(name[5:]))


def validate_dataset(path: str | os.PathLike[str], *, require_images: bool = True) -> None:
    """Raise :class:`DatasetError` unless ``path`` is a complete LIBERO-layout file.

    Checks that the file is HDF5 and readable to its end, that ``data`` and every
    ``demo_<i>`` have the layout's keys, dtypes and shapes, that lengths agree,
    and that the required attributes are present and consistent
    (``num_demos``, ``total``, ``num_samples``).

    Args:
        path: the file.
        require_images: also require the two camera arrays.
    """
    with _open(path) as file:
        try:
            _validate_open(file, Path(path), require_images)
        except DatasetError:
            raise
        except (OSError, KeyError, ValueError, RuntimeError) as error:
            raise DatasetError(f"{path}: unreadable HDF5 content (truncated or corrupt): {error}") from None


def _validate_open(file: Any, path: Path, require_images: bool) -> None:
    import h5py

    if "data" not in file or not isinstance(file["data"], h5py.Group):
        raise DatasetError(f"{path}: no 'data' group; not a LIBERO dataset (top-level keys: {sorted(file.keys())})")
    data = file["data"]
    missing = [key for key in DATA_ATTRS if key not in data.attrs and key != "bddl_file_content"]
    if missing:
        raise DatasetError(f"{path}: 'data' lacks attributes {missing}; not a LIBERO dataset")
    for key in ("env_args", "problem_info"):
        try:
            json.loads(data.attrs[key])
        except (TypeError, ValueError):
            raise DatasetError(f"{path}: data.attrs[{key!r}] is not JSON") from None
    demos = demo_keys(data)
    if not demos:
        raise DatasetError(f"{path}: 'data' holds no demo_<i> groups")
    if int(data.attrs["num_demos"]) != len(demos):
        raise DatasetError(f"{path}: num_demos={int(data.attrs['num_demos'])} but {len(demos)} demo groups")
    total = 0
    for name in demos:
        group = data[name]
        where = f"{path}: data/{name}"
        missing = [key for key in DEMO_ATTRS if key not in group.attrs]
        if missing:
            raise DatasetError(f"{where} lacks attributes {missing}")
        steps = int(group["actions"].shape[0]) if "actions" in group else -1
        required = [*DEMO_ARRAYS, *(f"obs/{key}" for key in OBS_ARRAYS if require_images or key not in IMAGE_KEYS)]
        missing = [key for key in required if key not in group]
        if missing:
            raise DatasetError(f"{where} lacks {missing}")
        for key in [*DEMO_ARRAYS, *(f"obs/{key}" for key in OBS_ARRAYS)]:
            if key not in group:
                continue
            name_ = key.removeprefix("obs/")
            dtype, tail = (OBS_ARRAYS if key.startswith("obs/") else DEMO_ARRAYS)[name_]
            dataset = group[key]
            if dataset.dtype != np.dtype(dtype):
                raise DatasetError(f"{where}/{key} has dtype {dataset.dtype}, expected {np.dtype(dtype)}")
            _check_shape(dataset.shape, tail, steps, f"{where}/{key}")
            # Read the last row: a truncated file fails here rather than in training.
            dataset[-1]
        if int(group.attrs["num_samples"]) != steps:
            raise DatasetError(f"{where}: num_samples={int(group.attrs['num_samples'])} but {steps} steps")
        if np.asarray(group.attrs["init_state"]).shape != (group["states"].shape[1],):
            raise DatasetError(f"{where}: init_state shape does not match states")
        settle = group.attrs.get(SETTLE_STEPS_ATTR, 0)
        if not isinstance(settle, (int, np.integer)) or isinstance(settle, (bool, np.bool_)) or not 0 <= settle < steps:
            raise DatasetError(f"{where}: {SETTLE_STEPS_ATTR}={settle!r}, expected an int in [0, {steps - 1}]")
        total += steps
    if int(data.attrs["total"]) != total:
        raise DatasetError(f"{path}: total={int(data.attrs['total'])} but demos hold {total} steps")


def instruction_and_provenance(path: Any, data: Any) -> tuple[str, dict[str, Any]]:
    """The language instruction (``problem_info``) and the ``libero_gym`` provenance attribute ({} for
    LIBERO's own files) of a file's open ``data`` group.

    Raises:
        DatasetError: ``problem_info`` has no language instruction.
    """
    problem = json.loads(_attr(data.attrs["problem_info"]))
    language = str(problem.get("language_instruction", "")).strip()
    if not language:
        raise DatasetError(f"{path}: problem_info has no language_instruction")
    provenance = json.loads(_attr(data.attrs[PROVENANCE_ATTR])) if PROVENANCE_ATTR in data.attrs else {}
    return language, provenance


def _attr(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def read_dataset(path: str | os.PathLike[str], *, images: bool = True, validate: bool = True) -> LiberoDataset:
    """Read a LIBERO-layout file (ours or LIBERO's own) into memory.

    Args:
        path: the file.
        images: load the camera arrays (the bulk of the file).
        validate: run :func:`validate_dataset` first (images not required).

    Raises:
        DatasetError: the file is missing, not HDF5, truncated, or not LIBERO's layout.
    """
    if validate:
        validate_dataset(path, require_images=False)
    with _open(path) as file:
        try:
            data = file["data"]
            attrs = {key: _attr(value) for key, value in data.attrs.items()}
            episodes = [_read_episode(data[name], images) for name in demo_keys(data)]
        except (OSError, KeyError) as error:
            raise DatasetError(f"{path}: unreadable HDF5 content (truncated or corrupt): {error}") from None
    provenance = json.loads(attrs[PROVENANCE_ATTR]) if PROVENANCE_ATTR in attrs else {}
    problem_info = json.loads(attrs.get("problem_info", "{}"))
    return LiberoDataset(
        path=Path(path),
        episodes=episodes,
        env_args=json.loads(attrs.get("env_args", "{}")),
        problem_info=problem_info,
        attrs=attrs,
        provenance=provenance,
        task=resolve_task(provenance, str(attrs.get("bddl_file_name", ""))),
    )


def _read_episode(group: Any, images: bool) -> Episode:
    obs = {
        key: group["obs"][key][()]
        for key in OBS_ARRAYS
        if key in group["obs"] and (images or key not in IMAGE_KEYS)
    }
    extra = {key: _attr(value) for key, value in group.attrs.items() if key not in DEMO_ATTRS}
    return Episode(
        actions=group["actions"][()],
        states=group["states"][()],
        robot_states=group["robot_states"][()],
        rewards=group["rewards"][()],
        dones=group["dones"][()],
        obs=obs,
        init_state=np.asarray(group.attrs["init_state"], dtype=np.float64),
        model_file=str(_attr(group.attrs["model_file"])),
        attrs=extra,
        expert_actions=group["expert_actions"][()] if "expert_actions" in group else None,
    )


def iter_episodes(path: str | os.PathLike[str], *, images: bool = True) -> Iterator[Episode]:
    """Yield the demos of a LIBERO-layout file one at a time (no validation, low memory)."""
    with _open(path) as file:
        try:
            data = file["data"]
            for name in demo_keys(data):
                yield _read_episode(data[name], images)
        except (OSError, KeyError) as error:
            raise DatasetError(f"{path}: unreadable HDF5 content (truncated or corrupt): {error}") from None


def dataset_file_name(task: Task) -> str:
    """LIBERO's file name for a task's demos: ``<task name>_demo.hdf5``."""
    return f"{task.name}_demo.hdf5"
