"""A fast stand-in with LIBERO's spaces, for agent unit tests and benchmarks.

:class:`FakeLiberoEnv` has exactly the action and observation spaces of
:class:`libero_gym.env.LiberoEnv` (same keys, shapes, dtypes) but no simulator:
the "end effector" is a point that moves by ``0.05 * action[:3]`` metres per step
(the OSC translation scale), and the task is to bring it within ``success_radius``
of a goal drawn at reset and to close the gripper there. Reward is sparse (1.0 on
success, which terminates), as in LIBERO. With ``chunk_size=Ta`` it steps (Ta, 7) action
chunks as ``LiberoEnv(chunk_size=Ta)`` does: the actions run until the chunk or the
episode ends, the reward is summed and ``info["chunk_steps"]`` counts the steps that ran.
It exists so that learning tests run in about a minute; it never replaces the real env
in integration tests.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from libero_gym.spaces import (
    ACTION_DIM,
    CAMERAS,
    OBJECT_DIM,
    PROPRIO_DIM,
    PROPRIO_SLICES,
    action_space,
    observation_space,
)

STEP_SCALE = 0.05
"""Metres moved per step at action 1.0 (robosuite OSC_POSE's default output_max)."""


class FakeLiberoEnv(gym.Env[dict[str, np.ndarray], np.ndarray]):
    """Point-reaching task with LIBERO's observation and action spaces.

    Args:
        obs_mode: ``"state"``, ``"pixels"`` or ``"both"``, as for ``LiberoEnv``.
        image_size: image height and width.
        max_episode_steps: steps before truncation.
        success_radius: distance to the goal (m) that counts as reached.
        goal_range: goals are drawn uniformly in ``[-goal_range, goal_range]^3`` (m).
        require_grasp: success also needs the gripper command > 0 (closed).
        n_tasks: size of the ``task_index`` space.
        chunk_size: ``None`` (actions (7,)), or Ta: ``step`` takes (Ta, 7) chunks.
    """

    metadata = {"render_modes": ["rgb_array"], "render_fps": 20}

    def __init__(
        self,
        obs_mode: str = "state",
        image_size: int = 32,
        max_episode_steps: int = 40,
        success_radius: float = 0.05,
        goal_range: float = 0.25,
        require_grasp: bool = False,
        n_tasks: int = 10,
        render_mode: str | None = None,
        chunk_size: int | None = None,
    ) -> None:
        self.obs_mode = obs_mode
        self.image_size = image_size
        self.max_episode_steps = max_episode_steps
        self.success_radius = success_radius
        self.goal_range = goal_range
        self.require_grasp = require_grasp
        self.render_mode = render_mode
        self.chunk_size = chunk_size
        self.action_space = action_space(chunk_size)
        self.observation_space = observation_space(obs_mode, image_size, n_tasks)
        self._pos = np.zeros(3)
        self._goal = np.zeros(3)
        self._gripper = -1.0
        self._steps = 0
        self.language_instruction = "move the gripper to the goal"

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        super().reset(seed=seed)
        self._pos = np.zeros(3)
        self._goal = self.np_random.uniform(-self.goal_range, self.goal_range, 3)
        self._gripper = -1.0
        self._steps = 0
        return self._obs(), {"is_success": False}

    def step(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        if self.chunk_size is None:
            return self._step_one(action)
        actions = np.asarray(action, dtype=np.float64)
        if actions.shape != (self.chunk_size, ACTION_DIM):
            raise ValueError(f"actions must have shape ({self.chunk_size}, {ACTION_DIM}), got {actions.shape}")
        total = 0.0
        for ran, one in enumerate(actions, start=1):  # [Ta, 7]
            obs, reward, terminated, truncated, info = self._step_one(one)
            total += reward
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**info, "chunk_steps": ran}

    def _step_one(self, action: np.ndarray) -> tuple[dict[str, np.ndarray], float, bool, bool, dict[str, Any]]:
        action = np.asarray(action, dtype=np.float64)
        if action.shape != (ACTION_DIM,) or not np.all(np.isfinite(action)):
            raise ValueError(f"action must be a finite array of shape ({ACTION_DIM},), got {action!r}")
        action = np.clip(action, -1.0, 1.0)
        self._pos = self._pos + STEP_SCALE * action[:3]
        self._gripper = float(action[6])
        self._steps += 1
        reached = np.linalg.norm(self._pos - self._goal) < self.success_radius
        success = bool(reached and (self._gripper > 0 or not self.require_grasp))
        truncated = self._steps >= self.max_episode_steps and not success
        return self._obs(), float(success), success, truncated, {"is_success": success}

    def _obs(self) -> dict[str, np.ndarray]:
        proprio = np.zeros(PROPRIO_DIM, dtype=np.float32)
        proprio[PROPRIO_SLICES["eef_pos"]] = self._pos
        proprio[PROPRIO_SLICES["gripper_qpos"]] = [0.04 * (1 - self._gripper) / 2] * 2
        obs: dict[str, Any] = {"proprio": proprio}
        if "object" in self.observation_space.spaces:
            obj = np.zeros(OBJECT_DIM, dtype=np.float32)
            obj[0:3] = self._goal
            obj[7:10] = self._goal - self._pos
            obs["object"] = obj
        for key in CAMERAS:
            if key in self.observation_space.spaces:
                obs[key] = self._image()
        obs["task_index"] = 0
        return obs

    def _image(self) -> np.ndarray:
        """A top-down picture: the goal in red, the point in green."""
        size = self.image_size
        image = np.zeros((size, size, 3), dtype=np.uint8)
        for position, channel in ((self._goal, 0), (self._pos, 1)):
            u, v = ((np.clip(position[:2], -0.5, 0.5) + 0.5) * (size - 1)).astype(int)
            image[max(v - 1, 0) : v + 2, max(u - 1, 0) : u + 2, channel] = 255
        return image

    def render(self) -> np.ndarray | None:  # type: ignore[override]
        return self._image() if self.render_mode == "rgb_array" else None
