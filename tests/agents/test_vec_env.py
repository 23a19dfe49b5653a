"""The gymnasium.vector -> SB3 VecEnv adapter, on FakeLiberoEnv and once on real LIBERO workers."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
from gymnasium.vector import AutoresetMode

from agents.vec_env import SB3VecEnv
from libero_gym.env import PROPRIO_SLICES
from libero_gym.testing import FakeLiberoEnv
from tests.agents.conftest import fake_vec

EEF = PROPRIO_SLICES["eef_pos"]
MODES = [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP]


def _actions(n_steps: int, n_envs: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n_steps, n_envs, 7)).astype(np.float32)


def _reference(seed: int, actions: np.ndarray, max_steps: int) -> list[tuple]:
    """One FakeLiberoEnv stepped by hand with the same seed and actions: (eef, reward, done, truncated)."""
    env = FakeLiberoEnv(max_episode_steps=max_steps)
    obs, _ = env.reset(seed=seed)
    trace = []
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(action)
        done = terminated or truncated
        terminal = obs["proprio"][EEF].copy()
        if done:
            obs, _ = env.reset()
        eef, goal = obs["proprio"][EEF].copy(), obs["object"][:3].copy()
        trace.append((eef, reward, done, truncated and not terminated, terminal, goal))
    return trace


@pytest.mark.parametrize("mode", MODES)
def test_matches_single_env_across_autoresets(mode: AutoresetMode) -> None:
    """Every action reaches an env (none swallowed by an autoreset); terminal obs and flags as SB3 wants."""
    n, steps, max_steps = 2, 13, 5
    env = fake_vec(n, mode, max_episode_steps=max_steps)
    env.seed(7)
    obs = env.reset()
    actions = _actions(steps, n)
    refs = [_reference(7 + i, actions[:, i], max_steps) for i in range(n)]
    n_done = 0
    for t in range(steps):
        obs, rewards, dones, infos = env.step(actions[t])
        for i in range(n):
            eef, reward, done, truncated, terminal, goal = refs[i][t]
            np.testing.assert_allclose(obs["proprio"][i][EEF], eef, atol=1e-6)
            np.testing.assert_allclose(obs["object"][i][:3], goal, atol=1e-6)  # same goal: same reset RNG stream
            assert rewards[i] == reward and dones[i] == done
            if done:
                n_done += 1
                assert infos[i]["TimeLimit.truncated"] == truncated
                np.testing.assert_allclose(infos[i]["terminal_observation"]["proprio"][EEF], terminal, atol=1e-6)
                assert set(infos[i]["terminal_observation"]) == set(obs)
                assert infos[i]["episode"]["l"] == max_steps and "is_success" in infos[i]
            else:
                assert "terminal_observation" not in infos[i] and "episode" not in infos[i]
    assert n_done == 2 * n  # steps 5 and 10 ended episodes in both envs
    env.close()


@pytest.mark.parametrize("mode", MODES)
def test_success_terminates_with_stats(mode: AutoresetMode) -> None:
    env = fake_vec(2, mode, success_radius=10.0)  # any position succeeds: done at step 1
    env.seed(0)
    env.reset()
    _, rewards, dones, infos = env.step(np.zeros((2, 7), np.float32))
    assert dones.all() and (rewards == 1.0).all()
    for info in infos:
        assert info["is_success"] is True and info["TimeLimit.truncated"] is False
        assert info["episode"]["r"] == 1.0 and info["episode"]["l"] == 1
    env.close()


def test_seeding_is_reproducible() -> None:
    env = fake_vec(3)
    env.seed(5)
    first = env.reset()["object"][:, :3].copy()
    env.seed(5)
    again = env.reset()["object"][:, :3].copy()
    env.seed(6)
    other = env.reset()["object"][:, :3].copy()
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other)
    assert not np.allclose(first[0], first[1])  # sub-envs get different seeds
    env.close()


def test_sb3_attribute_api() -> None:
    env = fake_vec(2)
    assert env.get_attr("max_episode_steps") == [40, 40]
    env.set_attr("max_episode_steps", 3, indices=[1])
    assert env.get_attr("max_episode_steps") == [40, 3]
    assert env.env_method("render", indices=0) == [None]
    from stable_baselines3.common.monitor import Monitor

    assert env.env_is_wrapped(Monitor) == [True, True]  # the adapter records episode stats itself
    env.close()


def test_rejects_disabled_autoreset() -> None:
    from libero_gym.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="autoreset_mode"):
        fake_vec(1, AutoresetMode.DISABLED)


def test_real_libero_async_two_workers() -> None:
    """Two real LIBERO workers (forkserver, shared memory): truncation, terminal obs, reset obs."""
    from libero_gym.vector import make_vec

    steps = 4
    env = SB3VecEnv(make_vec("LIBERO-Goal-v0", 2, task_id=0, max_episode_steps=steps))
    try:
        env.seed(3)
        obs = env.reset()
        assert obs["proprio"].shape == (2, 39) and obs["object"].shape == (2, 120)
        start = obs["proprio"].copy()
        action = np.zeros((2, 7), np.float32)
        action[:, 0] = 1.0  # move in +x: the end effector visibly leaves its start
        for t in range(steps):
            obs, rewards, dones, infos = env.step(action)
            assert dones.all() == (t == steps - 1)
        for i in range(2):
            assert infos[i]["TimeLimit.truncated"] is True and infos[i]["is_success"] is False
            assert infos[i]["episode"]["l"] == steps
            terminal = infos[i]["terminal_observation"]["proprio"]
            assert terminal[EEF][0] > start[i][EEF][0] + 0.01  # the terminal obs is the moved one
            assert abs(obs["proprio"][i][EEF][0] - terminal[EEF][0]) > 0.01  # obs is a fresh reset
        obs, _, dones, _ = env.step(action)  # the first step of the new episodes is a real step
        assert not dones.any()
    finally:
        env.close()


def test_step_async_starts_async_workers_at_once() -> None:
    """``step_async`` sends the actions to async workers (they step while the caller works on) and
    ``step_wait`` collects them; the results are those of a sync vector env, across autoresets."""
    from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv
    from gymnasium.vector.async_vector_env import AsyncState

    fns = [lambda: FakeLiberoEnv(max_episode_steps=4) for _ in range(2)]
    sync, overlapped = SB3VecEnv(SyncVectorEnv(fns)), SB3VecEnv(AsyncVectorEnv(fns))
    try:
        for env in (sync, overlapped):
            env.seed(5)
        for a, b in zip(sync.reset()["proprio"], overlapped.reset()["proprio"]):
            np.testing.assert_array_equal(a, b)
        for action in _actions(9, 2, seed=1):
            overlapped.step_async(action)
            assert overlapped.vec_env._state == AsyncState.WAITING_STEP  # dispatched, not just stored
            got = overlapped.step_wait()
            want = sync.step(action)
            for key in want[0]:
                np.testing.assert_array_equal(got[0][key], want[0][key])
            np.testing.assert_array_equal(got[1], want[1])
            np.testing.assert_array_equal(got[2], want[2])
            for info_got, info_want in zip(got[3], want[3]):
                assert set(info_got) == set(info_want)
                if "terminal_observation" in info_want:
                    np.testing.assert_array_equal(info_got["terminal_observation"]["proprio"], info_want["terminal_observation"]["proprio"])
    finally:
        sync.close()
        overlapped.close()


def test_chunk_env_episode_length_in_control_steps() -> None:
    """(N, Ta, 7) actions: one step per chunk, episode length = summed chunk_steps (10, not 3 chunks)."""
    env = fake_vec(2, chunk_size=4, max_episode_steps=10, success_radius=0.0)  # never succeeds
    assert env.action_space.shape == (4, 7) and env.is_chunked
    env.seed(0)
    env.reset()
    chunk = np.zeros((2, 4, 7), np.float32)
    for _ in range(2):
        _, _, dones, infos = env.step(chunk)
        assert not dones.any() and [info["chunk_steps"] for info in infos] == [4, 4]
    _, _, dones, infos = env.step(chunk)
    assert dones.all()
    for info in infos:
        assert info["chunk_steps"] == 2 and info["TimeLimit.truncated"] is True
        assert info["episode"]["l"] == 10 and info["is_success"] is False
    env.close()


class _DropAt(gym.Wrapper):
    """Reports its episode as dropped at step ``at``, as ResilientAsyncVectorEnv does for a dead worker:
    ``truncated``, reward 0, a fresh env's observation, ``info["episode_dropped"]``."""

    def __init__(self, env: gym.Env, at: int) -> None:
        super().__init__(env)
        self.at, self.calls = at, 0

    def step(self, action: np.ndarray):
        self.calls += 1
        if self.calls == self.at:
            obs, _ = self.env.reset()
            return obs, 0.0, False, True, {"episode_dropped": True, "worker_restarted": True}
        return self.env.step(action)


def test_dropped_episode_is_truncated_and_never_counted() -> None:
    from gymnasium.vector import SyncVectorEnv

    max_steps = 5
    fns = [lambda: _DropAt(FakeLiberoEnv(max_episode_steps=max_steps, success_radius=0.0), at=3),
           lambda: FakeLiberoEnv(max_episode_steps=max_steps, success_radius=0.0)]  # fmt: skip
    env = SB3VecEnv(SyncVectorEnv(fns))
    env.seed(0)
    env.reset()
    actions = _actions(2 * max_steps + 2, 2)
    seen = None
    for t in range(len(actions)):
        obs, rewards, dones, infos = env.step(actions[t])
        if t == 2:  # the third step: slot 0's episode is cut
            assert dones.tolist() == [True, False] and rewards[0] == 0.0
            info = infos[0]
            assert info["TimeLimit.truncated"] is True and info["episode_dropped"] is True
            assert "episode" not in info and "is_success" not in info  # never in success rate or length
            for key in seen:  # the last observation the agent saw stands in for the lost one
                np.testing.assert_array_equal(info["terminal_observation"][key], seen[key][0])
        if t == 2 + max_steps:  # slot 0's next episode is a whole one, counted from its start
            assert dones[0] and infos[0]["episode"]["l"] == max_steps and "episode_dropped" not in infos[0]
        seen = {key: value.copy() for key, value in obs.items()}
    env.vec_env.dropped_episodes, env.vec_env.num_restarts = 1, 1  # what ResilientAsyncVectorEnv counts
    assert (env.dropped_episodes, env.num_restarts) == (1, 1)
    env.close()
