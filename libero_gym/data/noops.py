"""The no-op filter of OpenVLA's LIBERO datasets (``export --filter-noops``).

OpenVLA's ``libero_*_no_noops`` datasets (and the LeRobot and RLDS LIBERO sets made
from them) were regenerated with a rule that drops actions which do not move the
robot (``experiments/robot/libero/regenerate_libero_dataset.py``, ``is_noop``):

- an action is a no-op when the norm of its first six dimensions (the OSC_POSE
  position and axis-angle delta) is below :data:`NOOP_THRESHOLD`, **and** its
  gripper command equals the gripper command of the previous *kept* action;
- before any action has been kept, the first criterion alone decides (so every
  leading zero-motion action goes, whatever its gripper command; this drops the
  reset's settle steps ``[0]*6 + [-1]`` of our demos).

Comparing with the last kept action, not the previous recorded one, matters: a run
of no-ops after a gripper change is judged against the change.

Differences from OpenVLA's script, by construction: it re-simulates the kept actions
(so the state after a dropped step is the state before it), while this filter drops
recorded steps (observation, state and action of step t) without replaying; a
no-op moves the robot by less than the threshold, so the next kept observation is
the one a replay would give up to that motion and whatever the scene did meanwhile
(objects settling, the gripper closing). And where OpenVLA's filter can empty an
episode (it does for one LIBERO-90 task), this one never does: an episode whose every
action is a no-op is kept whole and reported (:attr:`NoopReport.kept_whole`).

Shape legend: T steps of the episode, S length of the flattened MuJoCo state.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from libero_gym.data import dataset as ds

NOOP_THRESHOLD = 1e-4
"""Norm of the 6-D arm command below which an action does not move the robot (OpenVLA's ``threshold``)."""


def noop_mask(actions: np.ndarray, threshold: float = NOOP_THRESHOLD) -> np.ndarray:
    """Which actions of an episode OpenVLA's rule calls no-ops.

    Args:
        actions: (T, 7) actions: arm delta (6) then gripper.
        threshold: the arm-norm threshold.

    Returns:
        (T,) bool, True where the action is dropped. Walks the episode in order, as
        the rule compares each action with the last one kept.
    """
    actions = np.asarray(actions, dtype=np.float64)
    still = np.linalg.norm(actions[:, :-1], axis=1) < threshold
    mask = np.zeros(len(actions), dtype=bool)
    last_gripper: float | None = None
    for t, action in enumerate(actions):
        if still[t] and (last_gripper is None or action[-1] == last_gripper):
            mask[t] = True
        else:
            last_gripper = float(action[-1])
    return mask


@dataclasses.dataclass(frozen=True)
class NoopReport:
    """What the filter did to one episode."""

    steps: int
    """Steps before filtering."""
    dropped: int
    """Steps dropped (0 when :attr:`kept_whole`)."""
    kept_whole: bool = False
    """Every action was a no-op: the episode was kept unfiltered rather than emptied."""

    @property
    def kept(self) -> int:
        """Steps left."""
        return self.steps - self.dropped


def filter_episode(episode: ds.Episode, threshold: float = NOOP_THRESHOLD) -> tuple[ds.Episode, NoopReport]:
    """The episode without its no-op steps, and how many went.

    Every per-step array (``actions``, ``states``, ``robot_states``, ``obs/*``) loses the
    same rows. Rewards are not lost with them: a kept step takes the largest reward
    of itself and the dropped steps up to the next kept one (leading dropped steps go
    to the first kept step), so a success on a dropped step still counts. ``dones``
    is 1 on the new last step. ``settle_steps`` becomes the number of settle steps
    left (0: the rule drops them all), ``init_state`` stays LIBERO's init state.

    Args:
        episode: the demo.
        threshold: the arm-norm threshold (:data:`NOOP_THRESHOLD`).
    """
    mask = noop_mask(episode.actions, threshold)
    steps = episode.num_samples
    if mask.all():
        return episode, NoopReport(steps, 0, kept_whole=True)
    if not mask.any():
        return episode, NoopReport(steps, 0)
    keep = np.flatnonzero(~mask)
    # Each dropped step's reward goes to the kept step that precedes it (or the first kept one).
    owner = np.maximum(np.searchsorted(keep, np.arange(steps), side="right") - 1, 0)
    rewards = np.zeros(len(keep), dtype=np.asarray(episode.rewards).dtype)
    np.maximum.at(rewards, owner, np.asarray(episode.rewards))
    dones = np.zeros(len(keep), dtype=np.asarray(episode.dones).dtype)
    dones[-1] = 1
    attrs = dict(episode.attrs)
    if ds.SETTLE_STEPS_ATTR in attrs:
        attrs[ds.SETTLE_STEPS_ATTR] = int(np.count_nonzero(keep < episode.settle_steps))
    filtered = dataclasses.replace(
        episode,
        actions=episode.actions[keep],
        states=episode.states[keep],
        robot_states=episode.robot_states[keep],
        rewards=rewards,
        dones=dones,
        obs={key: value[keep] for key, value in episode.obs.items()},
        attrs=attrs,
    )
    return filtered, NoopReport(steps, int(mask.sum()))
