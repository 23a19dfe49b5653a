"""The Ray vector env: equal to the sync and async vector envs, and resilient to broken actors.

Real LIBERO tasks, state observations, on one local Ray instance shared by the module
(the slow test starts its own two-node cluster).
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym

import numpy as np
import pytest
import ray
from gymnasium.vector import AutoresetMode

import libero_gym  # noqa: F401
from libero_gym.errors import InvalidInputError
from libero_gym.ray_vector import RayVectorEnv, connect
from libero_gym.resilient_vector import WorkerFailureError, dropped_mask
from libero_gym.vector import make_vec, make_vector_env

STEPS = 5
"""Episode limit: short, so that every test runs through autoresets."""

# The actors unpickle the env functions below; they live in this test module, which a
# Ray worker cannot import (tests/ is not installed): send them by value.
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


SIGTERM_HANDLERS: list[Any] = []
"""The SIGTERM handler before and after the module's ``connect`` (ray.init replaces it; connect must not)."""


@pytest.fixture(scope="module", autouse=True)
def local_ray() -> Any:
    """One local Ray for the module (2 logical CPUs: this project's CI machines have 2 cores)."""
    SIGTERM_HANDLERS.append(signal.getsignal(signal.SIGTERM))
    connect(None, num_cpus=2)
    SIGTERM_HANDLERS.append(signal.getsignal(signal.SIGTERM))
    yield
    ray.shutdown()


def _assert_tree_equal(a: Any, b: Any, where: str = "") -> None:
    """Step or reset results: tuples of dicts of arrays (observations, infos with their ``_key`` masks)."""
    if isinstance(a, tuple):
        assert isinstance(b, tuple) and len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_tree_equal(x, y, f"{where}[{i}]")
    elif isinstance(a, dict):
        assert isinstance(b, dict) and sorted(a) == sorted(b), f"{where}: keys {sorted(a)} != {sorted(b)}"
        for key in a:
            _assert_tree_equal(a[key], b[key], f"{where}/{key}")
    else:
        np.testing.assert_array_equal(a, b, err_msg=where)


def _random_actions(envs: gym.vector.VectorEnv, rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(-1, 1, envs.action_space.shape).astype(np.float32)


def test_ray_equals_sync_and_async_step_for_step() -> None:
    """Two tasks mixed, init states dealt round-robin, two autoresets per env, a masked reset."""
    kwargs = dict(suite="libero_goal", task_id=[0, 1], task_per_worker=True, init_state_ids=[3, 4, 5],
                  obs_mode="state", max_episode_steps=STEPS)
    envs = {mode: make_vector_env(2, vectorization_mode=mode, **kwargs) for mode in ("sync", "async", "ray")}
    assert isinstance(envs["ray"], RayVectorEnv)
    try:
        assert envs["ray"].observation_space == envs["sync"].observation_space
        assert envs["ray"].action_space == envs["sync"].action_space
        results = {mode: env.reset(seed=11) for mode, env in envs.items()}
        assert list(results["ray"][1]["task_id"]) == [0, 1] and list(results["ray"][1]["init_state_id"]) == [3, 4]
        for mode in ("async", "ray"):
            _assert_tree_equal(results["sync"], results[mode], f"reset {mode}")
        rng = np.random.default_rng(0)
        ends = 0
        for t in range(2 * STEPS + 3):
            action = _random_actions(envs["sync"], rng)
            results = {mode: env.step(action) for mode, env in envs.items()}
            for mode in ("async", "ray"):
                _assert_tree_equal(results["sync"], results[mode], f"step {t} {mode}")
            ends += int(np.sum(results["ray"][2] | results["ray"][3]))
        assert ends == 4, "both envs ended two episodes (and autoreset after each)"
        mask = np.array([False, True])
        results = {mode: env.reset(seed=[None, 5], options={"reset_mask": mask}) for mode, env in envs.items()}
        for mode in ("async", "ray"):
            _assert_tree_equal(results["sync"], results[mode], f"masked reset {mode}")
        action = _random_actions(envs["sync"], rng)
        results = {mode: env.step(action) for mode, env in envs.items()}
        _assert_tree_equal(results["sync"], results["ray"], "step after the masked reset")
        assert envs["ray"].get_attr("language_instruction") == envs["sync"].get_attr("language_instruction")
        envs["ray"].set_attr("unused_marker", [1, 2])
        assert envs["ray"].get_attr("unused_marker") == (1, 2)
        assert (envs["ray"].num_restarts, envs["ray"].dropped_episodes) == (0, 0)
    finally:
        for env in envs.values():
            env.close()


def test_action_chunks_equal_sync() -> None:
    """``chunk_size``: actions (N, Ta, 7), episodes of ``step_limit`` control steps, autoreset."""
    kwargs = dict(obs_mode="state", chunk_size=3, step_limit=6)
    sync = make_vec("LIBERO-Goal-Task1-v0", 1, vectorization_mode="sync", **kwargs)
    ray_env = make_vec("LIBERO-Goal-Task1-v0", 1, vectorization_mode="ray", **kwargs)
    try:
        assert ray_env.action_space.shape == (1, 3, 7)
        _assert_tree_equal(sync.reset(seed=3), ray_env.reset(seed=3))
        rng = np.random.default_rng(1)
        truncations = 0
        for _ in range(4):
            action = _random_actions(sync, rng)
            a, b = sync.step(action), ray_env.step(action)
            _assert_tree_equal(a, b)
            truncations += int(b[3][0])
        assert truncations == 1 and list(b[4]["chunk_steps"]) == [3]
    finally:
        sync.close()
        ray_env.close()


def _kill(envs: Any, index: int) -> None:
    """``ray.kill`` actor ``index`` and wait until it is dead: Ray reports it (a call queued behind its serve loop
    fails) and its process is gone (its end of the direct connection is closed; under load the process can
    outlive Ray's report by seconds, and a step in between would still be answered)."""
    actor = envs.actors[index]
    ray.kill(actor)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actor.node_id.remote(), timeout=60)
    conn, deadline = envs._conns[index], time.time() + 60
    while conn is not None and not conn.poll(0.2) and time.time() < deadline:
        pass


def _check_slot_plays_full_episode(envs: gym.vector.VectorEnv, slot: int, rng: np.random.Generator) -> None:
    """After a dropped step: one NEXT_STEP reset step, then a complete STEPS-long episode."""
    obs, reward, terminated, truncated, info = envs.step(_random_actions(envs, rng))
    assert reward[slot] == 0 and not terminated[slot] and not truncated[slot], "the reset step"
    for t in range(1, STEPS + 1):
        obs, reward, terminated, truncated, info = envs.step(_random_actions(envs, rng))
        assert envs.observation_space.contains(obs) and not dropped_mask(info, envs.num_envs)[slot]
        assert bool(truncated[slot] or terminated[slot]) == (t == STEPS), "ended by the step limit, not before"


def test_killed_actor_is_replaced_and_its_episode_dropped() -> None:
    rng = np.random.default_rng(0)
    envs = make_vector_env(2, suite="libero_goal", task_id=0, obs_mode="state", max_episode_steps=STEPS,
                           vectorization_mode="ray")
    old = list(envs.actors)
    try:
        envs.reset(seed=0)
        for _ in range(2):
            envs.step(_random_actions(envs, rng))
        _kill(envs, 1)  # mid-episode
        obs, reward, terminated, truncated, info = envs.step(_random_actions(envs, rng))
        assert envs.actors[1] is not old[1] and envs.actors[0] is old[0]
        assert truncated.tolist() == [False, True] and reward[1] == 0
        assert dropped_mask(info, 2).tolist() == [False, True]
        assert info["worker_restarted"][1] and "ActorDiedError" in info["worker_error"][1]
        assert envs.observation_space.contains(obs)
        np.testing.assert_array_equal(obs["proprio"], envs.observations["proprio"])
        assert (envs.num_restarts, envs.dropped_episodes) == (1, 1)
        _check_slot_plays_full_episode(envs, 1, rng)
        # Killed between episodes (slot 1's episode just ended): replaced, nothing dropped.
        _kill(envs, 1)
        obs, reward, terminated, truncated, info = envs.step(_random_actions(envs, rng))
        assert info["worker_restarted"][1] and not dropped_mask(info, 2)[1] and not truncated[1]
        assert (envs.num_restarts, envs.dropped_episodes) == (2, 1)
        assert envs.get_attr("language_instruction") == ("open the middle drawer of the cabinet",) * 2
    finally:
        envs.close()
    assert envs.closed
    for actor in [*old, *envs.actors]:  # closing frees the actors (and the killed ones are gone)
        with pytest.raises(ray.exceptions.RayActorError):
            ray.get(actor.node_id.remote(), timeout=60)


class FaultOnce(gym.Wrapper):
    """Raises a simulator-like RuntimeError at step ``at``, once per flag file."""

    def __init__(self, env: gym.Env[Any, Any], flag: str, at: int) -> None:
        super().__init__(env)
        self.flag, self.at, self.steps = flag, at, 0

    def step(self, action: Any) -> Any:
        self.steps += 1
        if self.steps == self.at and not os.path.exists(self.flag):
            Path(self.flag).touch()
            raise RuntimeError("mj_step: simulation unstable (injected)")
        return self.env.step(action)


class AlwaysFails(gym.Wrapper):
    """Every step raises: a deterministic fault, not a flaky simulator."""

    def step(self, action: Any) -> Any:
        raise RuntimeError("broken every time")


def _make_faulty(flag: str, at: int) -> gym.Env[Any, Any]:
    return FaultOnce(gym.make("LIBERO-Goal-v0", task_id=1, obs_mode="state", max_episode_steps=STEPS), flag, at)


def _make_always_failing() -> gym.Env[Any, Any]:
    from libero_gym.testing import FakeLiberoEnv

    return AlwaysFails(FakeLiberoEnv("state", max_episode_steps=STEPS))


@pytest.mark.slow  # ~35 s; the default suite keeps the equality and kill tests
def test_simulator_error_is_a_break_user_errors_propagate(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    envs = RayVectorEnv([functools.partial(_make_faulty, str(tmp_path / f"flag{i}"), at=2 + i) for i in range(2)])
    try:
        envs.reset(seed=3)
        envs.step(_random_actions(envs, rng))
        obs, reward, terminated, truncated, info = envs.step(_random_actions(envs, rng))  # actor 0 raises
        assert dropped_mask(info, 2).tolist() == [True, False] and truncated[0]
        assert "RuntimeError: mj_step" in info["worker_error"][0]
        assert envs.observation_space.contains(obs) and (envs.num_restarts, envs.dropped_episodes) == (1, 1)
        obs, reward, terminated, truncated, info = envs.step(_random_actions(envs, rng))  # actor 1 raises
        assert dropped_mask(info, 2).tolist() == [False, True] and not truncated[0], "slot 0: its reset step"
        assert (envs.num_restarts, envs.dropped_episodes) == (2, 2)
        envs.step(_random_actions(envs, rng))  # slot 1: its reset step

        # User errors are the caller's: raised here, nothing replaced or dropped.
        with pytest.raises(InvalidInputError, match="shape"):
            envs.step(np.zeros((2, 6), dtype=np.float32))
        bad = _random_actions(envs, rng)
        bad[1, 2] = np.nan  # passes the shape check; the env itself rejects it
        with pytest.raises(InvalidInputError):
            envs.step(bad)
        assert (envs.num_restarts, envs.dropped_episodes) == (2, 2)
        obs, info = envs.reset(seed=4)
        obs, reward, terminated, truncated, info = envs.step(_random_actions(envs, rng))
        assert envs.observation_space.contains(obs) and not dropped_mask(info, 2).any()
    finally:
        envs.close()


def test_deterministic_fault_gives_up() -> None:
    envs = RayVectorEnv([_make_always_failing], max_consecutive_failures=2)
    try:
        envs.reset(seed=0)
        action = np.zeros((1, 7), dtype=np.float32)
        for _ in range(2):
            obs, reward, terminated, truncated, info = envs.step(action)  # a break: dropped
            assert truncated[0] and dropped_mask(info, 1)[0]
            envs.step(action)  # its reset step (not sent to the actor)
        with pytest.raises(WorkerFailureError, match="3 times in a row"):
            envs.step(action)
    finally:
        envs.close(terminate=True)


def test_bad_input_light_import_sigterm_kept() -> None:
    with pytest.raises(InvalidInputError, match="ray_address needs vectorization_mode='ray'"):
        make_vector_env(1, ray_address="auto")
    with pytest.raises(InvalidInputError, match="NEXT_STEP only"):
        make_vector_env(1, vectorization_mode="ray", autoreset_mode=AutoresetMode.SAME_STEP)
    with pytest.raises(InvalidInputError, match="vectorization_mode must be one of \\['async', 'sync', 'ray'\\]"):
        make_vector_env(1, vectorization_mode="actors")
    code = "import sys, libero_gym, libero_gym.vector; assert 'ray' not in sys.modules, 'ray imported'"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    if SIGTERM_HANDLERS:  # the module's fixture started Ray
        assert SIGTERM_HANDLERS[0] is SIGTERM_HANDLERS[1], "ray.init replaced the SIGTERM handler"


@pytest.mark.slow  # ~35 s; the default suite keeps the equality and kill tests
def test_training_survives_a_killed_actor() -> None:
    """gaussian-ppo learns through the SB3 adapter on Ray actors while one is killed mid-rollout."""
    import torch
    from stable_baselines3.common.callbacks import BaseCallback

    from agents.checkpoint import build_agent
    from agents.registry import resolve_agent
    from agents.vec_env import SB3VecEnv

    class KillOnce(BaseCallback):
        """Kills actor 1 at the 5th env step of the rollout; collects the step infos."""

        def __init__(self) -> None:
            super().__init__()
            self.infos: list[dict[str, Any]] = []

        def _on_step(self) -> bool:
            self.infos.extend(self.locals["infos"])
            if self.n_calls == 5:
                _kill(envs, 1)
            return True

    torch.set_num_threads(1)
    envs = make_vector_env(2, suite="libero_goal", task_id=0, obs_mode="state", max_episode_steps=8,
                           vectorization_mode="ray")
    vec_env = SB3VecEnv(envs)
    try:
        spec = resolve_agent("gaussian-ppo")
        model = build_agent(spec, vec_env, spec.make_config({"n_steps": 16, "batch_size": 16, "n_epochs": 1}),
                            seed=0, device="cpu")
        callback = KillOnce()
        model.learn(total_timesteps=32, callback=callback)
        assert model.num_timesteps == 32
        assert (vec_env.num_restarts, vec_env.dropped_episodes) == (1, 1)
        assert sum(bool(info.get("episode_dropped")) for info in callback.infos) == 1
        assert model.rollout_buffer.full and np.isfinite(model.rollout_buffer.observations["proprio"]).all()
    finally:
        vec_env.close()


@pytest.mark.slow
def test_two_node_cluster_runs_episodes_on_both_nodes() -> None:
    """A simulated 2-node cluster (one CPU each): the actors spread over both and both finish episodes."""
    from ray.cluster_utils import Cluster

    ray.shutdown()  # this process joins the cluster instead of the module's local Ray
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        envs = make_vector_env(2, suite="libero_goal", task_id=[0, 1], task_per_worker=True, obs_mode="state",
                               max_episode_steps=STEPS, vectorization_mode="ray", ray_address=cluster.address)
        try:
            nodes = envs.node_ids()
            alive = {node["NodeID"] for node in ray.nodes() if node["Alive"]}
            assert len(set(nodes)) == 2 and set(nodes) == alive, "one actor on each node"
            rng = np.random.default_rng(0)
            envs.reset(seed=0)
            finished = {node: 0 for node in nodes}
            for _ in range(3 * (STEPS + 1)):
                obs, reward, terminated, truncated, info = envs.step(_random_actions(envs, rng))
                assert envs.observation_space.contains(obs)
                for slot in np.flatnonzero(terminated | truncated):
                    finished[nodes[slot]] += 1
            assert finished == {node: 3 for node in nodes}
        finally:
            envs.close()
    finally:
        ray.shutdown()
        cluster.shutdown()
