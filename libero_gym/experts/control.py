"""Pose servoing for the scripted expert: the controller and the basic motions.

Every primitive (here, in :mod:`libero_gym.experts.pick_place` and in
:mod:`libero_gym.experts.articulation`) is a generator that yields 7-D OSC actions
(translation delta, axis-angle rotation delta, gripper) in [-1, 1] and returns a
bool (``yield from`` gives it): whether it reached what it aimed for. They read
privileged state through :class:`~libero_gym.experts.scene.Scene` but act only
through actions.

Action scaling (robosuite 1.4 ``OSC_POSE`` as LIBERO configures it): 1.0 on a
translation axis asks for 0.05 m this step, 1.0 on a rotation axis for 0.5 rad
(world frame: the goal orientation is ``R(delta) @ R_current``).

Shapes: positions (3,), rotation matrices (3, 3), actions (7,).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from libero_gym.experts.scene import Scene

Action = np.ndarray
Primitive = Generator[Action, None, bool]

POS_SCALE = 0.05
"""Metres of commanded translation per unit action (robosuite OSC_POSE output_max)."""
ROT_SCALE = 0.5
"""Radians of commanded rotation per unit action (robosuite OSC_POSE output_max)."""
OPEN, CLOSE, HOLD = -1.0, 1.0, 0.0
"""Gripper commands (libero_gym action convention). robosuite's Panda gripper
integrates the sign of the command, so 0 holds the fingers where they are."""
HALF_CLOSE_STEPS = 4
"""Steps of CLOSE that take fully open fingers to about half width (robosuite moves
the finger target by 0.25 of its range per step: 4 steps from -1 reach 0)."""

GRIPPER_STEPS = 10
"""Steps to let the Panda fingers travel fully: robosuite moves the finger target
by 0.01 per physics substep, 25 substeps per step, so ~8 steps end to end, plus margin."""


@dataclass(frozen=True)
class Gains:
    """Proportional servo gains and limits (unitless, in action units)."""

    kp_pos: float = 1.2
    """Commanded translation per step as a multiple of the remaining error; OSC only
    covers part of each commanded delta in one step, so a little above 1 converges
    in a few steps without overshoot (checked on LIBERO tasks)."""
    kp_rot: float = 1.0
    """Same for rotation."""
    max_pos: float = 1.0
    """Largest translation action (infinity norm): 0.05 m/step, 1 m/s at 20 Hz."""
    max_rot: float = 0.6
    """Largest rotation action (infinity norm): 0.3 rad/step, keeps wrist turns smooth."""
    max_delta: float = 0.3
    """Largest change of any motion action component between two steps while it
    grows (a jerk limit, so that demonstrations start and turn smoothly)."""
    ki_pos: float = 0.15
    """Integral gain on the translation error (per step): OSC's impedance leaves a
    steady-state error of ~1 cm when carrying an object; this removes it."""
    i_limit: float = 0.4
    """Largest integral contribution (action units), against wind-up."""


def mat_to_axis_angle(mat: np.ndarray) -> np.ndarray:
    """(3,) axis-angle vector of a rotation matrix (angle in [0, pi])."""
    cos = np.clip((np.trace(mat) - 1.0) / 2.0, -1.0, 1.0)
    angle = float(np.arccos(cos))
    if angle < 1e-6:
        return np.zeros(3)
    skew = np.array([mat[2, 1] - mat[1, 2], mat[0, 2] - mat[2, 0], mat[1, 0] - mat[0, 1]])
    if np.pi - angle < 1e-3:
        # Near pi the skew part vanishes: the axis is the column of (R + I) with the
        # largest norm, its sign taken from what is left of the skew part.
        m = mat + np.eye(3)
        col = m[:, int(np.argmax(np.linalg.norm(m, axis=0)))]
        axis = col / np.linalg.norm(col)
        return angle * (axis if axis @ skew >= 0 else -axis)
    return angle * skew / (2.0 * np.sin(angle))


def rot_z(angle: float) -> np.ndarray:
    """(3, 3) rotation about the world z axis."""
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


TOP_DOWN = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, -1.0]])
"""Grip-site orientation of LIBERO's home pose, tilt removed: pointing down, fingers
closing along world y (column 0 is the closing axis, column 2 the approach axis)."""


def top_down(yaw: float) -> np.ndarray:
    """Pointing-down orientation turned by ``yaw`` about world z."""
    return rot_z(yaw) @ TOP_DOWN


YAW_TIE_MARGIN = np.deg2rad(15.0)
"""Two grasp yaws whose turns from the current wrist yaw differ by less than this are a tie, broken by a
fixed rule instead of by which is nearer: a closing axis square to home puts both yaws at +-pi/2, and
sub-degree noise in the object's pose would otherwise pick the turn direction at random (a demo set split
about half and half, from states that look the same, which behaviour cloning averages to no turn)."""


def yaw_for_closing_axis(direction: np.ndarray, current: np.ndarray, *, symmetric: bool = False) -> float:
    """Yaw of :func:`top_down` whose fingers close along horizontal ``direction``.

    The closing axis has no sign, so two yaws close along it (four when ``symmetric``: the object
    is as wide along the perpendicular axis, which closes as well). Of those within pi/2 of home
    (the last wrist joint keeps its range), the one nearest the current wrist yaw; a tie
    (:data:`YAW_TIE_MARGIN`) goes to the larger (counter-clockwise) yaw, so that the choice is
    a function of the scene that sub-degree noise does not flip. Wrapped to (-pi, pi].
    """
    base = float(np.arctan2(-direction[0], direction[1]))
    cur = float(np.arctan2(-current[0, 0], current[1, 0]))
    turns = (0.0, np.pi / 2, np.pi, 3 * np.pi / 2) if symmetric else (0.0, np.pi)
    options = [_wrap(base + turn) for turn in turns]
    # The range edge has the same tie: a yaw just past pi/2 is kept (the wrist turns to +-2.9 rad).
    in_range = [y for y in options if abs(y) <= np.pi / 2 + YAW_TIE_MARGIN] or options
    nearest = min(abs(_wrap(y - cur)) for y in in_range)
    tied = [y for y in in_range if abs(_wrap(y - cur)) < nearest + YAW_TIE_MARGIN]
    return max(tied)


def _wrap(angle: float) -> float:
    return float((angle + np.pi) % (2 * np.pi) - np.pi)


def pointing(approach: np.ndarray, closing: np.ndarray) -> np.ndarray:
    """Orientation whose approach axis (column 2) is ``approach`` and closing axis
    (column 0) is ``closing`` made orthogonal to it."""
    z = approach / np.linalg.norm(approach)
    x = closing - np.dot(closing, z) * z
    x /= np.linalg.norm(x)
    y = np.cross(z, x)
    return np.stack([x, y, z], axis=1)


def nearest(current: np.ndarray, candidates: list[np.ndarray]) -> np.ndarray:
    """The candidate orientation reached from ``current`` by the smallest rotation."""
    return min(candidates, key=lambda r: float(np.linalg.norm(mat_to_axis_angle(r @ current.T))))


class Controller:
    """Turns pose targets into saturated, jerk-limited OSC actions.

    Args:
        scene: privileged view of the scene.
        gains: servo gains.
    """

    def __init__(self, scene: Scene, gains: Gains = Gains()) -> None:
        self.scene = scene
        self.gains = gains
        self.prev = np.zeros(6)
        self.grip = OPEN
        self.held: str | None = None
        """Name of the object the gripper holds (set by grasp, cleared by release)."""
        self._integral = np.zeros(3)
        self._last_target = np.zeros(3)

    def servo(self, pos: np.ndarray, rot: np.ndarray | None, grip: float | None = None, speed: float = 1.0) -> Action:
        """One action towards a grip-site pose.

        Args:
            pos: (3,) target grip-site position (m).
            rot: (3, 3) target orientation, or None to keep the current one.
            grip: gripper command, or None to keep the last one.
            speed: cap on translation actions (fraction of ``gains.max_pos``).
        """
        g = self.gains
        s = self.scene
        if grip is not None:
            self.grip = grip
        pos = np.asarray(pos, dtype=np.float64)
        err = (pos - s.eef_pos) / POS_SCALE
        if np.linalg.norm(pos - self._last_target) > 0.01 or np.max(np.abs(err)) > 0.5:
            self._integral = np.zeros(3)  # new target or still far: no integral action
        else:
            self._integral = np.clip(self._integral + g.ki_pos * err, -g.i_limit, g.i_limit)
        self._last_target = pos
        dp = _cap(err * g.kp_pos + self._integral, g.max_pos * speed)
        if rot is None:
            dr = np.zeros(3)
        else:
            dr = mat_to_axis_angle(rot @ s.eef_mat.T) * g.kp_rot / ROT_SCALE
            dr = _cap(dr, g.max_rot)
        motion = np.concatenate([dp, dr])
        # Jerk limit on growth only: shrinking towards zero is always allowed, so the
        # limit never causes overshoot.
        limited = self.prev + np.clip(motion - self.prev, -g.max_delta, g.max_delta)
        shrinking = (np.sign(motion) == np.sign(self.prev)) & (np.abs(motion) <= np.abs(self.prev))
        motion = np.where(shrinking, motion, limited)
        self.prev = motion
        action = np.concatenate([motion, [self.grip]])
        return np.clip(np.nan_to_num(action, nan=0.0, posinf=1.0, neginf=-1.0), -1.0, 1.0)


def _cap(vec: np.ndarray, limit: float) -> np.ndarray:
    """Scale ``vec`` so its largest component is at most ``limit`` (keeps direction)."""
    peak = float(np.max(np.abs(vec))) if vec.size else 0.0
    return vec * (limit / peak) if peak > limit else vec


# ---------------------------------------------------------------------- basic motions
def move_to(
    ctl: Controller,
    pos: np.ndarray,
    rot: np.ndarray | None = None,
    grip: float | None = None,
    tol: float = 0.006,
    rot_tol: float = 0.08,
    max_steps: int = 60,
    speed: float = 1.0,
) -> Primitive:
    """Servo the grip site to a pose; returns whether it got within tolerance."""
    s = ctl.scene
    for _ in range(max_steps):
        close_pos = np.linalg.norm(s.eef_pos - pos) < tol
        close_rot = rot is None or np.linalg.norm(mat_to_axis_angle(rot @ s.eef_mat.T)) < rot_tol
        if close_pos and close_rot:
            return True
        yield ctl.servo(pos, rot, grip, speed)
    return False


def move_above(
    ctl: Controller, pos: np.ndarray, rot: np.ndarray, clearance_z: float, grip: float | None = None
) -> Primitive:
    """Reach ``pos`` from above: rise to ``clearance_z`` if far, travel, then descend."""
    s = ctl.scene
    above = np.array([pos[0], pos[1], max(pos[2], clearance_z)])
    if np.linalg.norm(s.eef_pos[:2] - pos[:2]) > 0.03 and s.eef_pos[2] < clearance_z - 0.02:
        lift = np.array([s.eef_pos[0], s.eef_pos[1], clearance_z])
        yield from move_to(ctl, lift, None, grip, tol=0.02, max_steps=30)
    yield from move_to(ctl, above, rot, grip, tol=0.01, max_steps=70)
    return (yield from move_to(ctl, pos, rot, grip, tol=0.006, max_steps=50, speed=0.7))


def actuate_gripper(ctl: Controller, grip: float, steps: int = GRIPPER_STEPS) -> Primitive:
    """Hold the current pose while the fingers open or close."""
    s = ctl.scene
    hold, rot = s.eef_pos, s.eef_mat
    for _ in range(steps):
        yield ctl.servo(hold, rot, grip)
    return True


def wait(ctl: Controller, steps: int) -> Primitive:
    """Hold the current pose (e.g. after the goal holds)."""
    s = ctl.scene
    hold = s.eef_pos
    for _ in range(steps):
        yield ctl.servo(hold, None)
    return True


def axis_rotation(axis: np.ndarray, theta: float) -> np.ndarray:
    """(3, 3) rotation by ``theta`` about unit ``axis``."""
    return np.stack([rotate(e, axis, theta) for e in np.eye(3)], axis=1)


def rotate(vec: np.ndarray, axis: np.ndarray, theta: float) -> np.ndarray:
    """Rodrigues rotation of ``vec`` about unit ``axis`` by ``theta``."""
    axis = axis / np.linalg.norm(axis)
    return vec * np.cos(theta) + np.cross(axis, vec) * np.sin(theta) + axis * np.dot(axis, vec) * (1 - np.cos(theta))
