"""Privileged, read-only view of a LIBERO scene for the scripted expert.

Everything here reads MuJoCo state (body, site, geom and joint poses) through the
robosuite env that LIBERO builds; nothing writes it. The expert acts only through
the env's 7-D OSC action; this module is its eyes.

Frames: world frame of the MuJoCo model (z up, metres). The end effector is
robosuite's ``gripper0_grip_site``, the point between the finger pads, which is
the frame the OSC controller servoes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

GRIP_SITE = "gripper0_grip_site"
"""robosuite's site between the Panda finger pads; the OSC controller's end effector."""

FINGER_JOINTS = ("gripper0_finger_joint1", "gripper0_finger_joint2")
"""Panda finger slide joints; their difference is the finger opening (0 to 0.08 m)."""

ROBOT_PREFIXES = ("robot0_", "gripper0_", "mount0_")
"""Body-name prefixes of the robot, its gripper and its mount (robosuite naming)."""

SHOULDER_BODY = "robot0_link2"
"""Panda link whose origin is the shoulder (the arm's reach is measured from it)."""

RAY_START_Z = 1.6
"""Height (m) from which support-height rays are cast; above every LIBERO fixture."""


@dataclass(frozen=True)
class Box:
    """An axis-aligned box in the world frame.

    Attributes:
        lo: (3,) lower corner (m).
        hi: (3,) upper corner (m).
    """

    lo: np.ndarray
    hi: np.ndarray

    @property
    def center(self) -> np.ndarray:
        """(3,) centre of the box."""
        return 0.5 * (self.lo + self.hi)

    @property
    def half(self) -> np.ndarray:
        """(3,) half extents of the box."""
        return 0.5 * (self.hi - self.lo)


@dataclass(frozen=True)
class JointInfo:
    """An articulated fixture's joint, as the expert needs it.

    Attributes:
        name: MuJoCo joint name.
        jid: joint id.
        qpos_addr: index into ``qpos``.
        kind: ``"slide"`` or ``"hinge"``.
        lo: lower joint limit.
        hi: upper joint limit.
        body: id of the body the joint moves (drawer, door, knob).
    """

    name: str
    jid: int
    qpos_addr: int
    kind: str
    lo: float
    hi: float
    body: int


class Scene:
    """Reads poses and geometry from a LIBERO robosuite env.

    Args:
        env: the robosuite env (``LiberoEnv.libero_env.env``): has ``sim``,
            ``objects_dict``, ``fixtures_dict``, ``object_sites_dict``,
            ``obj_body_id``, ``parsed_problem`` and ``_eval_predicate``.
    """

    def __init__(self, env: Any) -> None:
        import mujoco

        self.env = env
        self.sim = env.sim
        self.model = env.sim.model
        self.data = env.sim.data
        self._mj = mujoco
        self._raw_model = self.model._model
        self._raw_data = self.data._data
        m = self.model
        self.grip_site = m.site_name2id(GRIP_SITE)
        self.finger_addr = [m.jnt_qposadr[m.joint_name2id(j)] for j in FINGER_JOINTS]
        # Subtree of every body: children come after parents in MuJoCo's body order.
        self._children: dict[int, list[int]] = {b: [] for b in range(m.nbody)}
        for b in range(1, m.nbody):
            self._children[int(m.body_parentid[b])].append(b)
        self.robot_bodies = {b for b in range(m.nbody) if (m.body_id2name(b) or "").startswith(ROBOT_PREFIXES)}
        self._shoulder = m.body_name2id(SHOULDER_BODY)

    # ------------------------------------------------------------------ robot
    @property
    def eef_pos(self) -> np.ndarray:
        """(3,) grip-site position (m)."""
        return self.data.site_xpos[self.grip_site].copy()

    @property
    def eef_mat(self) -> np.ndarray:
        """(3, 3) grip-site orientation; column 0 is the finger closing axis."""
        return self.data.site_xmat[self.grip_site].reshape(3, 3).copy()

    @property
    def shoulder_pos(self) -> np.ndarray:
        """(3,) position of the arm's shoulder (m)."""
        return self.data.body_xpos[self._shoulder].copy()

    @property
    def finger_opening(self) -> float:
        """Distance between the two finger joints (m): ~0.08 open, ~0 closed on nothing."""
        q = self.data.qpos
        return float(q[self.finger_addr[0]] - q[self.finger_addr[1]])

    # ------------------------------------------------------------------ names
    def is_object(self, name: str) -> bool:
        """Whether ``name`` is a movable object or fixture (not a region site)."""
        return name in self.env.objects_dict or name in self.env.fixtures_dict

    def is_site(self, name: str) -> bool:
        """Whether ``name`` is a region site."""
        return name in self.env.object_sites_dict

    def root_body(self, name: str) -> int:
        """Body id of an object or fixture."""
        return int(self.env.obj_body_id[name])

    def subtree(self, body: int) -> list[int]:
        """Ids of ``body`` and all bodies below it."""
        out, stack = [], [body]
        while stack:
            b = stack.pop()
            out.append(b)
            stack.extend(self._children[b])
        return out

    # ------------------------------------------------------------------ poses
    def pos(self, name: str) -> np.ndarray:
        """(3,) position LIBERO's predicates use: body origin of an object, site of a region."""
        if self.is_object(name):
            return self.data.body_xpos[self.root_body(name)].copy()
        return self.data.get_site_xpos(name).copy()

    def site_mat(self, name: str) -> np.ndarray:
        """(3, 3) orientation of a region site."""
        return self.data.get_site_xmat(name).reshape(3, 3).copy()

    def body_mat(self, name: str) -> np.ndarray:
        """(3, 3) orientation of an object's root body."""
        return self.data.body_xmat[self.root_body(name)].reshape(3, 3).copy()

    # ------------------------------------------------------------------ geometry
    def collision_geoms(self, bodies: list[int]) -> list[int]:
        """Geoms of ``bodies`` that collide (contype or conaffinity non-zero)."""
        m = self.model
        out = []
        for b in bodies:
            for g in range(m.body_geomadr[b], m.body_geomadr[b] + m.body_geomnum[b]):
                if m.geom_contype[g] or m.geom_conaffinity[g]:
                    out.append(g)
        return out

    def _geom_corners(self, g: int) -> np.ndarray:
        """(8, 3) world corners of geom ``g``'s local bounding box."""
        aabb = self.model.geom_aabb[g]
        center, half = aabb[:3], aabb[3:]
        signs = np.array([[sx, sy, sz] for sx in (-1, 1) for sy in (-1, 1) for sz in (-1, 1)])
        local = center + signs * half
        mat = self.data.geom_xmat[g].reshape(3, 3)
        return self.data.geom_xpos[g] + local @ mat.T

    def bbox(self, name: str, bodies: list[int] | None = None) -> Box:
        """World axis-aligned box around an object's collision geoms."""
        bodies = self.subtree(self.root_body(name)) if bodies is None else bodies
        geoms = self.collision_geoms(bodies)
        if not geoms:
            p = self.pos(name)
            return Box(p - 0.02, p + 0.02)
        corners = np.concatenate([self._geom_corners(g) for g in geoms])
        return Box(corners.min(axis=0), corners.max(axis=0))

    def base_geoms(self, name: str, tol: float = 0.01) -> list[int]:
        """Collision geoms of an object that reach down to its lowest point (its body,
        without handles and spouts that stick out higher up)."""
        geoms = self.collision_geoms(self.subtree(self.root_body(name)))
        bottoms = {g: float(self._geom_corners(g)[:, 2].min()) for g in geoms}
        low = min(bottoms.values(), default=0.0)
        return [g for g in geoms if bottoms[g] < low + tol]

    def local_extent(self, name: str, geoms: list[int] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Object-frame box of an object's collision geoms (or of ``geoms``).

        Returns:
            center: (3,) box centre in the world frame.
            half: (3,) half extents along the object's own axes (columns of
            :meth:`body_mat`).
        """
        body = self.root_body(name)
        if geoms is None:
            geoms = self.collision_geoms(self.subtree(body))
        mat = self.data.body_xmat[body].reshape(3, 3)
        origin = self.data.body_xpos[body]
        if not geoms:
            return origin.copy(), np.full(3, 0.02)
        corners = np.concatenate([self._geom_corners(g) for g in geoms])
        local = (corners - origin) @ mat
        lo, hi = local.min(axis=0), local.max(axis=0)
        center = origin + mat @ (0.5 * (lo + hi))
        return center, 0.5 * (hi - lo)

    def support_height(self, xy: np.ndarray, radius: float, exclude: set[int]) -> float:
        """Highest surface under a disc of ``radius`` around ``xy`` (m).

        Casts vertical rays at the centre and 8 points of the disc's rim, skipping
        the robot and the bodies in ``exclude`` (e.g. the held object).
        """
        points = [np.asarray(xy, dtype=np.float64)]
        for k in range(8 if radius > 0 else 0):  # radius 0: the centre ray only
            a = 2 * np.pi * k / 8
            points.append(np.asarray(xy) + radius * np.array([np.cos(a), np.sin(a)]))
        return self.highest_surface(points, exclude)

    def highest_surface(self, points: list[np.ndarray], exclude: set[int]) -> float:
        """Highest surface hit by vertical rays at the xy ``points`` (m), skipping the
        robot and the bodies in ``exclude``; 0.9 (table height) if none hits."""
        best = -np.inf
        down = np.array([0.0, 0.0, -1.0])
        for p in points:
            dist = self.ray_distance(np.array([p[0], p[1], RAY_START_Z]), down, exclude)
            if dist is not None:
                best = max(best, RAY_START_Z - dist)
        return float(best) if np.isfinite(best) else 0.9

    def free_span(self, point: np.ndarray, direction: np.ndarray, reach: float, exclude: set[int]) -> float:
        """Distance (m, at most ``reach``) from ``point`` along horizontal unit
        ``direction`` to the first surface, skipping the robot and ``exclude``."""
        dist = self.ray_distance(np.asarray(point, dtype=np.float64), direction, exclude)
        return reach if dist is None else min(dist, reach)

    def ray_distance(self, start: np.ndarray, direction: np.ndarray, exclude: set[int]) -> float | None:
        """Distance (m) along unit ``direction`` from ``start`` to the first geom that
        belongs neither to the robot nor to ``exclude`` (None if nothing is hit)."""
        geomid = np.zeros(1, dtype=np.int32)
        travelled = 0.0
        for _ in range(8):  # re-cast past robot/excluded hits
            dist = self._mj.mj_ray(self._raw_model, self._raw_data, start, direction, None, 1, -1, geomid)
            if dist < 0:
                return None
            body = int(self.model.geom_bodyid[geomid[0]])
            if body not in self.robot_bodies and body not in exclude:
                return travelled + float(dist)
            travelled += dist + 1e-4
            start = start + (dist + 1e-4) * direction
        return None

    # ------------------------------------------------------------------ articulation
    def joints_of(self, name: str) -> list[JointInfo]:
        """Joints that an open/close/turnon/turnoff predicate on ``name`` reads."""
        env = self.env
        if name in env.object_sites_dict:
            joint_names = list(getattr(env.object_sites_dict[name], "joints", []) or [])
        else:
            joint_names = list(env.get_object(name).joints)
        out = []
        m = self.model
        for jn in joint_names:
            jid = m.joint_name2id(jn)
            kind = {2: "slide", 3: "hinge"}.get(int(m.jnt_type[jid]), "other")
            lo, hi = m.jnt_range[jid]
            out.append(JointInfo(jn, jid, int(m.jnt_qposadr[jid]), kind, float(lo), float(hi), int(m.jnt_bodyid[jid])))
        return out

    def qpos(self, joint: JointInfo) -> float:
        """Current joint position."""
        return float(self.data.qpos[joint.qpos_addr])

    def joint_axis(self, joint: JointInfo) -> tuple[np.ndarray, np.ndarray]:
        """World (anchor, unit axis) of a joint."""
        d = self._raw_data
        return d.xanchor[joint.jid].copy(), d.xaxis[joint.jid].copy()

    def parent_object(self, name: str) -> Any:
        """The LIBERO object whose articulation predicates judge ``name``."""
        env = self.env
        if name in env.object_sites_dict:
            state = env.object_states_dict[name]
            return env.get_object(state.parent_name)
        return env.get_object(name)

    def holds(self, predicate: list[str]) -> bool:
        """Whether one BDDL goal predicate holds now (LIBERO's own evaluation)."""
        return bool(self.env._eval_predicate(predicate))
