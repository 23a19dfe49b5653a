"""Replay stored episodes in a fresh env: the check that a dataset is what it claims.

A LIBERO scene is not fully described by its MuJoCo state: robosuite re-places
the fixtures (cabinets, stoves, racks) at every reset by moving their bodies in
the *model*, which ``states`` does not hold (LIBERO keeps the whole model XML per
demo for this reason; the XML rounds positions). So each of our demos also
records the exact poses of the bodies attached to the world (``body_poses``
attribute, JSON ``{name: [x, y, z, qw, qx, qy, qz]}``) and the env's
``layout_seed`` (which re-creates the placement through ``reset``);
:func:`replay_episode` restores the scene, then plays the actions.

Settle steps: the env's reset ends with ``settle_steps`` no-op steps. Our demos
record them as their first steps (``settle_steps`` attribute), starting from
LIBERO's init state, because robosuite keeps state of its own that no dataset
holds (the gripper's smoothed command, the controller's cached kinematics,
MuJoCo's solver warm start) and that those steps change: a LIBERO-style rebuild that starts from ``states[0]``
then starts where the recording started. :func:`reset_unsettled` and
:func:`settle_step` are the two halves of the env's reset, used by the collection
worker to record and by :func:`replay_episode` to replay.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from typing import Any

import numpy as np

from libero_gym.data.dataset import Episode
from libero_gym.env import SETTLE_ACTION


def body_poses(sim: Any) -> dict[str, list[float]]:
    """Model poses of the bodies whose parent is the world: ``{name: pos (3) + quat wxyz (4)}``."""
    import mujoco

    model = sim.model._model
    poses: dict[str, list[float]] = {}
    for body in range(1, model.nbody):
        if model.body_parentid[body] == 0:
            name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_BODY, body) or f"body{body}"
            poses[name] = [float(v) for v in (*model.body_pos[body], *model.body_quat[body])]
    return poses


def set_body_poses(sim: Any, poses: dict[str, list[float]]) -> None:
    """Put recorded world-attached body poses back into the model and recompute."""
    import mujoco

    model = sim.model._model
    for name, pose in poses.items():
        body = mujoco.mj_name2id(model, mujoco.mjtObj.mjOBJ_BODY, name)
        if body >= 0:
            model.body_pos[body] = pose[:3]
            model.body_quat[body] = pose[3:7]
    sim.forward()


@dataclasses.dataclass
class ReplayResult:
    """What replaying an episode's actions gave."""

    states: np.ndarray
    """(T, S) MuJoCo states before each action."""
    success: bool
    """Whether the task succeeded at any step."""
    rewards: np.ndarray
    """(T,) rewards."""

    def max_state_error(self, episode: Episode) -> float:
        """Largest absolute difference to the stored states."""
        return float(np.max(np.abs(self.states - episode.states)))


@contextlib.contextmanager
def _settle_steps(unwrapped: Any, steps: int) -> Iterator[None]:
    """Inside the block, the env's reset plays ``steps`` settle steps."""
    saved = unwrapped.settle_steps
    unwrapped.settle_steps = steps
    try:
        yield
    finally:
        unwrapped.settle_steps = saved


def reset_unsettled(env: Any, **reset_kwargs: Any) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """``env.reset(**reset_kwargs)`` without its settle steps: the observation at the init state.

    The env's reset is this plus ``env.unwrapped.settle_steps`` times :func:`settle_step`
    (same states and observations, bit for bit; tested in ``tests/libero_gym/data/test_libero_rebuild.py``).
    """
    with _settle_steps(env.unwrapped, 0):
        return env.reset(**reset_kwargs)


def settle_step(env: Any, action: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """One of the reset's settle steps, outside the episode: its observation.

    Steps the unwrapped env (Gymnasium's ``TimeLimit`` does not count it; a one-action
    chunk, so envs with ``chunk_size`` take it too) and leaves the env's own step count
    at 0, as its reset does.

    Args:
        env: a libero-gym env just reset with :func:`reset_unsettled` (or settling).
        action: the recorded settle action; default the env's ``SETTLE_ACTION``.
    """

    unwrapped = env.unwrapped
    action = SETTLE_ACTION if action is None else np.asarray(action, dtype=np.float64)
    obs, _, _, _, _ = unwrapped.step_chunk(action[None])
    unwrapped.elapsed_steps = 0
    return obs


def restore_scene(env: Any, episode: Episode) -> None:
    """Reset ``env`` (a libero-gym env) to the episode's first state: init state, fixtures.

    The episode's first state is the init state when the episode records its settle
    steps (``episode.settle_steps > 0``: the reset's settle steps are left to the
    caller, see :func:`replay_episode`), else the settled state after the reset.

    With a recorded ``layout_seed`` (libero-gym >= the seeded-layout env), the env's
    own reset re-creates the scene: ``reset(options={"init_state_id", "layout_seed"})``.
    If the fixture poses it gives differ from the recorded ``body_poses`` (or no
    layout seed was recorded), the scene is rebuilt by hand: reset without settle
    steps, put the recorded poses back, restore the init state, settle with LIBERO's
    own ``step``. That fallback is best effort (bit-exact only when the env settles
    with LIBERO's ``step`` too, i.e. ``physics="upstream"``).
    """
    unwrapped = env.unwrapped
    settle = 0 if episode.settle_steps else unwrapped.settle_steps
    options: dict[str, Any] = {"init_state_id": int(episode.attrs["init_state_id"])}
    recorded = json.loads(episode.attrs["body_poses"]) if "body_poses" in episode.attrs else None
    with _settle_steps(unwrapped, settle):
        if "layout_seed" in episode.attrs:
            options["layout_seed"] = int(episode.attrs["layout_seed"])
            env.reset(options=options)
            if recorded is None or _same_poses(body_poses(unwrapped.sim), recorded):
                return
        elif recorded is None:
            env.reset(options=options)
            return
        _restore_by_hand(env, options, recorded)


def _same_poses(current: dict[str, list[float]], recorded: dict[str, list[float]]) -> bool:
    return all(name in current and np.array_equal(current[name], pose) for name, pose in recorded.items())


def _restore_by_hand(env: Any, options: dict[str, Any], recorded: dict[str, list[float]]) -> None:

    unwrapped = env.unwrapped
    settle = unwrapped.settle_steps
    unwrapped.settle_steps = 0
    try:
        env.reset(options=options)
    finally:
        unwrapped.settle_steps = settle
    set_body_poses(unwrapped.sim, recorded)
    unwrapped.set_sim_state(unwrapped.init_states()[unwrapped.init_state_id])
    for _ in range(settle):
        unwrapped.libero_env.step(SETTLE_ACTION)


def replay_episode(env: Any, episode: Episode) -> ReplayResult:
    """Play ``episode.actions`` from its start in ``env``; return the states seen.

    The episode's recorded settle steps (``episode.settle_steps``) are played as the
    env's reset plays them (:func:`settle_step`), the rest with ``env.step``.

    Args:
        env: a libero-gym env of the episode's task (``gym.make``), state mode is enough.
        episode: a demo read with :func:`libero_gym.data.dataset.read_dataset`.
    """
    restore_scene(env, episode)
    unwrapped = env.unwrapped
    states, rewards, success = [], [], False
    for t, action in enumerate(episode.actions):
        states.append(unwrapped.get_sim_state())
        if t < episode.settle_steps:  # the reset's settle steps, as the worker recorded them
            settle_step(env, action)
            rewards.append(0.0)
            continue
        _, reward, _, _, info = env.step(action)
        rewards.append(reward)
        success = success or bool(info["is_success"])
    return ReplayResult(np.stack(states), success, np.asarray(rewards))


def env_observations(env: Any, episode: Episode, *, restore: bool = True) -> dict[str, np.ndarray]:
    """The libero-gym observations of every stored state: what a policy in ``env`` would have seen.

    LIBERO's layout keeps robot fields and images but not libero-gym's ``proprio``
    (39,) and ``object`` (OBJECT_DIM,) vectors; this regenerates them (and images,
    upright or not as ``env`` renders them) from ``states``, for behaviour cloning
    in the env's own observation space.

    Not bit-identical to what the policy saw while acting: robosuite computes a
    step's observation from the kinematics of the last physics substep's start,
    while restoring a state runs ``mj_forward`` on it, so positions differ by one
    2 ms substep of motion (at most ~2 mm for the end effector). The stored
    ``obs/*`` fields are the ones seen while acting.

    Args:
        env: a libero-gym env of the episode's task, in the obs mode wanted.
        episode: the demo.
        restore: first re-create the episode's scene (:func:`restore_scene`), so
            that fixtures stand where they stood.

    Returns:
        ``{key: (T, ...) array}`` with the keys of ``env.observation_space``, for every
        stored state, the settle steps' included (``[episode.policy_steps]`` drops them).
    """
    if restore:
        restore_scene(env, episode)
    unwrapped = env.unwrapped
    frames = [unwrapped.set_sim_state(state) for state in episode.states]
    return {key: np.stack([np.asarray(frame[key]) for frame in frames]) for key in frames[0]}
