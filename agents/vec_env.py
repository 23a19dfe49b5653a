"""The one adapter from a ``gymnasium.vector.VectorEnv`` to Stable-Baselines3's ``VecEnv``.

The two APIs differ where episodes end:

============================  ==========================================  =====================================
                              gymnasium.vector (1.x)                       SB3 ``VecEnv``
============================  ==========================================  =====================================
step return                   obs, reward, terminated, truncated, infos    obs, reward, done, infos
infos                         dict of arrays + ``_key`` masks              list of dicts, one per env
episode end (NEXT_STEP)       final obs now; the *next* step resets it,    reset obs now, final obs in
                              ignoring that step's action                  ``infos[i]["terminal_observation"]``
episode end (SAME_STEP)       reset obs now, ``final_obs``/``final_info``  same as above
truncation                    ``truncated`` array                          ``infos[i]["TimeLimit.truncated"]``
seeding                       ``reset(seed=...)``                          ``seed(s)`` then ``reset()``
============================  ==========================================  =====================================

:class:`SB3VecEnv` resets the finished sub-envs right after the step that ended
them (``reset(options={"reset_mask": done})``, which Gymnasium's sync and async
vector envs both honour), so SB3 sees the reset observation immediately and no
action is ever swallowed by a NEXT_STEP autoreset. It also adds what SB3's
``Monitor`` would: ``infos[i]["episode"] = {"r", "l", "t"}`` at episode end, and
keeps ``is_success`` in the final info, so SB3's logger reports
``rollout/ep_rew_mean``, ``rollout/ep_len_mean`` and ``rollout/success_rate``.

Action chunks: with a chunk env (``LiberoEnv(chunk_size=Ta)``, actions (N, Ta, 7)),
one ``step`` runs up to Ta control steps; ``episode["l"]`` counts control steps (the
sum of ``info["chunk_steps"]``), so episode lengths read the same as with (N, 7) envs.

Dropped episodes: a :class:`~libero_gym.resilient_vector.ResilientAsyncVectorEnv` that restarts
a dead worker ends that worker's episode with ``truncated`` and
``info["episode_dropped"]``. The adapter reports it as a time-limit truncation
(``TimeLimit.truncated``) whose ``terminal_observation`` is the slot's last
observation before the break (the one the agent acted on), and adds no ``"episode"``
or ``"is_success"``: a cut episode never counts in success rate or episode length.
:attr:`SB3VecEnv.dropped_episodes` and :attr:`SB3VecEnv.num_restarts` read the counters.

Shapes: N sub-envs; observations are Dicts of arrays with a leading N axis.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium.vector import AsyncVectorEnv, AutoresetMode, SyncVectorEnv, VectorEnv
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env.base_vec_env import VecEnv, VecEnvIndices, VecEnvObs, VecEnvStepReturn

from libero_gym.errors import InvalidInputError

SUPPORTED_AUTORESET_MODES = (AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP)


class SB3VecEnv(VecEnv):
    """A Gymnasium vector env seen through SB3's ``VecEnv`` API.

    Args:
        vec_env: a ``gymnasium.vector.VectorEnv`` (sync or async) with autoreset
            mode ``NEXT_STEP`` (Gymnasium's default) or ``SAME_STEP``.

    Raises:
        InvalidInputError: another autoreset mode, or an async env without shared
            memory in NEXT_STEP mode (Gymnasium 1.4's worker then does not clear
            its autoreset flag on a masked reset, and one step would be lost).
    """

    def __init__(self, vec_env: VectorEnv) -> None:
        mode = vec_env.metadata.get("autoreset_mode", AutoresetMode.NEXT_STEP)
        mode = AutoresetMode(mode) if not isinstance(mode, AutoresetMode) else mode
        if mode not in SUPPORTED_AUTORESET_MODES:
            raise InvalidInputError(
                f"autoreset_mode must be one of {[m.value for m in SUPPORTED_AUTORESET_MODES]}, got {mode.value!r}"
            )
        if mode == AutoresetMode.NEXT_STEP and isinstance(vec_env, AsyncVectorEnv) and not vec_env.shared_memory:
            raise InvalidInputError("an async vector env in NEXT_STEP mode must use shared_memory=True")
        self.vec_env = vec_env
        self.autoreset_mode = mode
        super().__init__(vec_env.num_envs, vec_env.single_observation_space, vec_env.single_action_space)
        self._actions: np.ndarray | None = None
        self._dispatched = False  # step_async sent the actions to async workers; step_wait collects them
        self._episode_returns = np.zeros(self.num_envs, dtype=np.float64)
        self._episode_lengths = np.zeros(self.num_envs, dtype=np.int64)
        self._t_start = time.time()
        self._last_obs: dict[str, np.ndarray] | None = None  # terminal obs of a dropped episode

    @property
    def is_chunked(self) -> bool:
        """True when the env steps action chunks: action space (Ta, 7)."""
        return len(self.action_space.shape or ()) == 2

    @property
    def dropped_episodes(self) -> int:
        """Episodes cut by a worker restart (0 for a vector env that does not restart workers)."""
        return int(getattr(self.vec_env, "dropped_episodes", 0))

    @property
    def num_restarts(self) -> int:
        """Worker processes restarted (0 for a vector env that does not restart workers)."""
        return int(getattr(self.vec_env, "num_restarts", 0))

    # ------------------------------------------------------------------ VecEnv API
    def reset(self) -> VecEnvObs:
        """Reset every sub-env (with the seeds and options set by ``seed``/``set_options``)."""
        seeds = None if all(s is None for s in self._seeds) else [None if s is None else int(s) for s in self._seeds]
        options = self._options[0] if self._options and all(o == self._options[0] for o in self._options) else {}
        obs, infos = self.vec_env.reset(seed=seeds, options=dict(options) or None)
        self._reset_seeds()
        self._reset_options()
        self._episode_returns[:] = 0.0
        self._episode_lengths[:] = 0
        self.reset_infos = _unbatch_infos(infos, self.num_envs)
        obs = _copy_obs(obs)
        self._last_obs = _copy_obs(obs)
        return obs

    def step_async(self, actions: np.ndarray) -> None:
        """Start the step: async workers get the actions now and step while the caller works on."""
        self._actions = np.asarray(actions)
        if isinstance(self.vec_env, AsyncVectorEnv):
            self.vec_env.step_async(self._actions)
            self._dispatched = True

    def step_wait(self) -> VecEnvStepReturn:
        if self._actions is None:
            raise RuntimeError("step_wait() called without step_async()")
        if self._dispatched:
            self._dispatched = False
            obs, rewards, terminated, truncated, batched_infos = self.vec_env.step_wait()
        else:
            obs, rewards, terminated, truncated, batched_infos = self.vec_env.step(self._actions)
        self._actions = None
        obs = _copy_obs(obs)
        rewards = np.asarray(rewards, dtype=np.float32)
        terminated = np.asarray(terminated, dtype=bool)
        truncated = np.asarray(truncated, dtype=bool)
        dones = terminated | truncated
        infos = _unbatch_infos(batched_infos, self.num_envs)
        dropped = np.array([bool(info.get("episode_dropped", False)) for info in infos])
        self._episode_returns += rewards
        self._episode_lengths += [int(info.get("chunk_steps", 1)) for info in infos]  # control steps

        if self.autoreset_mode == AutoresetMode.SAME_STEP:
            # obs already holds the reset observations; the final ones are in the infos.
            for i in np.flatnonzero(dones):
                final_info = dict(infos[i].get("final_info", {}))
                terminal_obs = infos[i]["final_obs"]
                infos[i] = final_info
                infos[i]["terminal_observation"] = terminal_obs
        elif dones.any():
            # NEXT_STEP: reset the finished envs now instead of on the next step.
            for i in np.flatnonzero(dones):
                infos[i]["terminal_observation"] = {key: value[i].copy() for key, value in obs.items()}
            reset_obs, _ = self.vec_env.reset(options={"reset_mask": dones.copy()})
            for key in obs:
                obs[key][dones] = reset_obs[key][dones]

        for i in np.flatnonzero(dropped):
            # The worker died: its episode's last observation is lost; the one the agent last saw
            # stands in for it, and nothing about the cut episode is reported as its outcome.
            assert self._last_obs is not None
            infos[i]["terminal_observation"] = {key: value[i].copy() for key, value in self._last_obs.items()}
            infos[i]["TimeLimit.truncated"] = True
            infos[i].pop("is_success", None)
            self._episode_returns[i] = 0.0
            self._episode_lengths[i] = 0
        for i in np.flatnonzero(dones & ~dropped):
            infos[i]["TimeLimit.truncated"] = bool(truncated[i] and not terminated[i])
            infos[i].setdefault("is_success", bool(terminated[i] and rewards[i] > 0))
            infos[i]["episode"] = {
                "r": float(self._episode_returns[i]),
                "l": int(self._episode_lengths[i]),
                "t": round(time.time() - self._t_start, 6),
            }
            self._episode_returns[i] = 0.0
            self._episode_lengths[i] = 0
        self._last_obs = _copy_obs(obs)
        return obs, rewards, dones, infos

    def close(self) -> None:
        self.vec_env.close()

    def get_attr(self, attr_name: str, indices: VecEnvIndices = None) -> list[Any]:
        values = list(self.vec_env.get_attr(attr_name))
        return [values[i] for i in self._get_indices(indices)]

    def set_attr(self, attr_name: str, value: Any, indices: VecEnvIndices = None) -> None:
        if list(self._get_indices(indices)) != list(range(self.num_envs)):
            if isinstance(self.vec_env, SyncVectorEnv):
                for i in self._get_indices(indices):
                    self.vec_env.envs[i].set_wrapper_attr(attr_name, value)
                return
            raise NotImplementedError("set_attr on a subset of an async vector env")
        self.vec_env.set_attr(attr_name, value)

    def env_method(
        self, method_name: str, *method_args: Any, indices: VecEnvIndices = None, **method_kwargs: Any
    ) -> list[Any]:
        wanted = list(self._get_indices(indices))
        if isinstance(self.vec_env, SyncVectorEnv):
            return [getattr(self.vec_env.envs[i], method_name)(*method_args, **method_kwargs) for i in wanted]
        if wanted != list(range(self.num_envs)):
            raise NotImplementedError("env_method on a subset of an async vector env")
        return list(self.vec_env.call(method_name, *method_args, **method_kwargs))

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: VecEnvIndices = None) -> list[bool]:
        # The adapter itself does Monitor's job (episode stats in the infos).
        n = len(list(self._get_indices(indices)))
        if wrapper_class is Monitor:
            return [True] * n
        if isinstance(self.vec_env, SyncVectorEnv):
            return [_is_wrapped(self.vec_env.envs[i], wrapper_class) for i in self._get_indices(indices)]
        return [False] * n

    def get_images(self) -> Sequence[np.ndarray | None]:
        return list(self.vec_env.call("render"))


def _copy_obs(obs: Any) -> dict[str, np.ndarray]:
    """A private copy (async envs hand out views of shared memory)."""
    if isinstance(obs, dict):
        return {key: np.array(value) for key, value in obs.items()}
    return {"obs": np.array(obs)}  # pragma: no cover - libero-gym obs are always Dicts


def _unbatch_infos(infos: dict[str, Any], num_envs: int) -> list[dict[str, Any]]:
    """Gymnasium's ``{key: array, _key: mask}`` infos as one dict per sub-env."""
    out: list[dict[str, Any]] = [{} for _ in range(num_envs)]
    for key, value in infos.items():
        if key.startswith("_"):
            continue
        mask = infos.get(f"_{key}", np.ones(num_envs, dtype=bool))
        nested = _unbatch_infos(value, num_envs) if isinstance(value, dict) and key != "final_obs" else None
        for i in range(num_envs):
            if not mask[i]:
                continue
            if nested is not None:
                out[i][key] = nested[i]
            elif key == "final_obs" and isinstance(value, dict):
                out[i][key] = {k: np.array(v[i]) for k, v in value.items()}
            else:
                item = value[i]
                out[i][key] = item.item() if isinstance(item, np.generic) else item
    return out


def _is_wrapped(env: gym.Env[Any, Any], wrapper_class: type[gym.Wrapper]) -> bool:
    while isinstance(env, gym.Wrapper):
        if isinstance(env, wrapper_class):
            return True
        env = env.env
    return False
