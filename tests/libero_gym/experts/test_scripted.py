"""The scripted expert on the real LIBERO simulator, plus its pure helpers.

Default tests: one task per goal-predicate type (in, on, open, close, turnon,
turnoff), each from an init state where the expert was seen to succeed, within the
suite's step limit; and the action contract (shape, dtype, [-1, 1], finite).
``--runslow`` adds a sweep over every LIBERO-Goal task.
"""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest

from libero_gym import suites
from libero_gym.experts import control as P
from libero_gym.experts import pick_place
from libero_gym.experts.scripted import ScriptedExpert

# predicate type -> (suite, task index, init state id); init states seen to succeed
# (see docs/experts.md for rates over many init states).
PREDICATE_TASKS = {
    "in": ("libero_object", 0, 0),  # pick up the alphabet soup and place it in the basket
    "on": ("libero_goal", 8, 0),  # put the bowl on the plate
    "open": ("libero_goal", 0, 0),  # open the middle drawer of the cabinet
    "close": ("libero_90", 33, 0),  # close the microwave
    "turnon": ("libero_goal", 7, 0),  # turn on the stove
    "turnoff": ("libero_90", 39, 0),  # turn off the stove
}


def run_episode(suite: str, task_id: int, init_state_id: int, max_steps: int | None = None) -> tuple[bool, int, list]:
    """Run the expert for one episode; returns (success, steps, actions)."""
    env_id = f"LIBERO-{suites.SUITE_ID_NAMES[suite]}-v0"
    env = gym.make(env_id, task_id=task_id, obs_mode="state")
    expert = ScriptedExpert()
    actions = []
    try:
        obs, info = env.reset(seed=0, options={"init_state_id": init_state_id})
        expert.reset(env.unwrapped)
        limit = suites.MAX_EPISODE_STEPS[suite] if max_steps is None else max_steps
        steps = 0
        for steps in range(1, limit + 1):
            action = expert.act(obs)
            actions.append(action)
            obs, _, terminated, truncated, info = env.step(action)
            if terminated or truncated:
                break
        return bool(info["is_success"]), steps, actions
    finally:
        env.close()


@pytest.mark.parametrize("predicate", list(PREDICATE_TASKS))
def test_expert_solves_one_task_per_predicate(predicate: str) -> None:
    suite, task_id, init_id = PREDICATE_TASKS[predicate]
    task = suites.get_task(suite, task_id)
    assert predicate in task.goal_predicates, f"{suite} task {task_id} has no {predicate!r} goal"
    success, steps, _ = run_episode(suite, task_id, init_id)
    assert success, f"expert failed '{task.language}' ({suite} {task_id}, init {init_id}) in {steps} steps"
    assert steps <= suites.MAX_EPISODE_STEPS[suite]


def test_expert_moves_on_once_a_pushed_drawer_stops() -> None:
    """Closing the bottom drawer (LIBERO-90 23, init 0) pushes it against its end before the goal position
    the expert aims for. The expert must move on once drawer and hand stop (articulation.STALL_STEPS), not
    push on until its step cap (the old expert stood still 38 steps in a row here): a long still stretch is
    a state in which the demonstrator both pushes and moves on, which a demonstration should not hold."""
    from libero_gym.experts.articulation import STALL_STEPS

    env = gym.make("LIBERO-90-v0", task_id=23, obs_mode="state")
    expert = ScriptedExpert()
    try:
        obs, info = env.reset(seed=0, options={"init_state_id": 0})
        expert.reset(env.unwrapped)
        sim = env.unwrapped.sim
        site = sim.model.site_name2id("gripper0_grip_site")
        hand = [sim.data.site_xpos[site].copy()]
        for _ in range(suites.MAX_EPISODE_STEPS["libero_90"]):
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            hand.append(sim.data.site_xpos[site].copy())
            if terminated or truncated:
                break
    finally:
        env.close()
    assert info["is_success"]
    still = np.linalg.norm(np.diff(np.array(hand), axis=0), axis=1) < 5e-4  # [T] the hand moved < 0.5 mm
    longest, run = 0, 0
    for flag in still:
        run = run + 1 if flag else 0
        longest = max(longest, run)
    assert longest <= STALL_STEPS + 4, f"the hand stood still for {longest} steps in a row"


def test_actions_are_bounded_and_finite() -> None:
    # Two different tasks (articulation + placement), partial episodes: every
    # action the expert emits must be a valid env action.
    for suite, task_id, init_id in (("libero_goal", 3, 1), ("libero_spatial", 0, 2)):
        _, _, actions = run_episode(suite, task_id, init_id, max_steps=120)
        assert len(actions) > 0
        for a in actions:
            assert a.shape == (7,) and a.dtype == np.float32
            assert np.all(np.isfinite(a))
            assert np.all(np.abs(a) <= 1.0)


def test_act_before_reset_raises() -> None:
    with pytest.raises(RuntimeError):
        ScriptedExpert().act(None)


@pytest.mark.slow
@pytest.mark.parametrize(
    "task_id",
    [
        pytest.param(t, marks=pytest.mark.xfail(reason="bowl into the opened drawer: known failure, docs/experts.md"))
        if t == 3
        else t
        for t in range(10)
    ],
)
def test_expert_on_every_goal_task(task_id: int) -> None:
    successes = [run_episode("libero_goal", task_id, k)[0] for k in range(3)]
    assert any(successes), f"LIBERO-Goal task {task_id}: no success over init states 0-2"


# ---------------------------------------------------------------------- pure helpers
@pytest.mark.parametrize("angle", [0.0, 0.3, 1.5, 3.0, np.pi - 1e-4])
def test_axis_angle_round_trip(angle: float) -> None:
    axis = np.array([0.3, -0.5, 0.8])
    axis /= np.linalg.norm(axis)
    mat = P.axis_rotation(axis, angle)
    np.testing.assert_allclose(mat @ mat.T, np.eye(3), atol=1e-9)
    back = P.mat_to_axis_angle(mat)
    assert np.linalg.norm(back) == pytest.approx(angle, abs=1e-6)
    if angle > 0:
        np.testing.assert_allclose(P.axis_rotation(back / np.linalg.norm(back), np.linalg.norm(back)), mat, atol=1e-4)


@pytest.mark.parametrize("direction", [(1, 0), (0, 1), (1, 1), (-1, 2), (0.2, -1)])
def test_top_down_yaw_closes_along_direction(direction: tuple[float, float]) -> None:
    d = np.array([*direction, 0.0])
    d /= np.linalg.norm(d)
    yaw = P.yaw_for_closing_axis(d, P.TOP_DOWN)
    rot = P.top_down(yaw)
    assert abs(yaw) <= np.pi / 2 + 1e-6  # wrist stays near home
    assert abs(abs(rot[:, 0] @ d) - 1.0) < 1e-9  # fingers close along d
    np.testing.assert_allclose(rot[:, 2], [0, 0, -1], atol=1e-9)  # pointing down


@pytest.mark.parametrize("noise", [-1e-3, 0.0, 1e-3, 0.05])
def test_grasp_yaw_tie_is_broken_by_rule_not_by_noise(noise: float) -> None:
    """A closing axis square to home puts both yaws at +-pi/2 from the wrist: noise must not pick the turn."""
    d = np.array([np.cos(noise), np.sin(noise), 0.0])  # yaws ~ +-pi/2, nearly equidistant from home
    yaw = P.yaw_for_closing_axis(d, P.TOP_DOWN)
    assert yaw == pytest.approx(np.pi / 2, abs=abs(noise) + 1e-9)  # the same side every time
    # An object as wide one way as the other is taken without turning the wrist.
    assert P.yaw_for_closing_axis(d, P.TOP_DOWN, symmetric=True) == pytest.approx(0.0, abs=abs(noise) + 1e-9)


def test_controller_saturates_and_limits_jerk() -> None:
    scene = SimpleNamespace(eef_pos=np.zeros(3), eef_mat=P.TOP_DOWN.copy())
    ctl = P.Controller(scene)  # type: ignore[arg-type]
    first = ctl.servo(np.array([1.0, 0.0, 0.0]), P.TOP_DOWN, P.CLOSE)
    assert first[0] == pytest.approx(P.Gains().max_delta)  # jerk-limited start
    for _ in range(10):
        a = ctl.servo(np.array([1.0, -1.0, 0.5]), P.top_down(1.0), P.CLOSE)
        assert np.all(np.abs(a) <= 1.0)
    assert np.max(np.abs(a[:3])) == pytest.approx(1.0)  # saturated, direction kept
    assert a[0] == pytest.approx(-a[1]) and a[2] == pytest.approx(0.5 * a[0])
    assert a[6] == P.CLOSE


def test_reach_tilt_leans_far_grasps_back_towards_the_robot() -> None:
    scene = SimpleNamespace(shoulder_pos=np.array([-0.66, 0.0, 1.245]))
    down = P.top_down(0.3)
    near = np.array([-0.3, 0.1, 0.95])
    np.testing.assert_array_equal(pick_place.reach_tilt(scene, near, down), down)  # type: ignore[arg-type]
    far = np.array([0.1, 0.15, 0.95])
    rot = pick_place.reach_tilt(scene, far, down)  # type: ignore[arg-type]
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
    radial = (far - scene.shoulder_pos)[:2]
    radial /= np.linalg.norm(radial)
    assert rot[:2, 2] @ radial > 0.3  # the approach axis leans away from the robot...
    wrist_down, wrist_tilted = far - 0.2 * down[:, 2], far - 0.2 * rot[:, 2]
    reach = [np.linalg.norm((w - scene.shoulder_pos)[:2]) for w in (wrist_down, wrist_tilted)]
    assert reach[1] < reach[0] - 0.05  # ...so the wrist comes > 5 cm nearer the shoulder
    assert np.arccos(np.clip(-rot[2, 2], -1, 1)) == pytest.approx(pick_place.MAX_TILT)


def test_rim_grasp_keeps_fingers_and_hand_clear() -> None:
    # LIBERO-Spatial task 4, init 2: the bowl sits in an opened drawer whose back wall
    # (and the cabinet top) rise next to one side of its rim; the fingers once landed on it.
    env = gym.make("LIBERO-Spatial-v0", task_id=4, obs_mode="state")
    try:
        env.reset(seed=0, options={"init_state_id": 2})
        expert = ScriptedExpert()
        expert.reset(env.unwrapped)
        scene = expert.scene
        assert scene is not None
        name = "akita_black_bowl_1"
        plan = pick_place.plan_grasp(scene, name)
        assert plan.rim
        d = plan.pos[:2] - scene.pos(name)[:2]
        d /= np.linalg.norm(d)
        own = set(scene.subtree(scene.root_body(name)))
        assert pick_place._rim_obstruction(scene, plan.pos[:2], d, plan.pos[2], own) == 0.0
        # The drawer's back wall is there: some side of this rim is obstructed.
        blocked = []
        for k in range(16):
            a = 2 * np.pi * k / 16
            side = np.array([np.cos(a), np.sin(a)])
            p = scene.pos(name)[:2] + np.linalg.norm(plan.pos[:2] - scene.pos(name)[:2]) * side
            blocked.append(pick_place._rim_obstruction(scene, p, side, plan.pos[2], own) > 0.01)
        assert any(blocked) and not all(blocked)
    finally:
        env.close()
