"""What an action means: ``control_mode="delta"`` (LIBERO's default) or ``"absolute"`` end-effector poses.

Both drive robosuite's ``OSC_POSE`` controller at 20 Hz; they differ in its
``control_delta`` flag, as robosuite (and LeRobot's LIBERO env) define it:

- ``delta``: ``(dx, dy, dz, dax, day, daz, gripper)`` in [-1, 1], scaled by the
  controller to at most 0.05 m and 0.5 rad per step, relative to the current pose.
- ``absolute``: ``(x, y, z, ax, ay, az, gripper)``: the target end-effector position in
  metres and orientation as an axis-angle vector (radians), both in the world frame
  (robosuite's ``site_xpos``/``site_xmat`` of the gripper's grip site), not scaled and
  not clipped; the gripper as in delta mode.

The flag lives in each robot's ``controller_config``, which robosuite reads again at
every reset (``Robot.reset`` reloads the controller) and, for a rebuild, in the env's
``robot_configs``; :func:`set_control_mode` sets all three.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from gymnasium import spaces

from libero_gym import spaces as spaces_module
from libero_gym.errors import InvalidInputError

ControlMode = Literal["delta", "absolute"]
CONTROL_MODES: tuple[str, ...] = ("delta", "absolute")

POSITION_LIMIT = 3.0
"""Bound (m) of the absolute position in the action space: LIBERO's workspaces lie within
~1.5 m of the world origin (the table top is at z ~0.9 m), so this box never binds."""


def check_control_mode(control_mode: str) -> str:
    """Return ``control_mode`` or raise :class:`InvalidInputError` naming the valid ones."""
    if control_mode not in CONTROL_MODES:
        raise InvalidInputError(f"control_mode must be one of {list(CONTROL_MODES)}, got {control_mode!r}")
    return control_mode


def action_bounds(control_mode: str) -> tuple[np.ndarray, np.ndarray]:
    """(7,) low and high of one action in ``control_mode``."""
    if control_mode == "delta":
        return -np.ones(7, dtype=np.float32), np.ones(7, dtype=np.float32)
    high = np.array([POSITION_LIMIT] * 3 + [np.pi] * 3 + [1.0], dtype=np.float32)
    return -high, high


def action_space(chunk_size: int | None, control_mode: str) -> spaces.Box:
    """``Box`` of one action (7,) or of a chunk (Ta, 7) in ``control_mode``."""
    if control_mode == "delta":
        return spaces_module.action_space(chunk_size)
    low, high = action_bounds(control_mode)
    if chunk_size is not None:
        low, high = np.tile(low, (chunk_size, 1)), np.tile(high, (chunk_size, 1))
    return spaces.Box(low, high, dtype=np.float32)


def set_control_mode(robosuite_env: Any, control_mode: str) -> None:
    """Make the OSC controllers of a built robosuite env take ``control_mode`` actions, from now on and
    after every later reset or rebuild."""
    delta = control_mode == "delta"
    if delta:
        return  # LIBERO's controller config already says control_delta=True
    for config in getattr(robosuite_env, "robot_configs", []):
        config["controller_config"]["control_delta"] = delta
    for robot in robosuite_env.robots:
        robot.controller_config["control_delta"] = delta
        robot.controller.use_delta = delta


def hold_action(robosuite_env: Any) -> np.ndarray:
    """The absolute action that holds the gripper's current pose, gripper open: (7,) float64.

    The orientation is the canonical axis-angle vector (angle in [0, pi]).
    """
    controller = robosuite_env.robots[0].controller
    sim = robosuite_env.sim
    site = sim.model.site_name2id(controller.eef_name)
    position = np.array(sim.data.site_xpos[site], dtype=np.float64)
    return np.concatenate([position, rotation_to_axis_angle(sim.data.site_xmat[site].reshape(3, 3)), [-1.0]])


def rotation_to_axis_angle(matrix: np.ndarray) -> np.ndarray:
    """(3,) axis-angle vector of a (3, 3) rotation matrix, angle in [0, pi] (robosuite's quaternion route)."""
    from robosuite.utils import transform_utils as T

    quat = T.mat2quat(np.asarray(matrix, dtype=np.float64))  # xyzw
    if quat[3] < 0:
        quat = -quat  # same rotation, angle <= pi
    return np.asarray(T.quat2axisangle(quat), dtype=np.float64)
