"""agents' checkpoint policy for ``collect --policy checkpoint`` (registered by cli.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

import cli  # noqa: F401  (registers the checkpoint policy, as the CLI does)
from agents.policy import CheckpointPolicy
from libero_gym.data.policies import POLICIES, PolicySpec, check_policy_spec, make_policy
from libero_gym.errors import CheckpointError, InvalidInputError


def test_cli_registers_the_checkpoint_policy(tmp_path: Path) -> None:
    assert POLICIES["checkpoint"] == "agents.policy:CheckpointPolicy"
    with pytest.raises(InvalidInputError, match="needs --checkpoint"):
        make_policy(PolicySpec("checkpoint"))
    with pytest.raises(InvalidInputError, match="needs --checkpoint"):
        check_policy_spec(PolicySpec("checkpoint"))
    with pytest.raises(CheckpointError):
        check_policy_spec(PolicySpec("checkpoint", checkpoint=str(tmp_path / "missing")))
    with pytest.raises(CheckpointError):
        make_policy(PolicySpec("checkpoint", checkpoint=str(tmp_path / "missing")))


def test_checkpoint_policy_acts_like_the_saved_agent(tmp_path: Path) -> None:
    from agents.checkpoint import save_checkpoint
    from agents.registry import build_agent, resolve_agent
    from libero_gym.env_config import EnvConfig
    from stable_baselines3.common.vec_env import DummyVecEnv

    from libero_gym.testing import FakeLiberoEnv

    spec = resolve_agent("gaussian-ppo")
    env = DummyVecEnv([lambda: FakeLiberoEnv("state")])
    model = build_agent(spec, env, spec.make_config({"n_steps": 16, "batch_size": 16}), seed=0, device="cpu")
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=EnvConfig("LIBERO-Goal-v0", (0,), "state"))
    policy = make_policy(PolicySpec("checkpoint", checkpoint=str(path)))
    assert isinstance(policy, CheckpointPolicy) and policy.obs_mode == "state"
    obs, _ = FakeLiberoEnv("state").reset(seed=5)
    policy.reset(None)
    action = policy.act(obs)
    expected, _ = model.predict(obs, deterministic=True)
    assert action.shape == (7,)
    np.testing.assert_allclose(action, np.asarray(expected, dtype=np.float64).reshape(7), rtol=1e-6)
    env.close()


def _diffusion_checkpoint(tmp_path: Path) -> Path:
    """A small untrained diffusion-ppo checkpoint on the fake env's spaces."""
    from agents.checkpoint import save_checkpoint
    from agents.registry import build_agent, resolve_agent
    from libero_gym.env_config import EnvConfig

    from tests.agents.conftest import SMALL_DIFFUSION, fake_vec

    spec = resolve_agent("diffusion-ppo")
    config = spec.make_config(SMALL_DIFFUSION)
    env = fake_vec(1, chunk_size=config.policy.horizon_steps, obs_mode="state")
    model = build_agent(spec, env, config, seed=0, device="cpu")
    env_config = EnvConfig("LIBERO-Goal-v0", (0,), "state")
    path = save_checkpoint(model, tmp_path / "ck", agent="diffusion-ppo", env=env_config)
    env.close()
    return path


@pytest.mark.parametrize("sampling", ["deterministic", "stochastic"])
def test_checkpoint_policy_replays_an_episode_from_its_seed(tmp_path: Path, sampling: str) -> None:
    """A diffusion policy samples x_T even in deterministic mode: collect's per-episode seed fixes it."""
    from libero_gym.testing import FakeLiberoEnv

    path = _diffusion_checkpoint(tmp_path)
    policy = make_policy(PolicySpec("checkpoint", checkpoint=str(path), sampling=sampling))
    obs, _ = FakeLiberoEnv("state").reset(seed=5)

    def episode(seed: int) -> np.ndarray:
        policy.seed(seed)
        policy.reset(None)
        return np.stack([policy.act(obs) for _ in range(5)])

    first = episode(3)
    np.testing.assert_array_equal(first, episode(3))
    assert not np.array_equal(first, episode(4))


def test_zero_init_sampling_acts_on_the_x_T_zero_path(tmp_path: Path) -> None:
    """``collect --sampling zero-init``: every chunk is the agent's x_T = 0 chunk, whatever the episode's seed."""
    from agents.checkpoint import load_agent
    from libero_gym.testing import FakeLiberoEnv

    path = _diffusion_checkpoint(tmp_path)
    spec = PolicySpec("checkpoint", checkpoint=str(path), sampling="zero-init")
    check_policy_spec(spec)
    policy = make_policy(spec)
    obs, _ = FakeLiberoEnv("state").reset(seed=5)
    model, _ = load_agent(path, device="cpu")
    model.deterministic_mode = "zero-init"
    expected, _ = model.predict(obs, deterministic=True)
    actions = []
    for seed in (3, 4):
        policy.seed(seed)
        policy.reset(None)
        actions.append(policy.act(obs))
    np.testing.assert_allclose(actions[0], np.asarray(expected, dtype=np.float64).reshape(7), rtol=1e-6)
    np.testing.assert_array_equal(actions[0], actions[1])
    deterministic = make_policy(PolicySpec("checkpoint", checkpoint=str(path)))  # random x_T: differs
    deterministic.seed(3)
    deterministic.reset(None)
    assert not np.array_equal(deterministic.act(obs), actions[0])


def test_zero_init_sampling_needs_a_diffusion_agent(tmp_path: Path) -> None:
    from agents.checkpoint import save_checkpoint
    from agents.registry import build_agent, resolve_agent
    from libero_gym.env_config import EnvConfig
    from stable_baselines3.common.vec_env import DummyVecEnv

    from libero_gym.testing import FakeLiberoEnv

    spec = resolve_agent("gaussian-ppo")
    env = DummyVecEnv([lambda: FakeLiberoEnv("state")])
    model = build_agent(spec, env, spec.make_config({"n_steps": 16, "batch_size": 16}), seed=0, device="cpu")
    env_config = EnvConfig("LIBERO-Goal-v0", (0,), "state")
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=env_config)
    env.close()
    with pytest.raises(InvalidInputError, match="zero-init.*needs a diffusion agent.*gaussian-ppo"):
        check_policy_spec(PolicySpec("checkpoint", checkpoint=str(path), sampling="zero-init"))
    with pytest.raises(InvalidInputError, match="zero-init.*needs a diffusion agent"):
        make_policy(PolicySpec("checkpoint", checkpoint=str(path), sampling="zero-init"))
    with pytest.raises(InvalidInputError, match=r"sampling must be one of \[.deterministic., .stochastic., .zero-init"):
        check_policy_spec(PolicySpec("checkpoint", checkpoint=str(path), sampling="greedy"))




def test_sampling_modes_come_from_the_agent_class(tmp_path: Path) -> None:
    """A ``module:Class`` agent is judged by what its class can do, not by its name."""
    from agents.agent_configs import SAMPLINGS, agent_samplings, check_agent_sampling
    from agents.diffusion_ppo import DiffusionPPO
    from stable_baselines3 import PPO

    class SubDiffusion(DiffusionPPO):
        pass

    assert agent_samplings(DiffusionPPO) == agent_samplings(SubDiffusion) == SAMPLINGS
    assert agent_samplings(PPO) == ("deterministic", "stochastic")
    check_agent_sampling(SubDiffusion, "zero-init", "my.module:SubDiffusion")
    with pytest.raises(InvalidInputError, match=r"'zero-init' needs a diffusion agent; PPO acts in \['deterministic', 'stochastic'\]"):
        check_agent_sampling(PPO, "zero-init", "PPO")
