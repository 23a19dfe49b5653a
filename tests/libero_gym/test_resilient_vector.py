"""Fault injection on vector envs: killed or crashing workers are restarted, their episodes dropped.

Real LIBERO (LIBERO-Goal task 0, state observations, 8-step episodes, 2 async workers),
except the consecutive-failure guard, which only needs a worker that always raises.
"""

from __future__ import annotations

import functools
import os
import signal
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import pytest

import libero_gym  # noqa: F401
from libero_gym.errors import InvalidInputError
from libero_gym.resilient_vector import ResilientAsyncVectorEnv, WorkerFailureError, dropped_mask
from libero_gym.vector import make_vector_env

STEPS = 8
"""Episode limit: short, so a restarted worker's next episodes finish within the test."""


class FaultOnce(gym.Wrapper):
    """Raises a simulator-like RuntimeError at step ``at`` of the first episode, once per flag file."""

    def __init__(self, env: gym.Env[Any, Any], flag: str | None, at: int = 3) -> None:
        super().__init__(env)
        self.flag, self.at, self.steps = flag, at, 0

    def step(self, action: Any) -> Any:
        self.steps += 1
        if self.flag is not None and self.steps == self.at and not os.path.exists(self.flag):
            Path(self.flag).touch()
            raise RuntimeError("mj_step: simulation unstable (injected)")
        return self.env.step(action)


class AlwaysFails(gym.Wrapper):
    """Every step raises: a deterministic fault, not a flaky simulator."""

    def step(self, action: Any) -> Any:
        raise RuntimeError("broken every time")


def _make_libero(flag: str | None) -> gym.Env[Any, Any]:
    return FaultOnce(gym.make("LIBERO-Goal-v0", task_id=0, obs_mode="state", max_episode_steps=STEPS), flag)


def _make_always_failing() -> gym.Env[Any, Any]:
    from libero_gym.testing import FakeLiberoEnv

    return AlwaysFails(FakeLiberoEnv("state", max_episode_steps=STEPS))


def _actions(envs: gym.vector.VectorEnv, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1, 1, envs.action_space.shape).astype(np.float32)


def _kill(envs: ResilientAsyncVectorEnv, index: int) -> None:
    os.kill(envs.processes[index].pid, signal.SIGKILL)
    envs.processes[index].join(10)


def _check_restarted_slot_plays_full_episodes(envs: gym.vector.VectorEnv, slot: int, rng: np.random.Generator,
                                              episodes: int = 1) -> None:
    """After a dropped step: one NEXT_STEP reset step, then ``episodes`` complete STEPS-long episodes."""
    obs, reward, terminated, truncated, info = envs.step(_actions(envs, rng))
    assert reward[slot] == 0 and not terminated[slot] and not truncated[slot], "the reset step"
    for _ in range(episodes):
        for t in range(1, STEPS + 1):
            obs, reward, terminated, truncated, info = envs.step(_actions(envs, rng))
            assert envs.observation_space.contains(obs)
            assert np.isfinite(obs["proprio"][slot]).all() and np.isfinite(obs["object"][slot]).all()
            assert not dropped_mask(info, envs.num_envs)[slot]
            assert not truncated[slot] or t == STEPS, "truncated only by the step limit"
            if terminated[slot] or truncated[slot]:
                break
        assert truncated[slot] or terminated[slot], "the episode ended at the step limit"
        envs.step(_actions(envs, rng))  # its reset step


def test_sigkilled_worker_is_restarted_and_its_episode_dropped() -> None:
    rng = np.random.default_rng(0)
    envs = make_vector_env(2, suite="libero_goal", task_id=0, obs_mode="state", max_episode_steps=STEPS,
                           restart_dead_workers=True)
    assert isinstance(envs, ResilientAsyncVectorEnv)
    try:
        envs.reset(seed=0)
        for _ in range(3):
            envs.step(_actions(envs, rng))
        old_pid = envs.processes[1].pid
        _kill(envs, 1)  # between two steps
        obs, reward, terminated, truncated, info = envs.step(_actions(envs, rng))
        assert envs.processes[1].pid != old_pid and envs.processes[1].is_alive()
        assert truncated.tolist() == [False, True] and reward[1] == 0
        assert dropped_mask(info, 2).tolist() == [False, True]
        assert info["worker_restarted"][1] and "SIGKILL" in info["worker_error"][1]
        assert envs.observation_space.contains(obs)
        assert (envs.num_restarts, envs.dropped_episodes) == (1, 1)

        envs.step_async(_actions(envs, rng))
        _kill(envs, 0)  # in the middle of a step
        obs, reward, terminated, truncated, info = envs.step_wait()
        if not dropped_mask(info, 2)[0]:  # a descheduled parent: the step finished before the signal landed
            obs, reward, terminated, truncated, info = envs.step(_actions(envs, rng))  # so this step reports it
        assert dropped_mask(info, 2).tolist() == [True, False] and truncated[0]
        assert envs.observation_space.contains(obs)
        assert (envs.num_restarts, envs.dropped_episodes) == (2, 2)

        _check_restarted_slot_plays_full_episodes(envs, 0, rng)
        # The shared observation buffer is the one the restarted workers write: reset reads it.
        obs, info = envs.reset(seed=[7, 8])
        np.testing.assert_array_equal(obs["proprio"], envs.observations["proprio"])
        assert info["task_id"].tolist() == [0, 0]
    finally:
        envs.close()
    assert envs.closed and not any(p.is_alive() for p in envs.processes)


def test_worker_exception_is_a_break_user_errors_propagate(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    flag = str(tmp_path / "faulted")
    envs = ResilientAsyncVectorEnv([functools.partial(_make_libero, flag), functools.partial(_make_libero, None)],
                                   context="forkserver")
    try:
        envs.reset(seed=3)
        dropped = 0
        for _ in range(4):  # worker 0 raises at its 3rd step
            obs, reward, terminated, truncated, info = envs.step(_actions(envs, rng))
            dropped += int(dropped_mask(info, 2).sum())
            assert envs.observation_space.contains(obs)
            if dropped:
                break
        assert os.path.exists(flag), "the fault was injected"
        assert dropped == 1 and envs.dropped_episodes == 1 and envs.num_restarts == 1
        assert truncated[0] and "RuntimeError: mj_step" in info["worker_error"][0]
        _check_restarted_slot_plays_full_episodes(envs, 0, rng)

        # User errors are the caller's: raised in the parent, nothing restarted or dropped.
        with pytest.raises(InvalidInputError, match="shape"):
            envs.step(np.zeros((2, 6), dtype=np.float32))
        assert envs.num_restarts == 1
        bad = _actions(envs, rng)
        bad[1, 2] = np.nan  # passes the parent's shape check; the env itself rejects it
        with pytest.raises(InvalidInputError):
            envs.step(bad)
        assert envs.dropped_episodes == 1  # a user error drops nothing; its worker is replaced, reset needed
        obs, info = envs.reset(seed=4)
        assert envs.observation_space.contains(obs)
        obs, reward, terminated, truncated, info = envs.step(_actions(envs, rng))
        assert envs.observation_space.contains(obs) and not dropped_mask(info, 2).any()
    finally:
        envs.close()


def test_deterministic_fault_gives_up() -> None:
    envs = ResilientAsyncVectorEnv([_make_always_failing], context="forkserver", max_consecutive_failures=2)
    try:
        envs.reset(seed=0)
        action = np.zeros((1, 7), dtype=np.float32)
        obs, reward, terminated, truncated, info = envs.step(action)  # break 1: dropped
        assert truncated[0] and dropped_mask(info, 1)[0]
        envs.step(action)  # the reset step (not sent to the worker)
        envs.step(action)  # break 2: dropped
        envs.step(action)
        with pytest.raises(WorkerFailureError, match="3 times in a row"):
            envs.step(action)
    finally:
        envs.close(terminate=True)


def test_resilient_needs_async_shared_memory() -> None:
    with pytest.raises(InvalidInputError, match="restart_dead_workers"):
        make_vector_env(2, vectorization_mode="sync", restart_dead_workers=True)
    with pytest.raises(InvalidInputError, match="restart_dead_workers"):
        make_vector_env(2, shared_memory=False, restart_dead_workers=True)



def test_training_survives_a_killed_worker() -> None:
    """gaussian-ppo learns through the SB3 adapter while one LIBERO worker is SIGKILLed mid-rollout."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.registry import build_agent, resolve_agent
    from agents.vec_env import SB3VecEnv

    class KillOnce(BaseCallback):
        """SIGKILLs worker 1 at the 5th env step of the rollout; collects the step infos."""

        def __init__(self) -> None:
            super().__init__()
            self.infos: list[dict[str, Any]] = []

        def _on_step(self) -> bool:
            self.infos.extend(self.locals["infos"])
            if self.n_calls == 5:
                _kill(envs, 1)
            return True

    torch.set_num_threads(1)
    envs = make_vector_env(2, suite="libero_goal", task_id=0, obs_mode="state", max_episode_steps=STEPS,
                           restart_dead_workers=True)
    vec_env = SB3VecEnv(envs)
    try:
        spec = resolve_agent("gaussian-ppo")
        model = build_agent(spec, vec_env, spec.make_config({"n_steps": 16, "batch_size": 16, "n_epochs": 1}),
                            seed=0, device="cpu")
        callback = KillOnce()
        model.learn(total_timesteps=32, callback=callback)
        assert model.num_timesteps == 32
        assert envs.num_restarts == 1 and envs.dropped_episodes == 1
        assert sum(bool(info.get("episode_dropped")) for info in callback.infos) == 1
        assert model.rollout_buffer.full and np.isfinite(model.rollout_buffer.observations["proprio"]).all()
    finally:
        vec_env.close()
