"""OpenVLA's no-op rule on hand-made action sequences with known answers, and what filtering does to a demo."""

from __future__ import annotations

import numpy as np
import pytest

from libero_gym.data import dataset as ds
from libero_gym.data.noops import NOOP_THRESHOLD, filter_episode, noop_mask

OPEN, CLOSE = -1.0, 1.0


def _actions(*rows: tuple[float, float]) -> np.ndarray:
    """Actions from (arm magnitude, gripper) pairs: the arm value goes into dimension 0."""
    out = np.zeros((len(rows), 7))
    for t, (arm, gripper) in enumerate(rows):
        out[t, 0], out[t, 6] = arm, gripper
    return out


def _reference_mask(actions: np.ndarray) -> np.ndarray:
    """OpenVLA's loop restated: each action against the last *kept* one; before any, the arm norm alone."""
    kept: list[np.ndarray] = []
    mask = []
    for action in actions:
        still = np.linalg.norm(action[:-1]) < 1e-4
        noop = still if not kept else still and action[-1] == kept[-1][-1]
        mask.append(noop)
        if not noop:
            kept.append(action)
    return np.asarray(mask)


def test_threshold_is_openvlas() -> None:
    assert NOOP_THRESHOLD == 1e-4


@pytest.mark.parametrize(
    "rows, dropped",
    [
        # settle steps [0]*6 + [-1] then motion: every leading zero-motion action goes (no kept action yet)
        ([(0, OPEN)] * 3 + [(0.5, OPEN), (0.5, OPEN)], [0, 1, 2]),
        # a leading gripper change without motion also goes: the first-step rule looks at the arm only
        ([(0, CLOSE), (0.5, CLOSE)], [0]),
        # standing still while closing the gripper is kept; standing still with it closed is not
        ([(0.5, OPEN), (0, CLOSE), (0, CLOSE), (0, OPEN)], [2]),
        # just below and just above the threshold
        ([(0.5, OPEN), (0.99e-4, OPEN), (1.01e-4, OPEN)], [1]),
        # compared with the last *kept* action, not the previous one: t=1 changes the gripper against t=0,
        # but t=0 was dropped, so nothing is kept yet and the arm alone decides
        ([(0, CLOSE), (0, OPEN), (0.5, OPEN)], [0, 1]),
        ([(0.5, OPEN), (0, OPEN), (0, CLOSE), (0, CLOSE)], [1, 3]),
    ],
)
def test_rule_on_known_sequences(rows, dropped) -> None:
    actions = _actions(*rows)
    assert np.flatnonzero(noop_mask(actions)).tolist() == dropped
    assert noop_mask(actions).tolist() == _reference_mask(actions).tolist()


def test_rule_matches_the_restated_loop_on_random_sequences() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        length = int(rng.integers(1, 30))
        actions = rng.normal(size=(length, 7)) * (rng.random((length, 1)) < 0.5)  # about half zero-motion
        actions[:, 6] = rng.choice([OPEN, CLOSE], size=length)
        actions[rng.random(length) < 0.2, :6] = 5e-5  # below the threshold, not zero
        np.testing.assert_array_equal(noop_mask(actions), _reference_mask(actions))


def _episode(actions: np.ndarray, rewards: list[int], settle: int = 0) -> ds.Episode:
    steps = len(actions)
    dones = np.zeros(steps, dtype=np.uint8)
    dones[-1] = 1
    return ds.Episode(
        actions=actions, states=np.arange(steps * 3, dtype=float).reshape(steps, 3),
        robot_states=np.zeros((steps, 9)), rewards=np.asarray(rewards, dtype=np.uint8), dones=dones,
        obs={"ee_states": np.arange(steps * 6, dtype=float).reshape(steps, 6),
             "agentview_rgb": np.arange(steps, dtype=np.uint8)[:, None, None, None] * np.ones((1, 2, 2, 3), np.uint8)},
        init_state=np.zeros(3), attrs={ds.SETTLE_STEPS_ATTR: settle} if settle else {},
    )


def test_filter_drops_the_same_rows_everywhere_and_keeps_the_success() -> None:
    # 2 settle steps, motion, a stand-still (no-op), and the success on a trailing no-op
    actions = _actions((0, OPEN), (0, OPEN), (0.5, OPEN), (0, OPEN), (0.3, CLOSE), (0, CLOSE))
    episode = _episode(actions, [0, 0, 0, 0, 0, 1], settle=2)
    filtered, report = filter_episode(episode)
    keep = [2, 4]
    assert (report.steps, report.dropped, report.kept, report.kept_whole) == (6, 4, 2, False)
    np.testing.assert_array_equal(filtered.actions, actions[keep])
    np.testing.assert_array_equal(filtered.states, episode.states[keep])
    np.testing.assert_array_equal(filtered.obs["ee_states"], episode.obs["ee_states"][keep])
    np.testing.assert_array_equal(filtered.obs["agentview_rgb"][:, 0, 0, 0], keep)
    assert filtered.rewards.tolist() == [0, 1]  # the trailing no-op's success moves to the last kept step
    assert filtered.dones.tolist() == [0, 1]
    assert filtered.settle_steps == 0 and filtered.init_state is episode.init_state
    assert episode.num_samples == 6  # the input is not modified


def test_an_episode_of_no_ops_is_kept_whole() -> None:
    episode = _episode(_actions((0, OPEN), (0, CLOSE), (0, CLOSE)), [0, 0, 0])
    filtered, report = filter_episode(episode)
    assert filtered is episode and report.kept_whole and report.dropped == 0 and report.kept == 3


def test_an_episode_without_no_ops_is_unchanged() -> None:
    episode = _episode(_actions((0.5, OPEN), (0.2, CLOSE)), [0, 1])
    filtered, report = filter_episode(episode)
    assert filtered is episode and report.dropped == 0 and not report.kept_whole
