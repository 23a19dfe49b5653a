"""Pick and place primitives: grasp an object from above, carry it, set it down.

Generators of OSC actions built on :mod:`libero_gym.experts.control`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from libero_gym.experts.articulation import drawer_outward
from libero_gym.experts.control import (
    CLOSE,
    OPEN,
    Controller,
    Primitive,
    actuate_gripper,
    axis_rotation,
    move_above,
    move_to,
    rot_z,
    top_down,
    yaw_for_closing_axis,
)
from libero_gym.experts.scene import Scene

RIM_OBJECTS = ("bowl", "plate", "mug", "cup", "pan", "basket", "tray")
"""Name fragments of open containers: grasped at the rim, fingers across the wall."""

FINGER_SPAN = 0.075
"""Widest object (m) the open Panda fingers can straddle (0.08 m travel, minus margin)."""
SYMMETRIC_RATIO = 1.15
"""An object whose horizontal widths are within this ratio (a bottle, a can, a square box) is
closed on along whichever horizontal axis needs the least wrist turn."""
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
        rim: whether the fingers close across a container's wall.
    """

    pos: np.ndarray
    yaw: float
    width: float
    rim: bool = False


def plan_grasp(scene: Scene, name: str, place_xy: np.ndarray | None = None) -> GraspPlan:
    """Choose a top-down grasp from the object's geometry.

    Open containers (bowls, mugs, plates, pans) and anything wider than the fingers
    are taken at the rim, fingers radial, on the side with most clearance from other
    objects and nearest the robot, where neither the fingers nor the hand hit
    anything, here or (given ``place_xy``, (2,) where the object's origin will be
    set down) at the placement. Other objects are taken from the top at their
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
        # As wide one way as the other (a bottle, a can): either horizontal axis closes on it.
        wide = max(widths.values())
        symmetric = wide <= min(SYMMETRIC_RATIO * widths[narrow], FINGER_SPAN)
        width = wide if symmetric else widths[narrow]
        return GraspPlan(pos, yaw_for_closing_axis(axis, current, symmetric=symmetric), width)
    # Rim: the wall sits at the smaller horizontal half extent (a handle only widens one).
    origin = scene.pos(name)
    radius = min(widths.values()) / 2 - 0.008
    # A handle (geoms that stay above the base, e.g. a pan's long handle) can be
    # higher than the rim: close the fingers below the rim of the body itself, and
    # keep them off the handle's side, where its root blocks them.
    handle_dir = _handle_direction(scene, name)
    base = scene.base_geoms(name)
    if handle_dir is not None and base:
        top = max(float(scene._geom_corners(g)[:, 2].max()) for g in base)
    depth = RIM_DEPTH if handle_dir is None else HANDLED_RIM_DEPTH
    z = max(top - depth, bottom + TABLE_CLEARANCE)
    others = [scene.pos(o)[:2] for o in scene.env.objects_dict if o != name]
    own = set(scene.subtree(scene.root_body(name)))
    if place_xy is not None:
        # Pad height when the object is set down at place_xy.
        z_place = scene.support_height(np.asarray(place_xy), 0.03, own) + (z - bottom) + RELEASE_HEIGHT
    best, best_score = None, -np.inf
    for k in range(16):
        a = 2 * np.pi * k / 16
        d = np.array([np.cos(a), np.sin(a)])
        p = origin[:2] + radius * d
        clearance = min([np.linalg.norm(p - o) for o in others] + [0.2])
        # Prefer the near side (robot base at x ~ -0.6) and open space around the
        # fingers; rule out sides where the outer finger or the hand would hit
        # something (a drawer wall, a box next to the bowl).
        score = min(clearance, 0.12) - 0.3 * max(p[0] - origin[0], 0.0)
        if handle_dir is not None and float(d @ handle_dir) > HANDLE_COS:
            score -= 1.0
        score -= RIM_BLOCKED_PENALTY * _rim_obstruction(scene, p, d, z, own)
        if place_xy is not None:
            # The wrist keeps its yaw while carrying: the same side, at the target.
            q = np.asarray(place_xy) + (p - origin[:2])
            score -= RIM_BLOCKED_PENALTY * _rim_obstruction(scene, q, d, z_place, own)
        if score > best_score:
            best, best_score = d, score
    assert best is not None
    p = origin[:2] + radius * best
    axis = np.array([best[0], best[1], 0.0])
    return GraspPlan(np.array([p[0], p[1], z]), yaw_for_closing_axis(axis, current), 0.01, rim=True)


HAND_HALF_SPAN = 0.1
"""Half length (m) of the Panda hand along the finger closing axis."""
APPROACH_CLEARANCE = 0.05
"""Height (m) of the grip site above the highest surface near a grasp's approach
path (fingertips reach ~1 cm below it)."""
RIM_BLOCKED_PENALTY = 10.0
"""Score lost per metre by which something rises into the fingers' or hand's path
at a rim grasp (dominates the clearance and near-side terms)."""
FINGER_ZONE = tuple((r, t) for r in (0.025, 0.04, 0.055, 0.07) for t in (-0.015, 0.0, 0.015))
"""(outwards, sideways) offsets (m) from a rim grasp point swept by the open outer
finger (inner face ~4 cm out, ~2 cm thick and wide), with ~1 cm margin for servo error."""
FINGER_DEPTH = 0.012
"""How far below the pads the fingertips reach (m)."""
HAND_ZONE = tuple(
    (r, t) for r in (-0.11, -0.075, -0.04, 0.0, 0.04, 0.075, 0.11) for t in (-0.04, -0.02, 0.0, 0.02, 0.04)
)
"""(outwards, sideways) offsets (m) covered by the Panda hand, ~0.2 m long along the
closing axis and ~7 cm across (plus margin), from ~4 cm above the pads upwards."""
HAND_HEIGHT = 0.04
"""Height (m) above the pads from which the hand body starts."""


def _rim_obstruction(scene: Scene, p: np.ndarray, d: np.ndarray, z: float, own: set[int]) -> float:
    """How far (m, summed) anything rises into the outer finger's or the hand's space
    at a rim grasp at ``p`` (xy) with fingers closing along ``d``, pads at height ``z``."""
    side = np.array([-d[1], d[0]])
    excess = 0.0
    for zone, ceiling in ((FINGER_ZONE, z - FINGER_DEPTH), (HAND_ZONE, z + HAND_HEIGHT)):
        for out, across in zone:
            h = scene.support_height(p + out * d + across * side, 0.0, own)
            excess += max(0.0, h - ceiling)
    return excess


REACH_EASY = 0.52
"""Horizontal shoulder-to-grip-site distance (m) up to which the hand points straight down."""
TILT_PER_METRE = 6.0
"""Tilt (rad) of the hand back towards the robot per metre of reach beyond ``REACH_EASY``."""
MAX_TILT = 0.45
"""Largest reach tilt (rad)."""


def reach_tilt(scene: Scene, pos: np.ndarray, rot: np.ndarray) -> np.ndarray:
    """``rot`` leaned back towards the robot for far targets.

    The wrist sits ~0.2 m above the grip site along the approach axis; near the edge
    of the Panda's reach, pointing straight down straightens the elbow into a
    singular pose where the OSC stalls. Leaning the hand back by a few tenths of a
    radian (about the horizontal axis square to the shoulder-to-target direction)
    brings the wrist up to ~9 cm closer.
    """
    radial = pos[:2] - scene.shoulder_pos[:2]
    dist = float(np.linalg.norm(radial))
    tilt = min(MAX_TILT, TILT_PER_METRE * max(0.0, dist - REACH_EASY))
    if tilt <= 0.0:
        return rot
    axis = np.array([-radial[1], radial[0], 0.0]) / dist
    return axis_rotation(axis, -tilt) @ rot  # approach axis leans away from the robot


HANDLED_RIM_DEPTH = 0.02
""":data:`RIM_DEPTH` for a container with a handle (a pan): its handle pulls it to
twist about the closing axis, which only a wider pad contact resists."""
HANDLE_MIN_REACH = 0.03
"""How far (m) geoms above an object's base must reach beyond the base's footprint
to count as a handle (a mug's or a pan's, not a lid or a knob)."""
HANDLE_COS = 0.5
"""Rim grasp directions within 60 degrees of a handle are avoided."""


def _handle_direction(scene: Scene, name: str) -> np.ndarray | None:
    """(2,) unit world xy direction from the object's origin to its handle, if any.

    The handle is made of the collision geoms that do not reach down to the
    object's base (:meth:`Scene.base_geoms`) and stick out past the base's footprint.
    """
    geoms = scene.collision_geoms(scene.subtree(scene.root_body(name)))
    base = set(scene.base_geoms(name))
    upper = [g for g in geoms if g not in base]
    if not base or not upper:
        return None
    origin = scene.pos(name)[:2]
    base_reach = max(float(np.linalg.norm(scene._geom_corners(g)[:, :2] - origin, axis=1).max()) for g in base)
    corners = np.concatenate([scene._geom_corners(g)[:, :2] for g in upper])
    dist = np.linalg.norm(corners - origin, axis=1)
    if dist.max() < base_reach + HANDLE_MIN_REACH:
        return None
    far = corners[dist > base_reach]
    d = far.mean(axis=0) - origin
    return d / (np.linalg.norm(d) + 1e-9)


def grasp(ctl: Controller, name: str, place_xy: np.ndarray | None = None) -> Primitive:
    """Approach above, descend, close and lift ``name``; returns whether it is held.

    Args:
        place_xy: (2,) where the object will be set down, if known (see :func:`plan_grasp`).
    """
    s = ctl.scene
    plan = plan_grasp(s, name, place_xy)
    rot = top_down(plan.yaw)
    if plan.rim:
        # Only rim grasps lean: a leaning top grasp pushes small objects over.
        rot = reach_tilt(s, plan.pos, rot)
    obj_z0 = s.pos(name)[2]
    # Come down from above whatever stands along the way and around the grasp
    # point within the hand's span (an open drawer next to a bowl).
    own = set(s.subtree(s.root_body(name)))
    start = s.eef_pos[:2]
    path = [start + f * (plan.pos[:2] - start) for f in np.linspace(0.4, 1.0, 4)]
    highest = max(s.support_height(p, HAND_HALF_SPAN, own) for p in path)
    clearance = max(plan.pos[2] + 0.10, highest + APPROACH_CLEARANCE)
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
CLIMB_MARGIN = 0.03
"""A carried object travels sideways only once within this height (m) of carry height."""
RELEASE_HEIGHT = 0.012
"""Height (m) of a placed object's bottom above its support when the fingers open."""
FAST_DESCENT = 0.05
"""Above this height (m) over the release point a carried object descends at full
speed; below it, slowly."""
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


def place(ctl: Controller, name: str, target: str, mode: str, offset: np.ndarray | None = None) -> Primitive:
    """Carry the held ``name`` over ``target``, lower it onto the support, release, retreat.

    Args:
        offset: (2,) world xy shift from the target's centre (several objects into
            one region each get their own spot).
    """
    s = ctl.scene
    goal = place_target(s, target, mode).copy()
    if offset is not None:
        goal[:2] += offset
    exclude = set(s.subtree(s.root_body(name)))  # the held object's bodies
    obj_box = s.bbox(name)
    radius = float(min(obj_box.half[0], obj_box.half[1]))
    probe = min(radius, 0.03)
    region_half = _region_half_xy(s, target) if mode == "in" else None
    if region_half is not None:
        # A narrow region (a caddy compartment): probe inside it, not on its walls.
        probe = min(probe, 0.5 * float(region_half.min()))
    support = s.support_height(goal[:2], probe, exclude)
    obj_bottom_offset = s.pos(name)[2] - obj_box.lo[2]  # origin height above its lowest point
    release_origin_z = support + obj_bottom_offset + RELEASE_HEIGHT
    # Carry high enough that the object's bottom clears everything on the way
    # (basket walls, cabinet tops), then descend over the target.
    path = [s.pos(name)[:2] + f * (goal[:2] - s.pos(name)[:2]) for f in np.linspace(0.2, 1.0, 6)]
    highest = max(s.support_height(p, radius, exclude) for p in path)
    if region_half is not None:
        # Into a compartment: its walls are thin, and the object (turning on the
        # way) sweeps more than its narrow side; sample the swept band densely.
        reach = float(max(obj_box.half[0], obj_box.half[1]))
        grid = np.arange(-reach, reach + 1e-9, SWEEP_SPACING)
        disc = [np.array([u, v]) for u in grid for v in grid if u * u + v * v <= reach * reach]
        steps = max(2, int(np.linalg.norm(goal[:2] - s.pos(name)[:2]) / SWEEP_SPACING))
        swept = [
            p + d
            for p in (s.pos(name)[:2] + f * (goal[:2] - s.pos(name)[:2]) for f in np.linspace(0.2, 1.0, steps))
            for d in disc
        ]
        highest = max(highest, s.highest_surface(swept, exclude))
    carry_z = max(highest + obj_bottom_offset + CARRY_CLEARANCE, support + obj_bottom_offset + 0.08, s.pos(name)[2])
    rot = s.eef_mat
    if region_half is not None:
        turn = _align_yaw(s, name, region_half, rot)
        rot = rot_z(turn) @ rot
        goal[:2] += _centring_shift(s, name, goal, support, region_half, turn, exclude)
    z_hist: list[float] = []
    xy_hist: list[np.ndarray] = []
    grip_offset = s.pos(name) - s.eef_pos
    rise_xy = s.eef_pos[:2].copy()
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
                if s.pos(name)[2] < z - CLIMB_MARGIN:
                    # Still climbing: go straight up first, so that the object does not
                    # clip the edge of what it is carried onto (a cabinet top).
                    want[:2] = rise_xy
            err = np.array([goal[0], goal[1], z]) - s.pos(name)
            xy_hist.append(s.pos(name)[:2])
            # Before lowering into a region, also wait for a swinging object to settle.
            settled = region_half is None or phase != 1 or _still(xy_hist)
            if np.linalg.norm(err[:2]) < tol and abs(err[2]) < max(tol, 0.006) and settled:
                break
            if phase == 2:
                z_hist.append(s.pos(name)[2])
                if _stalled(z_hist):
                    break  # resting on something (a rim, a wall): let go here
            fast = phase == 2 and s.pos(name)[2] - release_origin_z > FAST_DESCENT
            yield ctl.servo(want, rot, CLOSE, 1.0 if fast else speed)
    yield from actuate_gripper(ctl, OPEN)
    ctl.held = None
    up = s.eef_pos + np.array([0.0, 0.0, 0.08])
    yield from move_to(ctl, up, None, OPEN, tol=0.02, max_steps=25, speed=0.6)
    return True


WALL_PROBE_HEIGHT = 0.03
"""Height (m) above a region's floor at which its walls are probed by rays."""
WALL_PROBE_REACH = 0.12
"""Farthest (m) a wall may be from a region's centre to count as its wall."""
SWEEP_SPACING = 0.006
"""Spacing (m) of the rays that look for thin walls under a carried object's path."""
ELONGATED_RATIO = 1.5
"""Footprint aspect ratio (long / short side) from which an object put into a
region is turned so that its long side runs along the region's long side."""
MAX_ALIGN_YAW = np.pi / 2 + 0.3
"""Largest wrist yaw (rad, from home) that alignment may ask for (joint 7 range)."""


def _centring_shift(
    scene: Scene, name: str, goal: np.ndarray, support: float, region_half: np.ndarray, turn: float, exclude: set[int]
) -> np.ndarray:
    """(2,) xy shift of the place target that centres the object's body between the
    walls of a narrow region.

    The body, not the origin: a book's origin is off its centre (the origin, which
    LIBERO checks, stays well inside). Between the walls, not on the region site:
    the site need not be the compartment's middle; the walls are found by horizontal
    rays a little above the floor. ``turn`` is the yaw the object is turned by on the way.
    """
    body_off = rot_z(turn)[:2, :2] @ (scene.local_extent(name)[0] - scene.pos(name))[:2]
    probe_at = np.array([goal[0], goal[1], support + WALL_PROBE_HEIGHT])
    gap = np.zeros(2)
    for k in range(2):
        e = np.zeros(3)
        e[k] = 1.0
        plus = scene.free_span(probe_at, e, WALL_PROBE_REACH, exclude)
        minus = scene.free_span(probe_at, -e, WALL_PROBE_REACH, exclude)
        if plus < WALL_PROBE_REACH and minus < WALL_PROBE_REACH:
            gap[k] = 0.5 * (plus - minus)
    return np.clip(gap - body_off, -0.5 * region_half, 0.5 * region_half)


def _region_half_xy(scene: Scene, target: str) -> np.ndarray | None:
    """(2,) world x, y half extents of a region site (None for objects and fixtures)."""
    if not scene.is_site(target) or scene.is_object(target):
        return None
    size = np.asarray(scene.env.object_sites_dict[target].size, dtype=float)
    if size.shape != (3,):
        return None
    return np.abs(scene.site_mat(target) @ size)[:2]


def _align_yaw(scene: Scene, name: str, region_half: np.ndarray, rot: np.ndarray) -> float:
    """World yaw turn (rad) that lays an elongated object's long horizontal side
    along the region's longer side (for a squarish region, along the nearer of its
    sides; 0 for compact objects).

    The turn is the smallest one (a footprint has no front), flipped by pi when it
    would take the wrist beyond its range.
    """
    _, half = scene.local_extent(name)
    mat = scene.body_mat(name)
    vertical = int(np.argmax(np.abs(mat[2, :])))
    horiz = [i for i in range(3) if i != vertical]
    long_i, short_i = sorted(horiz, key=lambda i: -half[i])
    if half[long_i] < ELONGATED_RATIO * half[short_i]:
        return 0.0
    hx, hy = float(region_half[0]), float(region_half[1])
    axis = mat[:2, long_i]
    if max(hx, hy) < ELONGATED_RATIO * min(hx, hy):
        # A squarish region: square the object up with its nearer side (a slanted
        # object is longer along the region's axes than a square one).
        delta = float((-np.arctan2(axis[1], axis[0]) + np.pi / 4) % (np.pi / 2) - np.pi / 4)
    else:
        want = 0.0 if hx >= hy else np.pi / 2
        delta = float((want - np.arctan2(axis[1], axis[0]) + np.pi / 2) % np.pi - np.pi / 2)
    cur = float(np.arctan2(-rot[0, 0], rot[1, 0]))
    for d in (delta, delta - np.pi, delta + np.pi):
        yaw = (cur + d + np.pi) % (2 * np.pi) - np.pi
        if abs(yaw) <= MAX_ALIGN_YAW:
            return d
    return delta


SETTLE_MOTION = 0.002
"""Largest horizontal motion (m) of a held object over :data:`SETTLE_STEPS` steps
for it to count as no longer swinging."""
SETTLE_STEPS = 4
"""Steps over which :data:`SETTLE_MOTION` is measured."""


def _still(xy_hist: list[np.ndarray]) -> bool:
    """Whether the held object's xy moved less than :data:`SETTLE_MOTION` lately."""
    return (
        len(xy_hist) > SETTLE_STEPS and float(np.linalg.norm(xy_hist[-1] - xy_hist[-1 - SETTLE_STEPS])) < SETTLE_MOTION
    )


def _stalled(z_hist: list[float], window: int = 8) -> bool:
    """Whether a descending object stopped going down over the last ``window`` steps."""
    return len(z_hist) > window and z_hist[-window - 1] - z_hist[-1] < 0.002
