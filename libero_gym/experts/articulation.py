"""Articulation primitives: open and close drawers and doors, turn stove knobs.

The joint goal comes from the fixture's own LIBERO test (:func:`target_qpos`), so
"open" means what LIBERO's ``is_open`` means. Generators of OSC actions built on
:mod:`libero_gym.experts.control`.
"""

from __future__ import annotations

import numpy as np

from libero_gym.experts.control import (
    CLOSE,
    GRIPPER_STEPS,
    OPEN,
    Controller,
    Primitive,
    actuate_gripper,
    axis_rotation,
    move_above,
    move_to,
    nearest,
    pointing,
    top_down,
    yaw_for_closing_axis,
)
from libero_gym.experts.scene import JointInfo, Scene


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


STALL_STEPS = 8
"""A push or pull during which neither the drawer nor the hand moved over this many steps has
met a stop (the drawer's end before ``q_goal``, or an obstacle) and ends there. Pushing on until
the step cap changes nothing in the state: the demonstration would hold a state in which the
expert both pushes and (at the cap) moves on."""
STALL_JOINT = 0.001
"""Joint motion (m or rad) over ``STALL_STEPS`` below which the joint counts as still."""
STALL_HAND = 0.002
"""Hand motion (m) over ``STALL_STEPS`` below which the hand counts as still."""


class _Stall:
    """Tells, step by step, whether a drawer and the hand driving it have both stopped moving."""

    def __init__(self, scene: Scene, joint: JointInfo) -> None:
        self.scene, self.joint = scene, joint
        self.history: list[tuple[float, np.ndarray]] = []

    def __call__(self) -> bool:
        """Record this step's joint and hand positions; True once neither moved over ``STALL_STEPS`` steps."""
        self.history.append((self.scene.qpos(self.joint), self.scene.eef_pos.copy()))
        if len(self.history) <= STALL_STEPS:
            return False
        (q0, hand0), (q1, hand1) = self.history[-1 - STALL_STEPS], self.history[-1]
        return abs(q1 - q0) < STALL_JOINT and float(np.linalg.norm(hand1 - hand0)) < STALL_HAND


LOW_HANDLE = 0.09
"""Handles lower than this above the floor in front of them (m) are dragged open by
friction (:func:`_drag_handle`) instead of grasped."""


def _pull_handle(
    ctl: Controller, joint: JointInfo, handle: np.ndarray, outward: np.ndarray, travel: float, q_goal: float
) -> Primitive:
    """Grasp a drawer handle from the front (fingers vertical) and pull it out."""
    s = ctl.scene
    q_start = s.qpos(joint)
    # Fingers close vertically around the horizontal bar. The Panda hand is ~0.2 m
    # long along the closing axis: for handles near the table it would hit the
    # table or the drawer above, so those are dragged instead.
    height = handle[2] - s.support_height(handle[:2] + outward[:2] * 0.12, 0.02, set(s.subtree(joint.body)))
    if height < LOW_HANDLE:
        return (yield from _drag_handle(ctl, joint, outward, q_goal))
    approach = -outward
    up = np.array([0.0, 0.0, 1.0])
    rot = nearest(s.eef_mat, [pointing(approach, up * z) for z in (1.0, -1.0)])
    pre = handle - approach * 0.10
    yield from actuate_gripper(ctl, OPEN, steps=GRIPPER_STEPS if s.finger_opening < 0.06 else 0)
    grip = OPEN
    yield from move_to(ctl, pre + np.array([0, 0, 0.05]), rot, grip, tol=0.02, max_steps=70)
    yield from move_to(ctl, pre, rot, grip, tol=0.008, max_steps=40)
    yield from move_to(ctl, handle - approach * 0.005, rot, grip, tol=0.006, max_steps=40, speed=0.4)
    yield from actuate_gripper(ctl, CLOSE)
    start = s.eef_pos
    end = start + outward * travel
    stalled = _Stall(s, joint)
    for _ in range(80):
        if _reached(s, joint, q_goal, q_start) or stalled():
            break
        yield ctl.servo(end, rot, CLOSE, speed=0.35)
    yield from actuate_gripper(ctl, OPEN)
    yield from move_to(ctl, s.eef_pos + outward * 0.06, rot, OPEN, tol=0.015, max_steps=20)
    yield from move_to(ctl, s.eef_pos + np.array([0, 0, 0.08]), top_down(0.0), OPEN, tol=0.02, max_steps=30)
    return _reached(s, joint, q_goal, q_start)


DRAG_PRESS = 0.03
"""How far (m) below the handle's top the flat fingers are commanded while dragging
it: the OSC impedance turns this into the normal force that friction pulls with."""
DRAG_LEAD = 0.008
"""How far (m) ahead of the hand, along the pull, the drag target is set each step."""
DRAG_STEPS = 170
"""Most steps spent dragging a drawer open."""
DRAG_PITCH = 0.2
"""Downward pitch (rad) of the fingers while dragging a low drawer handle."""
FINGER_HALF_THICKNESS = 0.011
"""Half thickness (m) of a Panda finger across the closing axis."""


def _drag_handle(ctl: Controller, joint: JointInfo, outward: np.ndarray, q_goal: float) -> Primitive:
    """Open a drawer whose handle is too low to grasp by pressing the flat fingers on
    the handle bar's top and dragging it out by friction.

    The Panda hand is 0.2 m long along its closing axis: held vertically around a bar
    a few centimetres above the table it hits the table or the drawer above. Held
    nearly flat (closing axis horizontal along the bar, fingers pointing into the
    cabinet, pitched down by ``DRAG_PITCH``) it is only ~6 cm tall and fits between
    the table and the handle above. Friction is enough against the drawer slide's
    damping (50 N s/m in LIBERO): a bottom drawer opens in ~40 steps.
    """
    s = ctl.scene
    q_start = s.qpos(joint)
    bar = drawer_handle(s, joint, outward)
    geoms = s.collision_geoms([joint.body])
    pts = np.array([s.data.geom_xpos[g] for g in geoms])
    g = geoms[int(np.argmax(pts @ outward))]
    corners = s._geom_corners(g)
    top = float(corners[:, 2].max())
    front = float((corners @ outward).max())
    back = float((corners @ outward).min())
    up = np.array([0.0, 0.0, 1.0])
    side = np.cross(outward, up)
    # Fingers pitched down: their tips rest on the bar, the hand behind them rises
    # over whatever stands on the table in front of the drawer.
    approach = -outward * np.cos(DRAG_PITCH) - up * np.sin(DRAG_PITCH)
    rot = nearest(s.eef_mat, [pointing(approach, side * sg) for sg in (1.0, -1.0)])
    # Fingertips (1.2 cm past the grip site) over the back half of the bar.
    depth = 0.5 * (front + back) - 0.004
    contact = bar + outward * (depth - float(bar @ outward)) - approach * 0.012
    contact[2] = top + FINGER_HALF_THICKNESS / np.cos(DRAG_PITCH) + 0.012 * np.sin(DRAG_PITCH) + 0.004
    pre = contact - approach * 0.10
    yield from actuate_gripper(ctl, CLOSE, steps=GRIPPER_STEPS if s.finger_opening > 0.02 else 0)
    yield from move_to(ctl, pre + np.array([0, 0, 0.03]), rot, CLOSE, tol=0.02, max_steps=70)
    yield from move_to(ctl, pre, rot, CLOSE, tol=0.008, max_steps=40)
    yield from move_to(ctl, contact, rot, CLOSE, tol=0.006, max_steps=40, speed=0.4)
    press = contact - np.array([0.0, 0.0, DRAG_PRESS])
    for _ in range(10):
        yield ctl.servo(press, rot, CLOSE, speed=0.3)
    stalled = _Stall(s, joint)
    for _ in range(DRAG_STEPS):
        if _reached(s, joint, q_goal, q_start) or stalled():
            break
        # A target just ahead of the hand keeps the downward press from being
        # scaled away by the speed cap on the (long) pull.
        ahead = float((s.eef_pos - press) @ outward) + DRAG_LEAD
        yield ctl.servo(press + outward * ahead, rot, CLOSE)
    yield from move_to(ctl, s.eef_pos + np.array([0, 0, 0.06]), rot, CLOSE, tol=0.015, max_steps=20)
    yield from move_to(ctl, s.eef_pos + outward * 0.06, top_down(0.0), OPEN, tol=0.02, max_steps=30)
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
    stalled = _Stall(s, joint)
    for _ in range(80):
        if _reached(s, joint, q_goal, q_start) or stalled():
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
        want = axis_rotation(axis, sign * total * i / n) @ rot
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
        turn = axis_rotation(axis, sign * total * i / n)
        want = anchor + turn @ (handle - anchor)
        for _ in range(2):
            yield ctl.servo(want, turn @ rot, CLOSE, speed=0.5)
    yield from actuate_gripper(ctl, OPEN)
    yield from move_to(ctl, s.eef_pos + np.array([0, 0, 0.08]), None, OPEN, tol=0.02, max_steps=25)
    return _reached(s, joint, q_goal, q0)
