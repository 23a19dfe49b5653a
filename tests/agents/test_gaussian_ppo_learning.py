"""Gaussian PPO learns: on FakeLiberoEnv (sparse reward), return rises clearly above the untrained policy."""

from __future__ import annotations

import numpy as np
import torch

from agents.gaussian_ppo import GaussianPPO, GaussianPPOConfig
from tests.agents.conftest import fake_vec

TASK = {"max_episode_steps": 40, "success_radius": 0.1, "goal_range": 0.15}
"""Goals within 15 cm, success within 10 cm: the untrained policy succeeds ~15% of the time,
so the sparse reward is found; 30k steps (~15 s here) take PPO to ~100%."""
BUDGET = 30_000
CONFIG = GaussianPPOConfig(n_steps=128, batch_size=256, net_arch=(64, 64), learning_rate=1e-3)
"""8 envs x 128 steps per update; a small net and a higher learning rate fit the tiny task."""


def _mean_return(model: GaussianPPO, episodes: int = 100, seed: int = 123) -> float:
    env = fake_vec(8, **TASK)
    env.seed(seed)
    obs = env.reset()
    returns: list[float] = []
    while len(returns) < episodes:
        actions, _ = model.predict(obs, deterministic=True)
        obs, _, dones, infos = env.step(actions)
        returns += [infos[i]["episode"]["r"] for i in np.flatnonzero(dones)]
    env.close()
    return float(np.mean(returns[:episodes]))


def test_gaussian_ppo_learns_sparse_reaching() -> None:
    model = GaussianPPO(fake_vec(8, **TASK), CONFIG, seed=0, device="cpu")  # one torch thread (conftest)
    before = _mean_return(model)
    model.learn(BUDGET)
    after = _mean_return(model)
    print(f"mean return before {before:.2f}, after {after:.2f}")
    assert after >= before + 0.5 and after >= 0.8, (before, after)


def test_same_seed_same_learning() -> None:
    """Same seed: identical actions and identical parameters after training."""
    results = []
    for _ in range(2):
        config = GaussianPPOConfig(n_steps=32, batch_size=32, n_epochs=2)
        model = GaussianPPO(fake_vec(2, **TASK), config, seed=3, device="cpu")
        model.learn(128)
        results.append(model)
    for a, b in zip(results[0].policy.state_dict().values(), results[1].policy.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
