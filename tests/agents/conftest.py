"""Helpers for the agents tests: FakeLiberoEnv vector envs behind the SB3 adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from agents.vec_env import SB3VecEnv
from libero_gym.testing import FakeLiberoEnv

@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """Small networks: one thread is faster than two contended ones, and gives the same numbers everywhere."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SMALL_DIFFUSION = {
    "n_chunks": 8,
    "batch_size": 16,
    "n_epochs": 1,
    "n_critic_warmup_iterations": 0,
    "critic_dims": [32, 32],
    "critic_encoder": {"state_dims": [32, 32], "image_channels": [8, 8], "image_feature_dim": 16},
    "policy": {
        "denoising_steps": 10,
        "ddim_steps": 5,
        "ft_denoising_steps": 3,
        "mlp_dims": [64, 64],
        "encoder": {"state_dims": [32, 32], "image_channels": [8, 8], "image_feature_dim": 16},
    },
}
"""A DiffusionPPO config small enough for CPU tests (shapes as the defaults, sizes cut)."""

SMALL_GAUSSIAN = {"n_steps": 32, "batch_size": 32, "n_epochs": 2, "net_arch": [32, 32]}
"""A GaussianPPO config small enough for CPU tests."""


class ChunkedFake(gym.Wrapper):
    """A FakeLiberoEnv that steps (Ta, 7) chunks as ``LiberoEnv(chunk_size=Ta)`` does.

    Runs the actions until the chunk ends or the episode does (success or the step
    limit), returns the summed reward and ``info["chunk_steps"]``.
    """

    def __init__(self, env: gym.Env[Any, Any], chunk_size: int) -> None:
        super().__init__(env)
        self.action_space = spaces.Box(-1.0, 1.0, (chunk_size, 7), np.float32)

    def step(self, actions: np.ndarray) -> Any:
        total = 0.0
        for ran, action in enumerate(actions, start=1):
            obs, reward, terminated, truncated, info = self.env.step(action)
            total += reward
            if terminated or truncated:
                break
        return obs, total, terminated, truncated, {**info, "chunk_steps": ran}


def fake_vec(
    n: int = 2, autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP, chunk_size: int | None = None, **kwargs: Any
) -> SB3VecEnv:
    """``n`` FakeLiberoEnvs in a SyncVectorEnv behind the adapter (chunk envs if ``chunk_size``)."""

    def make() -> gym.Env[Any, Any]:
        env = FakeLiberoEnv(**kwargs)
        return env if chunk_size is None else ChunkedFake(env, chunk_size)

    fns: list[Callable[[], gym.Env[Any, Any]]] = [make for _ in range(n)]
    return SB3VecEnv(SyncVectorEnv(fns, autoreset_mode=autoreset_mode))


@pytest.fixture(autouse=True)
def one_torch_thread():
    """One torch thread per test: reproducible, and on a busy 2-core machine a small matmul runs
    ~40x faster than with 2 oversubscribed threads (see train --torch-threads)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def diffusion_available() -> bool:
    """Skip when A1's DiffusionPPO is not importable yet."""
    pytest.importorskip("agents.diffusion_ppo")
    return True
