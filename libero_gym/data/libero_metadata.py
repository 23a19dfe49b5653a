"""What LIBERO's files record about a task: its BDDL file (portable path), env class, controller, env_args.

The metadata :func:`libero_gym.data.dataset.write_dataset` writes on ``data`` (LIBERO's
``env_args``, ``problem_info``, ``bddl_file_name``), and the way back from a recorded
path to a libero-gym task (:func:`resolve_task`), on any machine.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from libero_gym import suites
from libero_gym.libero_config import libero_package_dir
from libero_gym.suites import Task


BDDL_FOLDER = "bddl_files"
"""LIBERO's folder of BDDL files; what follows it in a recorded path names the task on any machine."""
LIBERO_BDDL_PREFIX = "libero/libero/" + BDDL_FOLDER
"""Where that folder sits relative to a LIBERO checkout (and to ``site-packages`` for the
PyPI package): the prefix of ``bddl_file_name`` in LIBERO's released datasets
(``libero/libero/bddl_files/libero_goal/<task>.bddl``), which LIBERO's scripts read
from the repository root."""
CAMERA_NAMES: tuple[str, ...] = ("robot0_eye_in_hand", "agentview")
"""``env_kwargs["camera_names"]`` of LIBERO's datasets (``create_dataset.py``)."""
DEFAULT_CAMERA_SIZE = 128
"""Camera size recorded for state-only files: LIBERO's default (``ControlEnv``), unused
there since no camera is enabled."""


def bddl_path(task: Task) -> Path:
    """The installed BDDL file of a task (found without importing LIBERO)."""

    return libero_package_dir() / BDDL_FOLDER / task.problem_folder / task.bddl_file


def portable_bddl_path(task: Task) -> str:
    """``bddl_file_name`` as LIBERO's released datasets record it: relative to the LIBERO root.

    No path of the producing machine (its virtual environment, its site-packages):
    ``libero/libero/bddl_files/<suite folder>/<task>.bddl`` resolves from the root of
    any LIBERO checkout or from ``site-packages``, and the part after
    ``bddl_files/`` under any install's ``get_libero_path("bddl_files")``
    (:func:`resolve_bddl_file`).
    """
    return f"{LIBERO_BDDL_PREFIX}/{task.problem_folder}/{task.bddl_file}"


def resolve_bddl_file(recorded: str | os.PathLike[str]) -> Path | None:
    """This machine's copy of a BDDL file that a dataset recorded, or ``None``.

    Tries, in order: the path as recorded (absolute, or relative to the current
    folder); relative to the installed LIBERO's root; the part after the last
    ``bddl_files/`` under the installed LIBERO's BDDL folder (how consumers of
    LIBERO's released files relocate their stale paths). A path into a virtual
    environment that no longer exists therefore still resolves.
    """

    path = Path(recorded)
    if str(recorded) and path.is_file():
        return path
    try:
        bddl_root = libero_package_dir() / BDDL_FOLDER
    except ModuleNotFoundError:
        return None
    candidates = [bddl_root.parent.parent / path] if not path.is_absolute() else []
    if BDDL_FOLDER in path.parts:
        last = len(path.parts) - 1 - path.parts[::-1].index(BDDL_FOLDER)
        candidates.append(bddl_root.joinpath(*path.parts[last + 1 :]))
    return next((candidate for candidate in candidates if candidate.is_file()), None)


def env_class_name(task: Task) -> str:
    """robosuite's registered env name of a task's problem class (``Libero_Tabletop_Manipulation``).

    LIBERO registers one class per problem; ``TASK_MAPPING`` keys it by the lower-cased
    class name (``problem_name``) and robosuite's registry (``robosuite.make``, which
    robomimic's env-from-metadata calls with ``env_name``) by the class name itself.
    """
    return "_".join(part.capitalize() for part in task.problem_name.split("_"))


def osc_pose_controller_config() -> dict[str, Any]:
    """``robosuite.load_controller_config(default_controller="OSC_POSE")``, read without importing robosuite.

    The controller LIBERO's ``ControlEnv`` builds (and libero-gym steps with);
    ``TASK_MAPPING[problem_name](**env_kwargs)`` takes it as ``controller_configs``.
    """
    import importlib.util

    spec = importlib.util.find_spec("robosuite")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("robosuite is not installed")
    return json.loads((Path(spec.origin).parent / "controllers" / "config" / "osc_pose.json").read_text())


def env_args_for(task: Task, image_size: int, control_mode: str = "delta") -> dict[str, Any]:
    """``env_args`` as LIBERO's ``create_dataset.py`` writes it (robomimic env meta).

    ``env_kwargs`` are keyword arguments of LIBERO's problem class, so that
    ``TASK_MAPPING[problem_name](**env_kwargs)`` (LIBERO) and
    ``robosuite.make(env_name, **env_kwargs)`` (robomimic) rebuild the env: the keys
    of LIBERO's released files, ``controller_configs`` the full OSC_POSE dict (a
    ``controller`` name is ``ControlEnv``'s argument, not the problem class's).

    Args:
        task: the task.
        image_size: camera height and width of the stored images; 0 for a
            state-only file (cameras then off).
        control_mode: what the actions are (the env's ``metadata["control_mode"]``): ``"delta"``
            or ``"absolute"``, recorded as the OSC controller's ``control_delta``, the flag robosuite
            and robomimic read.
    """
    bddl = portable_bddl_path(task)
    images = image_size > 0
    size = image_size if images else DEFAULT_CAMERA_SIZE
    return {
        "type": 1,  # robomimic EnvType.ROBOSUITE_TYPE
        "env_name": env_class_name(task),
        "problem_name": task.problem_name,
        "bddl_file": bddl,
        "env_kwargs": {
            "robots": ["Panda"],
            "controller_configs": {**osc_pose_controller_config(), "control_delta": control_mode == "delta"},
            "bddl_file_name": bddl,
            "has_renderer": False,
            "has_offscreen_renderer": images,
            "ignore_done": True,
            "use_camera_obs": images,
            "camera_depths": False,
            "camera_names": list(CAMERA_NAMES),
            "reward_shaping": True,
            "control_freq": 20,  # LIBERO's control rate (Hz)
            "camera_heights": size,
            "camera_widths": size,
            "camera_segmentations": None,
        },
    }


def problem_info_for(task: Task) -> dict[str, str]:
    """``problem_info`` of a task: problem_name, domain_name, language_instruction."""
    return {"problem_name": task.problem_name, "domain_name": "robosuite", "language_instruction": task.language}


def resolve_task(provenance: Mapping[str, Any], bddl_file_name: str) -> Task | None:
    """The libero-gym task of a file: from our provenance, else from its BDDL file name.

    Only the last two parts of ``bddl_file_name`` count (suite folder, file name),
    so the path may be relative (``libero/libero/bddl_files/...``, ours and LIBERO's)
    or point into a machine or virtual environment that no longer exists.
    """
    if "suite" in provenance and "task_id" in provenance:
        with contextlib.suppress(Exception):
            return suites.get_task(str(provenance["suite"]), int(provenance["task_id"]))
    parts = Path(bddl_file_name).parts
    if not parts:
        return None
    folder = parts[-2] if len(parts) >= 2 else None
    matches = [task for task in suites.TASKS if task.bddl_file == parts[-1]]
    exact = [task for task in matches if task.problem_folder == folder]
    if exact or matches:
        return (exact or matches)[0]
    return None
