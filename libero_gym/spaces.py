"""The action and observation spaces of libero-gym envs, and the layout of each key.

Shared by :class:`libero_gym.env.LiberoEnv` and the simulator-free
:class:`libero_gym.testing.FakeLiberoEnv`, so the two can never disagree.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from libero_gym import suites

ObsMode = Literal["state", "pixels", "both"]
OBS_MODES: tuple[str, ...] = ("state", "pixels", "both")

ACTION_DIM = 7
"""OSC_POSE delta (dx, dy, dz, dax, day, daz) plus gripper, each in [-1, 1]."""

CAMERAS: dict[str, str] = {"agentview_image": "agentview", "eye_in_hand_image": "robot0_eye_in_hand"}
"""Observation key -> robosuite camera name."""

# Proprioception: robosuite observables concatenated in this order (39 values).
PROPRIO_KEYS: tuple[tuple[str, int], ...] = (
    ("robot0_joint_pos", 7),
    ("robot0_joint_pos_cos", 7),
    ("robot0_joint_pos_sin", 7),
    ("robot0_joint_vel", 7),
    ("robot0_eef_pos", 3),
    ("robot0_eef_quat", 4),
    ("robot0_gripper_qpos", 2),
    ("robot0_gripper_qvel", 2),
)
PROPRIO_SLICES: dict[str, slice] = {}
_start = 0
for _key, _size in PROPRIO_KEYS:
    PROPRIO_SLICES[_key.removeprefix("robot0_")] = slice(_start, _start + _size)
    _start += _size
PROPRIO_DIM = _start
"""Length of the ``proprio`` observation; :data:`PROPRIO_SLICES` names its parts."""

OBJECT_STATE_PER_OBJECT = 14
"""Per movable object: position (3), quaternion xyzw (4), position and quaternion
relative to the end effector (3 + 4), as LIBERO's ``object-state``."""
MAX_FIXTURE_JOINTS = 8
"""Articulated-fixture joint positions (drawers, doors, knobs) kept in the object
observation, zero-padded; the largest LIBERO scene has fewer."""
OBJECT_DIM = suites.MAX_OBJECTS * OBJECT_STATE_PER_OBJECT + MAX_FIXTURE_JOINTS
"""Length of the ``object`` observation: objects zero-padded to the most any task
has, so that every task of every suite shares one observation space."""


def action_space(chunk_size: int | None = None) -> spaces.Box:
    """``Box(-1, 1, (7,))``, or ``(chunk_size, 7)`` for chunk envs."""
    shape = (ACTION_DIM,) if chunk_size is None else (chunk_size, ACTION_DIM)
    return spaces.Box(-1.0, 1.0, shape, np.float32)


def observation_space(
    obs_mode: str, image_size: int, n_tasks: int, camera_spaces: Mapping[str, spaces.Space[Any]] | None = None
) -> spaces.Dict:
    """The flat ``Dict`` observation space of an env in ``obs_mode`` (see LiberoEnv's table).

    Args:
        obs_mode: ``state``, ``pixels`` or ``both``.
        image_size: camera image height and width.
        n_tasks: tasks of the suite (``task_index``).
        camera_spaces: the camera channels of non-default camera options
            (:meth:`libero_gym.camera_channels.CameraOptions.spaces`), replacing the two RGB images.
    """
    obs_spaces: dict[str, spaces.Space[Any]] = {"proprio": spaces.Box(-np.inf, np.inf, (PROPRIO_DIM,), np.float32)}
    if obs_mode in ("state", "both"):
        obs_spaces["object"] = spaces.Box(-np.inf, np.inf, (OBJECT_DIM,), np.float32)
    if camera_spaces is not None:
        obs_spaces.update(camera_spaces)
    elif obs_mode in ("pixels", "both"):
        for key in CAMERAS:
            obs_spaces[key] = spaces.Box(0, 255, (image_size, image_size, 3), np.uint8)
    obs_spaces["task_index"] = spaces.Discrete(n_tasks)
    return spaces.Dict(obs_spaces)
