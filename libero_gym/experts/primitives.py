"""Motion primitives for the scripted expert, composed as generators of actions.

Each primitive is a generator that yields 7-D OSC actions (translation delta,
axis-angle rotation delta, gripper) in [-1, 1] and returns a bool (``yield from``
gives it): whether it reached what it aimed for. They read privileged state through
:class:`~libero_gym.experts.scene.Scene` but act only through actions.

Action scaling (robosuite 1.4 ``OSC_POSE`` as LIBERO configures it): 1.0 on a
translation axis asks for 0.05 m this step, 1.0 on a rotation axis for 0.5 rad
(world frame: the goal orientation is ``R(delta) @ R_current``).

Shapes: positions (3,), rotation matrices (3, 3), actions (7,).
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from libero_gym.experts.scene import JointInfo, Scene

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


def yaw_for_closing_axis(direction: np.ndarray, current: np.ndarray) -> float:
    """Yaw of :func:`top_down` whose fingers close along horizontal ``direction``.

    Of the two yaws (the closing axis has no sign), picks the one nearer the
    current wrist yaw, wrapped to (-pi, pi].
    """
    base = float(np.arctan2(-direction[0], direction[1]))
    cur = float(np.arctan2(-current[0, 0], current[1, 0]))
    # The two yaws that close along the axis, both wrapped to (-pi, pi]; of these,
    # the one within pi/2 of home (the last wrist joint keeps its range), and if both
    # are (the axis is square to home), the one nearer the current yaw.
    options = [_wrap(base), _wrap(base + np.pi)]
    in_range = [y for y in options if abs(y) <= np.pi / 2 + 1e-6] or options
    return min(in_range, key=lambda y: abs(_wrap(y - cur)))


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


# ---------------------------------------------------------------------- grasping
RIM_OBJECTS = ("bowl", "plate", "mug", "cup", "pan", "basket", "tray")
"""Name fragments of open containers: grasped at the rim, fingers across the wall."""

FINGER_SPAN = 0.075
"""Widest object (m) the open Panda fingers can straddle (0.08 m travel, minus margin)."""
RIM_DEPTH = 0.012
"""How far below the rim top the finger pads close (m): deep enough to hold the wall,
shallow enough for the fingertips to stay above the container's floor."""
TOP_DEPTH = 0.03
"""How far below an object's top the pads close for a top grasp (m)."""
TABLE_CLEARANCE = 0.012
"""Lowest the pads go above the support surface (m): fingertips reach ~1 cm below the pads."""
DROP_DISTANCE = 0.06
"""Shift (m) of a carried object relative to the hand that means it was dropped."""
CARRY_CLEARANCE = 0.04
"""Margin (m) between a carried object's bottom and the highest surface under its path."""
LIFT = 0.14
"""Height (m) above its support to which a grasped object is lifted before carrying."""


@dataclass(frozen=True)
class GraspPlan:
    """Where and how to close the fingers on an object.

    Attributes:
        pos: (3,) grip-site position at closing.
        yaw: wrist yaw for :func:`top_down`.
        width: object width across the fingers (m).
    """

    pos: np.ndarray
    yaw: float
    width: float


def plan_grasp(scene: Scene, name: str) -> GraspPlan:
    """Choose a top-down grasp from the object's geometry.

    Open containers (bowls, mugs, plates, pans) and anything wider than the fingers
    are taken at the rim, fingers radial, on the side with most clearance from other
    objects and nearest the robot. Other objects are taken from the top at their
    centre, fingers across their narrower horizontal axis.
    """
    center, half = scene.local_extent(name)
    mat = scene.body_mat(name)
    box = scene.bbox(name)
    top = box.hi[2]
    bottom = box.lo[2]
    # Horizontal object axes (drop the one most aligned with world z).
    vertical = int(np.argmax(np.abs(mat[2, :])))
    horiz = [i for i in range(3) if i != vertical]
    widths = {i: 2 * half[i] for i in horiz}
    narrow = min(horiz, key=lambda i: widths[i])
    is_rim = any(k in name for k in RIM_OBJECTS)
    if not is_rim and widths[narrow] > FINGER_SPAN:
        # Too wide overall: try its body alone (a moka pot without handle and spout).
        # Fingers still close along the overall narrower axis, so that they stay
        # clear of the handle and spout, which stick out along the other one.
        base = scene.base_geoms(name)
        center, half = scene.local_extent(name, base)
        widths = {i: 2 * half[i] for i in horiz}
        top = max(float(scene._geom_corners(g)[:, 2].max()) for g in base) if base else top
        is_rim = widths[narrow] > FINGER_SPAN
    current = scene.eef_mat
    if not is_rim:
        axis = mat[:, narrow].copy()
        axis[2] = 0.0
        axis /= np.linalg.norm(axis) + 1e-9
        height = top - bottom
        z = max(top - min(TOP_DEPTH, 0.5 * height), bottom + TABLE_CLEARANCE)
        pos = np.array([center[0], center[1], z])
        return GraspPlan(pos, yaw_for_closing_axis(axis, current), widths[narrow])
    # Rim: the wall sits at the smaller horizontal half extent (a handle only widens one).
    origin = scene.pos(name)
    radius = min(widths.values()) / 2 - 0.008
    others = [scene.pos(o)[:2] for o in scene.env.objects_dict if o != name]
    best, best_score = None, -np.inf
    for k in range(16):
        a = 2 * np.pi * k / 16
        d = np.array([np.cos(a), np.sin(a)])
        p = origin[:2] + radius * d
        clearance = min([np.linalg.norm(p - o) for o in others] + [0.2])
        # Prefer the near side (robot base at x ~ -0.6) and open space around the fingers.
        score = min(clearance, 0.12) - 0.3 * max(p[0] - origin[0], 0.0)
        if score > best_score:
            best, best_score = d, score
    assert best is not None
    p = origin[:2] + radius * best
    z = max(top - RIM_DEPTH, bottom + TABLE_CLEARANCE)
    axis = np.array([best[0], best[1], 0.0])
    return GraspPlan(np.array([p[0], p[1], z]), yaw_for_closing_axis(axis, current), 0.01)


def grasp(ctl: Controller, name: str) -> Primitive:
    """Approach above, descend, close and lift ``name``; returns whether it is held."""
    s = ctl.scene
    plan = plan_grasp(s, name)
    rot = top_down(plan.yaw)
    obj_z0 = s.pos(name)[2]
    clearance = plan.pos[2] + 0.10
    yield from move_to(ctl, s.eef_pos, None, OPEN, max_steps=0)
    if s.finger_opening < 0.06:
        yield from actuate_gripper(ctl, OPEN)
    yield from move_above(ctl, plan.pos, rot, clearance, OPEN)
    yield from actuate_gripper(ctl, CLOSE)
    ctl.held = name
    support = s.bbox(name).lo[2]
    lift = np.array([plan.pos[0], plan.pos[1], max(plan.pos[2], support) + LIFT])
    yield from move_to(ctl, lift, rot, CLOSE, tol=0.02, max_steps=40, speed=0.6)
    held = s.pos(name)[2] > obj_z0 + 0.04 and s.finger_opening > 0.002
    if not held:
        ctl.held = None
    return held


# ---------------------------------------------------------------------- placing
DRAWER_BACK_MARGIN = 0.035
"""How far inside the front edge of a drawer's region (m) objects are put."""


def place_target(scene: Scene, target: str, mode: str) -> np.ndarray:
    """(3,) point where the held object's origin should come to rest (z: support top)."""
    p = scene.pos(target)
    if scene.is_object(target):
        # On an object: LIBERO wants origins within 3 cm in xy; use the body origin.
        return p
    # A region site: its centre, LIBERO's boxes are centred there. A drawer's region
    # reaches back under the cabinet: aim at its front part, out in the open.
    joints = scene.joints_of(target)
    if mode == "in" and joints and joints[0].kind == "slide":
        outward = drawer_outward(scene, joints[0], scene.parent_object(target))
        size = np.asarray(scene.env.object_sites_dict[target].size, dtype=float)
        half = np.abs(scene.site_mat(target) @ size)
        reach = float(np.abs(outward) @ half)
        p = p + outward * max(reach - DRAWER_BACK_MARGIN, 0.0)
    return p


def place(
    ctl: Controller, name: str, target: str, mode: str, offset: np.ndarray | None = None
) -> Primitive:
    """Carry the held ``name`` over ``target``, lower it onto the support, release, retreat.

    Args:
        offset: (2,) world xy shift from the target's centre (several objects into
            one region each get their own spot).
    """
    s = ctl.scene
    goal = place_target(s, target, mode).copy()
    if offset is not None:
        goal[:2] += offset
    held_body = set(s.subtree(s.root_body(name)))
    obj_box = s.bbox(name)
    radius = float(min(obj_box.half[0], obj_box.half[1]))
    exclude = set(held_body)
    support = s.support_height(goal[:2], min(radius, 0.03), exclude)
    obj_bottom_offset = s.pos(name)[2] - obj_box.lo[2]  # origin height above its lowest point
    release_origin_z = support + obj_bottom_offset + 0.012
    # Carry high enough that the object's bottom clears everything on the way
    # (basket walls, cabinet tops), then descend over the target.
    path = [s.pos(name)[:2] + f * (goal[:2] - s.pos(name)[:2]) for f in np.linspace(0.2, 1.0, 6)]
    highest = max(s.support_height(p, radius, exclude) for p in path)
    carry_z = max(highest + obj_bottom_offset + CARRY_CLEARANCE, support + obj_bottom_offset + 0.08, s.pos(name)[2])
    rot = s.eef_mat
    z_hist: list[float] = []
    grip_offset = s.pos(name) - s.eef_pos
    # Keep the wrist as grasped; track the object, not the hand (it may have slipped).
    for phase, (z, tol, steps, speed) in enumerate(
        [(carry_z, 0.015, 80, 1.0), (carry_z, 0.008, 30, 0.5), (release_origin_z, 0.006, 50, 0.4)]
    ):
        for _ in range(steps):
            offset = s.pos(name) - s.eef_pos
            if np.linalg.norm(offset - grip_offset) > DROP_DISTANCE:
                # Lost it (knocked out of the fingers): give up this placement.
                yield from actuate_gripper(ctl, OPEN)
                ctl.held = None
                return False
            want = np.array([goal[0], goal[1], z]) - offset
            if phase == 0 and np.linalg.norm(s.pos(name)[:2] - goal[:2]) > 0.05:
                # Travel at carry height; do not descend before being over the target.
                want[2] = max(want[2], s.eef_pos[2])
            err = np.array([goal[0], goal[1], z]) - s.pos(name)
            if np.linalg.norm(err[:2]) < tol and abs(err[2]) < max(tol, 0.006):
                break
            if phase == 2 and _stalled(z_hist := z_hist + [s.pos(name)[2]]):
                break  # resting on something (a rim, a wall): let go here
            yield ctl.servo(want, rot, CLOSE, speed)
    yield from actuate_gripper(ctl, OPEN)
    ctl.held = None
    up = s.eef_pos + np.array([0.0, 0.0, 0.08])
    yield from move_to(ctl, up, None, OPEN, tol=0.02, max_steps=25, speed=0.6)
    return True


def _stalled(z_hist: list[float], window: int = 8) -> bool:
    """Whether a descending object stopped going down over the last ``window`` steps."""
    return len(z_hist) > window and z_hist[-window - 1] - z_hist[-1] < 0.002


# ---------------------------------------------------------------------- articulation
def target_qpos(scene: Scene, joint: JointInfo, predicate: str, obj: object) -> float:
    """A joint position, inside the joint range, that makes ``predicate`` hold.

    Asks the fixture's own LIBERO test (``is_open``, ``is_close``, ``turn_on``,
    ``turn_off``) over a grid of the joint range and returns the satisfying value
    nearest the middle of the satisfying interval nearest the current position.
    """
    test = {"open": "is_open", "close": "is_close", "turnon": "turn_on", "turnoff": "turn_off"}[predicate]
    fn = getattr(obj, test)
    grid = np.linspace(joint.lo, joint.hi, 401)
    ok = np.array([bool(fn(float(q))) for q in grid])
    if predicate in ("turnon", "turnoff"):
        # turn_on/turn_off flip a visual flag as a side effect; restore it from the state.
        fn(scene.qpos(joint))
    if not ok.any():
        return scene.qpos(joint)
    # Contiguous runs of satisfying values; aim inside the one nearest the current value.
    runs, start = [], None
    for i, flag in enumerate(ok):
        if flag and start is None:
            start = i
        if (not flag or i == len(ok) - 1) and start is not None:
            end = i if flag else i - 1
            runs.append((grid[start], grid[end]))
            start = None
    q = scene.qpos(joint)
    lo, hi = min(runs, key=lambda r: 0.0 if r[0] <= q <= r[1] else min(abs(q - r[0]), abs(q - r[1])))
    width = hi - lo
    # Deep inside the run, but no more than 0.3 rad / 3 cm past its near edge.
    margin = min(0.5 * width, 0.3 if joint.kind == "hinge" else 0.03)
    if abs(q - lo) <= abs(q - hi):
        return float(lo + margin) if not (lo <= q <= hi) else q
    return float(hi - margin) if not (lo <= q <= hi) else q


def drawer_handle(scene: Scene, joint: JointInfo, pull: np.ndarray) -> np.ndarray:
    """(3,) handle point of a drawer: its collision geom furthest along ``pull``."""
    geoms = scene.collision_geoms([joint.body])
    pts = np.array([scene.data.geom_xpos[g] for g in geoms])
    return pts[int(np.argmax(pts @ pull))].copy()


def slide(ctl: Controller, joint: JointInfo, q_goal: float, outward: np.ndarray) -> Primitive:
    """Open (pull by the handle) or close (push the front) a drawer to ``q_goal``.

    Args:
        outward: horizontal unit vector along which the drawer comes out of its
            cabinet (see :func:`drawer_outward`).
    """
    s = ctl.scene
    _, axis = s.joint_axis(joint)
    q = s.qpos(joint)
    moving = axis * np.sign(q_goal - q)  # world direction the drawer front moves
    handle = drawer_handle(s, joint, outward)
    travel = abs(q_goal - q) + 0.02
    if np.dot(moving, outward) > 0:
        return (yield from _pull_handle(ctl, joint, handle, outward, travel, q_goal))
    return (yield from _push_front(ctl, joint, handle, outward, travel, q_goal))


def drawer_outward(scene: Scene, joint: JointInfo, fixture: object) -> np.ndarray:
    """Horizontal unit vector from the cabinet out through the drawer front.

    The fixture's own ``is_open`` test tells which end of the joint range is open.
    """
    _, axis = scene.joint_axis(joint)
    a = axis.copy()
    a[2] = 0.0
    a /= np.linalg.norm(a) + 1e-9
    open_at_lo = bool(fixture.is_open(joint.lo))  # type: ignore[attr-defined]
    open_at_hi = bool(fixture.is_open(joint.hi))  # type: ignore[attr-defined]
    if open_at_lo and not open_at_hi:
        return -a
    return a


def _reached(s: Scene, joint: JointInfo, q_goal: float, q_start: float) -> bool:
    q = s.qpos(joint)
    return (q - q_goal) * np.sign(q_goal - q_start) >= 0


LOW_HANDLE = 0.09
"""Handles lower than this above the floor under the gripper (m) are approached pitched."""
HANDLE_PITCH = 0.7
"""Downward pitch (rad) of the approach to a low drawer handle."""


def _pull_handle(
    ctl: Controller, joint: JointInfo, handle: np.ndarray, outward: np.ndarray, travel: float, q_goal: float
) -> Primitive:
    """Grasp a drawer handle from the front (fingers vertical) and pull it out."""
    s = ctl.scene
    q_start = s.qpos(joint)
    # Fingers close vertically around the horizontal bar. The Panda hand is ~0.2 m
    # long along the closing axis, so for handles near the table the approach is
    # pitched down, which lifts the lower half of the hand off the table.
    height = handle[2] - s.support_height(handle[:2] + outward[:2] * 0.12, 0.02, set(s.subtree(joint.body)))
    pitch = HANDLE_PITCH if height < LOW_HANDLE else 0.0
    approach = -outward * np.cos(pitch) + np.array([0.0, 0.0, -np.sin(pitch)])
    up = np.array([0.0, 0.0, 1.0])
    rot = nearest(s.eef_mat, [pointing(approach, up * z) for z in (1.0, -1.0)])
    pre = handle - approach * 0.10
    yield from actuate_gripper(ctl, OPEN, steps=GRIPPER_STEPS if s.finger_opening < 0.06 else 0)
    grip = OPEN
    if pitch > 0:
        # Half-open fingers: pitched, the lower finger swings towards the drawer
        # front; at half width it stays in the gap between the bar and the front.
        yield from actuate_gripper(ctl, CLOSE, steps=HALF_CLOSE_STEPS)
        grip = HOLD
    yield from move_to(ctl, pre + np.array([0, 0, 0.05]), rot, grip, tol=0.02, max_steps=70)
    yield from move_to(ctl, pre, rot, grip, tol=0.008, max_steps=40)
    yield from move_to(ctl, handle - approach * 0.005, rot, grip, tol=0.006, max_steps=40, speed=0.4)
    yield from actuate_gripper(ctl, CLOSE)
    start = s.eef_pos
    end = start + outward * travel
    for _ in range(80):
        if _reached(s, joint, q_goal, q_start):
            break
        yield ctl.servo(end, rot, CLOSE, speed=0.35)
    yield from actuate_gripper(ctl, OPEN)
    yield from move_to(ctl, s.eef_pos + outward * 0.06, rot, OPEN, tol=0.015, max_steps=20)
    yield from move_to(ctl, s.eef_pos + np.array([0, 0, 0.08]), top_down(0.0), OPEN, tol=0.02, max_steps=30)
    return _reached(s, joint, q_goal, q_start)


PUSH_TILT = 0.6
"""Tilt (rad) of the fingers towards the cabinet while pushing a drawer in."""


def _push_front(
    ctl: Controller, joint: JointInfo, handle: np.ndarray, outward: np.ndarray, travel: float, q_goal: float
) -> Primitive:
    """Push a drawer in with the closed fingers against its handle."""
    s = ctl.scene
    q_start = s.qpos(joint)
    # Fingertips lead, tilted towards the cabinet, so that the hand above them stays
    # clear of the drawers and handles above the one being pushed.
    closing = np.cross(outward, [0.0, 0.0, 1.0])
    approach = np.array([0.0, 0.0, -np.cos(PUSH_TILT)]) - outward * np.sin(PUSH_TILT)
    rot = nearest(s.eef_mat, [pointing(approach, closing * sgn) for sgn in (1.0, -1.0)])
    start = handle + outward * 0.035
    yield from actuate_gripper(ctl, CLOSE, steps=GRIPPER_STEPS if s.finger_opening > 0.02 else 0)
    yield from move_above(ctl, start, rot, start[2] + 0.10, CLOSE)
    end = start - outward * (travel + 0.03)
    for _ in range(80):
        if _reached(s, joint, q_goal, q_start):
            break
        yield ctl.servo(end, rot, CLOSE, speed=0.4)
    yield from move_to(ctl, s.eef_pos + outward * 0.05, rot, CLOSE, tol=0.015, max_steps=20)
    yield from move_to(ctl, s.eef_pos + np.array([0, 0, 0.08]), rot, CLOSE, tol=0.02, max_steps=25)
    return _reached(s, joint, q_goal, q_start)


def knob_handle(scene: Scene, joint: JointInfo) -> tuple[np.ndarray, float, float]:
    """Where to push a knob: (radial unit vector, radius, height).

    A LIBERO stove knob is a disc with a bar across it; the bar is what sticks up.
    Pushing the bar's end sideways turns the knob. The bar is the set of the knob's
    collision geoms that rise above the rest; its farther end gives the direction.
    """
    anchor, axis = scene.joint_axis(joint)
    geoms = scene.collision_geoms(scene.subtree(joint.body))
    corners = [scene._geom_corners(g) for g in geoms]
    tops = np.array([c[:, 2].max() for c in corners])
    base_top = float(np.min(tops))
    handle = [c for c, t in zip(corners, tops) if t > base_top + 0.01] or corners
    pts = np.concatenate(handle)
    rel = pts - anchor
    radial = rel - np.outer(rel @ axis, axis)
    dist = np.linalg.norm(radial, axis=1)
    k = int(np.argmax(dist))
    ref = radial[k] / (dist[k] + 1e-9)
    radius = float(min(0.8 * dist[k], dist[k] - 0.008))
    height = base_top + 0.012
    return ref, radius, height


def push_hinge(
    ctl: Controller,
    joint: JointInfo,
    q_goal: float,
    ref: np.ndarray,
    radius: float,
    height: float,
    lead: float = 0.7,
) -> Primitive:
    """Turn a hinge (stove knob) to ``q_goal`` by pushing its part along the arc.

    The closed fingers come down at ``radius`` from the joint axis, ``lead`` rad
    behind the part (direction ``ref``) in the turning direction, at ``height``,
    then travel along the arc about the axis until the joint reaches ``q_goal``.
    """
    s = ctl.scene
    anchor, axis = s.joint_axis(joint)
    q0 = s.qpos(joint)
    sign = float(np.sign(q_goal - q0)) or 1.0
    total = abs(q_goal - q0) + 0.25

    def arc_point(theta: float) -> np.ndarray:
        p = anchor + _rotate(ref, axis, theta) * radius
        p[2] = height
        return p

    start = arc_point(-sign * lead)
    rot = top_down(yaw_for_closing_axis(ref, s.eef_mat))
    yield from actuate_gripper(ctl, CLOSE, steps=GRIPPER_STEPS if s.finger_opening > 0.02 else 0)
    yield from move_above(ctl, start, rot, height + 0.08, CLOSE)
    n = 30
    for i in range(1, n + 1):
        if _reached(s, joint, q_goal, q0):
            break
        want = arc_point(sign * (-lead + (total + lead) * i / n))
        for _ in range(2):
            yield ctl.servo(want, rot, CLOSE, speed=0.4)
    yield from move_to(ctl, s.eef_pos + np.array([0, 0, 0.08]), rot, CLOSE, tol=0.02, max_steps=25)
    return _reached(s, joint, q_goal, q0)


def twist_knob(ctl: Controller, joint: JointInfo, q_goal: float, bar: np.ndarray, height: float) -> Primitive:
    """Turn a knob to ``q_goal``: grasp its bar on the joint axis and turn the wrist.

    Args:
        bar: horizontal unit vector along the knob's bar (the fingers close across it).
        height: grip-site height for the grasp (between the knob's disc and the bar top).
    """
    s = ctl.scene
    anchor, axis = s.joint_axis(joint)
    q0 = s.qpos(joint)
    sign = float(np.sign(q_goal - q0)) or 1.0
    across = np.cross(axis, bar)
    rot = top_down(yaw_for_closing_axis(across, s.eef_mat))
    center = np.array([anchor[0], anchor[1], height])
    if s.finger_opening < 0.06:
        yield from actuate_gripper(ctl, OPEN)
    yield from move_above(ctl, center, rot, height + 0.10, OPEN)
    yield from actuate_gripper(ctl, CLOSE)
    total = abs(q_goal - q0) + 0.15
    n = 24
    for i in range(1, n + 1):
        if _reached(s, joint, q_goal, q0):
            break
        want = _axis_rotation(axis, sign * total * i / n) @ rot
        for _ in range(2):
            yield ctl.servo(center, want, CLOSE, speed=0.5)
    yield from actuate_gripper(ctl, OPEN)
    yield from move_to(ctl, s.eef_pos + np.array([0, 0, 0.08]), None, OPEN, tol=0.02, max_steps=25)
    return _reached(s, joint, q_goal, q0)


def door_handle(scene: Scene, joint: JointInfo) -> np.ndarray:
    """(3,) grasp point on a hinged door's handle.

    The handle is the door's collision geom furthest from the hinge axis; of the
    parts at that distance (bar and stand-offs), the tallest one (the bar).
    """
    anchor, axis = scene.joint_axis(joint)
    geoms = scene.collision_geoms(scene.subtree(joint.body))
    pts = np.array([scene.data.geom_xpos[g] for g in geoms])
    rel = pts - anchor
    radial = np.linalg.norm(rel - np.outer(rel @ axis, axis), axis=1)
    near = [i for i in range(len(geoms)) if radial[i] > radial.max() - 0.01]
    heights = [float(np.ptp([c[2] for c in scene._geom_corners(geoms[i])])) for i in near]
    return pts[near[int(np.argmax(heights))]].copy()


def swing_door(ctl: Controller, joint: JointInfo, q_goal: float) -> Primitive:
    """Open or close a hinged door (microwave) to ``q_goal``: grasp the handle from
    above, then carry it along the arc about the hinge, turning the wrist with it."""
    s = ctl.scene
    anchor, axis = s.joint_axis(joint)
    q0 = s.qpos(joint)
    sign = float(np.sign(q_goal - q0)) or 1.0
    handle = door_handle(s, joint)
    radial = handle - anchor
    radial -= (radial @ axis) * axis
    rot = top_down(yaw_for_closing_axis(radial / np.linalg.norm(radial), s.eef_mat))
    if s.finger_opening < 0.06:
        yield from actuate_gripper(ctl, OPEN)
    yield from move_above(ctl, handle, rot, handle[2] + 0.12, OPEN)
    yield from actuate_gripper(ctl, CLOSE)
    total = abs(q_goal - q0) + 0.1
    n = max(10, int(total / 0.06))
    for i in range(1, n + 1):
        if _reached(s, joint, q_goal, q0):
            break
        turn = _axis_rotation(axis, sign * total * i / n)
        want = anchor + turn @ (handle - anchor)
        for _ in range(2):
            yield ctl.servo(want, turn @ rot, CLOSE, speed=0.5)
    yield from actuate_gripper(ctl, OPEN)
    yield from move_to(ctl, s.eef_pos + np.array([0, 0, 0.08]), None, OPEN, tol=0.02, max_steps=25)
    return _reached(s, joint, q_goal, q0)


def _axis_rotation(axis: np.ndarray, theta: float) -> np.ndarray:
    """(3, 3) rotation by ``theta`` about unit ``axis``."""
    return np.stack([_rotate(e, axis, theta) for e in np.eye(3)], axis=1)


def _rotate(vec: np.ndarray, axis: np.ndarray, theta: float) -> np.ndarray:
    """Rodrigues rotation of ``vec`` about unit ``axis`` by ``theta``."""
    axis = axis / np.linalg.norm(axis)
    return (
        vec * np.cos(theta)
        + np.cross(axis, vec) * np.sin(theta)
        + axis * np.dot(axis, vec) * (1 - np.cos(theta))
    )
