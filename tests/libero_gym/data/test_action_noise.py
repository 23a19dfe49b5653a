"""Demonstrations with exploration noise (collect --action-noise, DART): executed vs commanded actions."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

import libero_gym  # noqa: F401  (registers the ids)
from libero_gym.data.dataset import read_dataset
from libero_gym.data.replay import replay_episode
from libero_gym.data.worker import ActionNoise

STEPS = 40


def test_noise_is_seeded_correlated_and_leaves_the_gripper_alone() -> None:
    action = np.array([0.1, -0.2, 0.3, 0.0, 0.0, 0.05, 1.0])
    first = [ActionNoise(0.2, seed=3).perturb(action) for _ in range(1)]
    noise, again = ActionNoise(0.2, seed=3), ActionNoise(0.2, seed=3)
    samples = np.stack([noise.perturb(action) for _ in range(4000)])
    np.testing.assert_array_equal(samples[0], first[0])
    np.testing.assert_array_equal(samples[:50], np.stack([again.perturb(action) for _ in range(50)]))
    assert not np.array_equal(samples[0], ActionNoise(0.2, seed=4).perturb(action))
    assert np.all(samples[:, 6] == 1.0) and np.all(np.abs(samples) <= 1.0)
    offsets = samples[:, :6] - action[:6]
    assert 0.15 < offsets[200:].std() < 0.25  # stationary std ~0.2
    lag1 = np.mean([np.corrcoef(offsets[200:-1, d], offsets[201:, d])[0, 1] for d in range(6)])
    assert lag1 > 0.8  # correlated over several steps, not white


def test_noisy_scripted_demos_store_what_ran_and_what_the_expert_commanded(tmp_path: Path) -> None:
    from libero_gym.data.commands import CollectConfig, collect

    out = tmp_path / "demos"
    config = CollectConfig(out=str(out), policy="scripted", env="LIBERO-Goal-v0", task_id=(0,), episodes=1,
                           keep="all", images=False, max_episode_steps=STEPS, action_noise=0.2, progress=False)  # fmt: skip
    collect(config)
    (path,) = sorted(out.glob("*.hdf5"))
    (episode,) = read_dataset(path, images=False).episodes
    assert episode.expert_actions is not None and episode.expert_actions.shape == episode.actions.shape
    policy = episode.policy_steps
    arm_offset = np.abs(episode.actions[policy, :6] - episode.expert_actions[policy, :6])
    assert arm_offset.mean() > 0.05
    np.testing.assert_array_equal(episode.actions[policy, 6], episode.expert_actions[policy, 6])
    np.testing.assert_array_equal(episode.actions[: episode.settle_steps], episode.expert_actions[: episode.settle_steps])
    # The stored actions are the executed ones: replaying them gives the recorded states.
    env = gym.make("LIBERO-Goal-v0", task_id=0, max_episode_steps=STEPS)
    try:
        np.testing.assert_array_equal(replay_episode(env, episode).states, episode.states)
    finally:
        env.close()
    # Behaviour cloning learns the expert's commands, not the noisy executed actions.
    from agents.configs import PretrainConfig
    from agents.pretrain import load_demos

    data = load_demos(PretrainConfig(dataset=(path,), run_dir=tmp_path / "bc"), horizon=1)
    np.testing.assert_allclose(data.chunks[:, 0], np.clip(episode.expert_actions[policy], -1, 1).astype(np.float32))
