"""What one collection worker does: play an episode, record it, render it, write it.

Shape legend: T steps of the episode, S length of the flattened MuJoCo state,
H = W = image size.

Every step records what LIBERO's datasets hold, *before* the action is applied
(``get_sim_state()`` and the robot's proprioception at float64 from robosuite's raw
observation), then the action, clipped to [-1, 1] and rounded to float32 so that
the stored float64 actions replay exactly. Images come either from the policy's
own pixel observations (un-rotated to LIBERO's convention) or, for state-based
policies, from rendering the stored states after the episode, only when it is kept.

A demo starts at LIBERO's init state: the env reset's settle steps are recorded as
its first ``settle_steps`` steps (see :mod:`libero_gym.data.replay`); the policy acts
from the settled state on, exactly as after a plain ``env.reset``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym.data import dataset as ds
from libero_gym.data.model_xml import scene_xml
from libero_gym.data.policies import PolicySpec, make_policy, policy_obs_mode
from libero_gym.data.render import render_states
from libero_gym.data.replay import body_poses, reset_unsettled, settle_step
from libero_gym.env import PROPRIO_SLICES, SETTLE_ACTION
from libero_gym.registration import lookup_env

EPISODES_DIR = "episodes"
"""Sub-folder of a collection that holds the per-episode shards and summaries."""


@dataclasses.dataclass(frozen=True)
class CollectPlan:
    """Everything a worker needs (picklable)."""

    env_id: str
    task_ids: tuple[int, ...]
    out_dir: str
    policy: PolicySpec
    episodes: int
    until_successes: bool
    keep: str
    image_size: int
    images: bool
    max_episode_steps: int | None
    seed: int
    max_episodes: int
    provenance: dict[str, Any]
    action_noise: float = 0.0
    """Std of the exploration noise added to the arm part of the executed actions (see :class:`ActionNoise`)."""
    policy_factory: str | None = None
    """The policy builder's ``module:Class``, resolved in the parent (where the application registered
    its policies, :func:`libero_gym.data.policies.register_policy`): workers build from it."""


# ---------------------------------------------------------------------- paths
def shard_path(out_dir: str | Path, index: int) -> Path:
    """The one-demo LIBERO file of episode ``index``."""
    return Path(out_dir) / EPISODES_DIR / f"ep_{index:06d}.hdf5"


def summary_path(out_dir: str | Path, index: int) -> Path:
    """The summary JSON of episode ``index`` (its presence marks the index done)."""
    return Path(out_dir) / EPISODES_DIR / f"ep_{index:06d}.json"



def _quat2axisangle(quat: np.ndarray) -> np.ndarray:
    """robosuite's ``quat2axisangle`` for (..., 4) xyzw quaternions -> (..., 3)."""
    quat = np.asarray(quat, dtype=np.float64)
    w = np.clip(quat[..., 3], -1.0, 1.0)
    den = np.sqrt(1.0 - w * w)
    angle = 2.0 * np.arccos(w)
    with np.errstate(invalid="ignore", divide="ignore"):
        scale = np.where(np.isclose(den, 0.0), 0.0, angle / np.where(den == 0, 1.0, den))
    return quat[..., :3] * scale[..., None]


def _robot_fields(raw: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """LIBERO's per-step robot fields from robosuite's raw observation (float64)."""
    gripper = np.asarray(raw["robot0_gripper_qpos"], dtype=np.float64)
    pos = np.asarray(raw["robot0_eef_pos"], dtype=np.float64)
    quat = np.asarray(raw["robot0_eef_quat"], dtype=np.float64)
    joints = np.asarray(raw["robot0_joint_pos"], dtype=np.float64)
    return {"gripper": gripper, "pos": pos, "quat": quat, "joints": joints}


ROBOT_KEYS = ("robot0_gripper_qpos", "robot0_eef_pos", "robot0_eef_quat", "robot0_joint_pos")
"""robosuite observables LIBERO's robot fields come from."""


def _raw_robot_obs(unwrapped: Any, obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """robosuite's raw (float64) robot observation of the current step, else the float32 proprio.

    Reads ``LiberoEnv._last_raw_obs`` (float64, what LIBERO's datasets store); the
    ``proprio`` observation is float32 and only the fallback.
    """
    raw = getattr(unwrapped, "_last_raw_obs", None)
    if isinstance(raw, dict) and all(key in raw for key in ROBOT_KEYS):
        return raw
    return _raw_from_proprio(obs["proprio"])


def _raw_from_proprio(proprio: np.ndarray) -> dict[str, np.ndarray]:
    """Fallback: robot fields from the float32 ``proprio`` observation."""

    return {f"robot0_{key}": np.asarray(proprio[s], dtype=np.float64) for key, s in PROPRIO_SLICES.items()}


class EpisodeWorker:
    """State of one collection worker: its envs and policy, built lazily."""

    def __init__(self, plan: CollectPlan) -> None:
        self.plan = plan
        self.policy: Any = None
        self.env: Any = None

    def _setup(self) -> None:
        import libero_gym  # noqa: F401  (registers ids in a fresh process)

        self.policy = make_policy(self.plan.policy, self.plan.policy_factory)
        obs_mode = policy_obs_mode(self.policy)
        size = int(getattr(self.policy, "image_size", None) or self.plan.image_size)
        self.images_in_loop = obs_mode != "state" and size == self.plan.image_size
        kwargs: dict[str, Any] = {"obs_mode": obs_mode, "image_size": size}
        if self.plan.images and not self.images_in_loop:
            # An offscreen renderer without camera observations: stepping costs the
            # same as in state mode, and kept episodes are rendered from their states.
            kwargs["render_mode"] = "rgb_array"
        if self.plan.max_episode_steps is not None:
            kwargs["max_episode_steps"] = self.plan.max_episode_steps
        self.env = _make_env(self.plan, self.plan.task_ids, **kwargs)

    def run(self, index: int) -> dict[str, Any]:
        """Play episode ``index``, write it if kept, return its summary."""
        if self.policy is None:
            self._setup()
        plan = self.plan
        seed = plan.seed + index
        task_id = plan.task_ids[index % len(plan.task_ids)]
        if hasattr(self.policy, "seed"):
            self.policy.seed(seed)
        env, unwrapped = self.env, self.env.unwrapped
        settle = unwrapped.settle_steps
        # The env's reset minus its settle steps, which are recorded as the demo's first
        # steps: LIBERO-style rebuilds start from states[0] with robosuite's Python-side
        # robot state as a fresh reset leaves it (see data/replay.py).
        obs, info = reset_unsettled(env, seed=seed, options={"task_id": task_id})
        layout_seed = info.get("layout_seed")  # the env's seed of LIBERO's fixture placement
        task = unwrapped.task
        # robosuite re-places fixtures at every reset (model body poses, not in the
        # MuJoCo state): record the scene as it is for this episode, as an XML that
        # compiles to this very model (not sim.model.get_xml(), which drops the
        # compiler's inertiagrouprange under MuJoCo 3.3; see data/model_xml.py).
        model_file = scene_xml(unwrapped.libero_env.env)
        poses = body_poses(unwrapped.sim)
        actions, states, robot, images, rewards = [], [], [], {k: [] for k in ds.IMAGE_KEYS}, []

        def record(obs: dict[str, np.ndarray]) -> None:
            """The moment before the next action: state, robot fields, frames."""
            states.append(unwrapped.get_sim_state())
            robot.append(_robot_fields(_raw_robot_obs(unwrapped, obs)))
            if self.images_in_loop and plan.images:
                for key, obs_key in zip(ds.IMAGE_KEYS, ("agentview_image", "eye_in_hand_image")):
                    image = obs[obs_key]
                    images[key].append(image[::-1, ::-1] if unwrapped.rotate_images else image)

        for _ in range(settle):
            record(obs)
            actions.append(SETTLE_ACTION.copy())
            rewards.append(0.0)
            obs = settle_step(env, SETTLE_ACTION)
        self.policy.reset(unwrapped)
        noise = ActionNoise(plan.action_noise, seed) if plan.action_noise > 0 else None
        commanded: list[np.ndarray] = [SETTLE_ACTION.copy() for _ in range(settle)]
        success, done = False, False
        clock = time.perf_counter()
        while not done:
            record(obs)
            # Clipped to the action space and rounded to its float32, so that the stored
            # float64 actions replay exactly whichever dtype a replayer sends.
            action = np.clip(np.asarray(self.policy.act(obs), dtype=np.float64).reshape(7), -1.0, 1.0)
            action = action.astype(np.float32).astype(np.float64)
            if noise is not None:
                commanded.append(action)
                action = noise.perturb(action)
            actions.append(action)
            obs, reward, terminated, truncated, info = env.step(action.astype(np.float32))
            rewards.append(reward)
            success = success or bool(info.get("is_success", False))
            done = terminated or truncated
        steps = len(actions) - settle  # the policy's steps
        kept = plan.keep == "all" or success
        step_seconds = time.perf_counter() - clock
        summary = {
            "index": index,
            "seed": seed,
            "task_id": task.index,
            "suite": task.suite,
            "init_state_id": unwrapped.init_state_id,
            "layout_seed": layout_seed,
            "success": success,
            "length": steps,
            "settle_steps": settle,
            "kept": kept,
            "images": plan.images,
            "step_seconds": step_seconds,
        }
        if kept:
            if plan.images and not self.images_in_loop:
                clock = time.perf_counter()
                images = self._render(states)
                summary["render_seconds"] = time.perf_counter() - clock
            episode = _make_episode(actions, states, robot, images if plan.images else {}, rewards, success)
            episode.model_file = model_file
            if noise is not None:
                episode.expert_actions = np.stack(commanded)
            episode.attrs.update(
                success=success, init_state_id=int(unwrapped.init_state_id), seed=seed, episode_index=index,
                body_poses=json.dumps(poses), **{ds.SETTLE_STEPS_ATTR: settle},
            )
            if layout_seed is not None:
                episode.attrs["layout_seed"] = int(layout_seed)
            clock = time.perf_counter()
            ds.write_dataset(shard_path(plan.out_dir, index), [episode], task, provenance=plan.provenance)
            summary["write_seconds"] = time.perf_counter() - clock
        ds.write_json_atomic(summary_path(plan.out_dir, index), summary)
        return summary

    def _render(self, states: list[np.ndarray]) -> dict[str, np.ndarray]:
        """Camera images of stored states, as LIBERO stores them (:func:`libero_gym.data.render.render_states`).

        Runs after the episode, so it never disturbs the recorded rollout.
        """
        return render_states(self.env.unwrapped, states, self.plan.image_size)

    def close(self) -> None:
        if self.env is not None:
            self.env.close()


class ActionNoise:
    """Temporally correlated exploration noise on the arm dimensions of executed actions (DART, Laskey et al. 2017).

    An Ornstein-Uhlenbeck process per arm dimension (0-5; the gripper command is left alone), stationary std
    ``std`` in action units, step-to-step correlation :attr:`CORRELATION`: white noise at 20 Hz is averaged
    away by the OSC controller, correlated noise pushes the arm off the expert's path for a few tenths of a
    second, and a closed-loop expert's commands there are the corrections a clone needs. Seeded per episode.
    """

    CORRELATION = 0.9
    """e^(-dt/tau) at 20 Hz: a correlation time of ~0.5 s."""

    def __init__(self, std: float, seed: int) -> None:
        self.std = std
        self.rng = np.random.default_rng([seed, 0xDA47])
        self.state = np.zeros(6)

    def perturb(self, action: np.ndarray) -> np.ndarray:
        """``action`` (7,) with the next noise sample added to its arm part, clipped and rounded as actions are."""
        innovation = self.rng.standard_normal(6) * self.std * np.sqrt(1 - self.CORRELATION**2)
        self.state = self.CORRELATION * self.state + innovation
        noisy = action.copy()
        noisy[:6] = np.clip(noisy[:6] + self.state, -1.0, 1.0)
        return noisy.astype(np.float32).astype(np.float64)


def _make_env(plan: CollectPlan, task_ids: tuple[int, ...], **kwargs: Any) -> Any:
    import gymnasium as gym

    if lookup_env(plan.env_id)[1] is not None:  # a single-task id: its task is fixed
        return gym.make(plan.env_id, **kwargs)
    return gym.make(plan.env_id, task_id=list(task_ids), **kwargs)


def _make_episode(
    actions: list[np.ndarray],
    states: list[np.ndarray],
    robot: list[dict[str, np.ndarray]],
    images: dict[str, list[np.ndarray]] | dict[str, np.ndarray],
    rewards: list[float],
    success: bool,
) -> ds.Episode:
    """Stack per-step records into a LIBERO-layout episode."""
    steps = len(actions)
    gripper = np.stack([r["gripper"] for r in robot])
    pos = np.stack([r["pos"] for r in robot])
    quat = np.stack([r["quat"] for r in robot])
    ori = _quat2axisangle(quat)
    dones = np.zeros(steps, dtype=np.uint8)
    dones[-1] = 1
    obs = {
        "gripper_states": gripper,
        "joint_states": np.stack([r["joints"] for r in robot]),
        "ee_states": np.concatenate([pos, ori], axis=1),
        "ee_pos": pos,
        "ee_ori": ori,
    }
    for key, frames in images.items():
        if len(frames):
            obs[key] = np.stack(frames).astype(np.uint8)
    states_array = np.stack(states)
    return ds.Episode(
        actions=np.stack(actions),
        states=states_array,
        robot_states=np.concatenate([gripper, pos, quat], axis=1),
        rewards=np.asarray(rewards, dtype=np.float64).round().astype(np.uint8),
        dones=dones,
        obs=obs,
        init_state=states_array[0].copy(),
    )
