"""A scripted expert that solves LIBERO tasks from privileged simulator state.

It reads the task's BDDL goal (``parsed_problem["goal_state"]``), orders the goal
predicates into subtasks (:func:`plan_subtasks`), and runs the matching motion
primitive for each (:mod:`~libero_gym.experts.pick_place`, :mod:`~libero_gym.experts.articulation`). It reads poses from
the simulator but acts only through the env's 7-D OSC action.

Example:
    >>> expert = ScriptedExpert()
    >>> obs, info = env.reset(seed=0)
    >>> expert.reset(env.unwrapped)
    >>> obs, reward, terminated, truncated, info = env.step(expert.act(obs))
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np

from libero_gym.experts import articulation, pick_place
from libero_gym.experts import control as C
from libero_gym.experts.scene import Scene

ARTICULATION_PREDICATES = ("open", "close", "turnon", "turnoff")
PLACEMENT_PREDICATES = ("on", "in")

MAX_ATTEMPTS = 3
"""Attempts per subtask before the expert moves on (a failed grasp is retried)."""


@dataclass(frozen=True)
class Subtask:
    """One goal predicate to make true.

    Attributes:
        predicate: the BDDL predicate as LIBERO parsed it, e.g.
            ``("on", "akita_black_bowl_1", "plate_1")`` or ``("open", "wooden_cabinet_1_top_region")``.
    """

    predicate: tuple[str, ...]
    offset: tuple[float, float] | None = None
    """World xy shift of the placement spot from the target's centre, when several
    objects go to the same region."""

    @property
    def kind(self) -> str:
        """Predicate name, lower case."""
        return self.predicate[0].lower()


def _fixture_of(scene: Scene, name: str) -> str:
    """Name of the fixture or object a region site belongs to (itself if none)."""
    states = scene.env.object_states_dict
    state = states.get(name)
    return getattr(state, "parent_name", name) if state is not None else name


def plan_subtasks(scene: Scene, goal: list[list[str]]) -> list[Subtask]:
    """Order goal predicates so that each can be achieved without undoing another.

    Order: close drawers/doors that nothing goes into (an open drawer sticks out in
    front of the others; a closed one can be a support: "close the drawer and put
    the bowl on it"); open and turn on/off (and open any closed drawer that
    something must go in); place objects one at a time, an object before anything
    stacked on it; close last any drawer/door something was put in.
    """
    preds = [tuple(str(x).lower() for x in p) for p in goal]
    placements = [p for p in preds if p[0] in PLACEMENT_PREDICATES]
    targets_of_in = {p[2] for p in placements if p[0] == "in"}
    fixtures_of_in = {_fixture_of(scene, t) for t in targets_of_in}

    first: list[tuple[str, ...]] = [p for p in preds if p[0] in ("open", "turnon", "turnoff")]
    # An "in" into an articulated region (drawer, microwave) that is not asked to
    # be open: open it first if it is closed (checked when run).
    for t in sorted({p[2] for p in placements}):
        if scene.is_site(t) and scene.joints_of(t) and ("open", t) not in first:
            first.append(("open", t))
    closes = [p for p in preds if p[0] == "close"]
    close_early = [p for p in closes if p[1] not in targets_of_in and _fixture_of(scene, p[1]) not in fixtures_of_in]
    close_late = [p for p in closes if p not in close_early]

    # Placements: an object that is itself a target of another placement goes first.
    moved = {p[1] for p in placements}
    ordered = sorted(placements, key=lambda p: 0 if any(q[2] == p[1] for q in placements) else 1)
    del moved
    # Closing comes first: an open drawer sticks out in front of the others.
    plan = close_early + first + ordered + close_late
    offsets = _region_offsets(scene, ordered)
    return [Subtask(p, offsets.get(p)) for p in plan]


SHARED_REGION_FILL = 0.55
"""Fraction of a region's half size over which objects sharing it are spread
(their origins must stay inside the region; their bodies need room)."""


def _region_offsets(scene: Scene, placements: list[tuple[str, ...]]) -> dict[tuple[str, ...], tuple[float, float]]:
    """Spread objects placed into the same region site along its longer axis."""
    by_target: dict[str, list[tuple[str, ...]]] = {}
    for p in placements:
        if scene.is_site(p[2]):
            by_target.setdefault(p[2], []).append(p)
    out: dict[tuple[str, ...], tuple[float, float]] = {}
    for target, preds in by_target.items():
        if len(preds) < 2:
            continue
        size = np.asarray(scene.env.object_sites_dict[target].size, dtype=float)
        mat = scene.site_mat(target)
        world_half = np.abs(mat @ size)
        axis = 0 if world_half[0] >= world_half[1] else 1
        span = SHARED_REGION_FILL * world_half[axis]
        for k, p in enumerate(preds):
            shift = np.zeros(2)
            shift[axis] = -span + 2 * span * k / (len(preds) - 1)
            out[p] = (float(shift[0]), float(shift[1]))
    return out


class ScriptedExpert:
    """Scripted policy for any LIBERO task, driven by its BDDL goal.

    Call :meth:`reset` after each ``env.reset`` with the unwrapped
    :class:`~libero_gym.env.LiberoEnv`, then :meth:`act` every step.
    """

    def __init__(self) -> None:
        self.scene: Scene | None = None
        self.controller: C.Controller | None = None
        self.plan: list[Subtask] = []
        self._actions: Iterator[np.ndarray] | None = None
        self.log: list[str] = []
        """What the expert did, one line per subtask attempt (for debugging)."""

    def reset(self, env: Any) -> None:
        """Start a new episode on ``env`` (the unwrapped LiberoEnv, already reset)."""
        robosuite_env = env.libero_env.env
        self.scene = Scene(robosuite_env)
        self.controller = C.Controller(self.scene)
        goal = robosuite_env.parsed_problem["goal_state"]
        self.plan = plan_subtasks(self.scene, goal)
        self.log = []
        self._actions = self._run()

    def act(self, obs: Any = None) -> np.ndarray:
        """Next action, (7,) float32 in [-1, 1]. ``obs`` is unused (privileged state)."""
        if self._actions is None or self.controller is None:
            raise RuntimeError("ScriptedExpert.act() called before reset(env)")
        try:
            action = next(self._actions)
        except StopIteration:
            self._actions = self._idle()
            action = next(self._actions)
        action = np.nan_to_num(np.asarray(action, dtype=np.float64), nan=0.0, posinf=1.0, neginf=-1.0)
        return np.clip(action, -1.0, 1.0).astype(np.float32)

    # ------------------------------------------------------------------ internals
    def _idle(self) -> Generator[np.ndarray, None, None]:
        assert self.controller is not None
        while True:
            yield from C.wait(self.controller, 1000)

    def _run(self) -> Generator[np.ndarray, None, None]:
        assert self.scene is not None and self.controller is not None
        scene = self.scene
        goal = [list(s.predicate) for s in self.plan]
        for _ in range(2):  # a second pass repairs what a later subtask undid
            for sub in self.plan:
                for attempt in range(MAX_ATTEMPTS):
                    if self._holds(sub):
                        break
                    self.log.append(f"{sub.predicate} attempt {attempt}")
                    yield from self._solve(sub)
            if all(scene.holds(p) for p in goal if p[0] != "open" or True):
                break
        yield from self._idle()

    def _holds(self, sub: Subtask) -> bool:
        assert self.scene is not None
        return self.scene.holds(list(sub.predicate))

    def _solve(self, sub: Subtask) -> Generator[np.ndarray, None, bool]:
        assert self.scene is not None and self.controller is not None
        scene, ctl = self.scene, self.controller
        kind = sub.kind
        if kind in PLACEMENT_PREDICATES:
            obj, target = sub.predicate[1], sub.predicate[2]
            if ctl.held != obj:
                if ctl.held is not None:
                    yield from C.actuate_gripper(ctl, C.OPEN)
                    ctl.held = None
                place_xy = pick_place.place_target(scene, target, kind)[:2]
                if sub.offset is not None:
                    place_xy = place_xy + np.asarray(sub.offset)
                ok = yield from pick_place.grasp(ctl, obj, place_xy)
                if not ok:
                    self.log.append(f"grasp of {obj} failed")
                    return False
            offset = None if sub.offset is None else np.asarray(sub.offset)
            return (yield from pick_place.place(ctl, obj, target, kind, offset))
        name = sub.predicate[1]
        joints = scene.joints_of(name)
        if not joints:
            self.log.append(f"no joint for {name}")
            return False
        joint = joints[0]
        q_goal = articulation.target_qpos(scene, joint, kind, scene.parent_object(name))
        if joint.kind == "slide":
            outward = articulation.drawer_outward(scene, joint, scene.parent_object(name))
            return (yield from articulation.slide(ctl, joint, q_goal, outward))
        if kind in ("turnon", "turnoff"):
            bar, _, height = articulation.knob_handle(scene, joint)
            return (yield from articulation.twist_knob(ctl, joint, q_goal, bar, height))
        return (yield from articulation.swing_door(ctl, joint, q_goal))
