"""Helpers for the agents tests: FakeLiberoEnv vector envs behind the SB3 adapter."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import pytest
from gymnasium.vector import AutoresetMode, SyncVectorEnv

from agents.vec_env import SB3VecEnv
from libero_gym.testing import FakeLiberoEnv

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


def agent_config(name: str, overrides: dict[str, Any]) -> Any:
    """Agent ``name``'s typed config with ``overrides`` (nested dicts for nested configs)."""
    from agents.registry import resolve_agent

    return resolve_agent(name).make_config(overrides)


def agent_flags(name: str, overrides: dict[str, Any]) -> list[str]:
    """``overrides`` as the command line sets them: ``--agent NAME --agent.field value ...``."""

    def flags(prefix: str, values: dict[str, Any]) -> list[str]:
        out: list[str] = []
        for key, value in values.items():
            flag = f"{prefix}.{key.replace('_', '-')}"
            if isinstance(value, dict):
                out += flags(flag, value)
            elif isinstance(value, bool):
                out.append(flag if value else flag.replace(f"{prefix}.", f"{prefix}.no-", 1))
            elif isinstance(value, list | tuple):
                out += [flag, *(str(v) for v in value)]
            else:
                out += [flag, str(value)]
        return out

    return ["--agent", name, *flags("--agent", overrides)]


def fake_vec(
    n: int = 2, autoreset_mode: AutoresetMode = AutoresetMode.NEXT_STEP, chunk_size: int | None = None, **kwargs: Any
) -> SB3VecEnv:
    """``n`` FakeLiberoEnvs in a SyncVectorEnv behind the adapter (chunk envs if ``chunk_size``)."""

    def make() -> gym.Env[Any, Any]:
        return FakeLiberoEnv(chunk_size=chunk_size, **kwargs)

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


def record_controller_demos(path: Any, task: int = 0, n_demos: int = 2, steps: int = 12) -> None:
    """A known controller on a real LIBERO-Goal task, written in LIBERO's layout: task 0 moves +x with the
    gripper open, any other task -x with it closed; demo i starts from init state i. Only the states and
    actions matter (pretrain and the student regenerate observations by replay)."""
    import numpy as np

    from libero_gym import suites
    from libero_gym.data.dataset import Episode, write_dataset

    direction = [0.5, -1.0] if task == 0 else [-0.5, 1.0]
    env = gym.make("LIBERO-Goal-v0", task_id=task, obs_mode="state")
    episodes = []
    try:
        for i in range(n_demos):
            env.reset(seed=i, options={"init_state_id": i})
            actions = np.tile(np.array([direction[0], 0, 0, 0, 0, 0, direction[1]]), (steps, 1))
            states = []
            for action in actions:
                states.append(env.unwrapped.get_sim_state())
                env.step(action)
            states_arr = np.stack(states)
            dones = np.zeros(steps, np.uint8)
            dones[-1] = 1
            low_dim = {"gripper_states": (2,), "joint_states": (7,), "ee_states": (6,), "ee_pos": (3,), "ee_ori": (3,)}
            obs = {key: np.zeros((steps, *shape)) for key, shape in low_dim.items()}
            episodes.append(Episode(actions, states_arr, np.zeros((steps, 9)), np.zeros(steps, np.uint8), dones, obs,
                                    states_arr[0], "", {"init_state_id": i, "success": True}))  # fmt: skip
    finally:
        env.close()
    write_dataset(path, episodes, suites.get_task("libero_goal", task))
