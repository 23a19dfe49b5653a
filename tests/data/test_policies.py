"""Policies that collect runs: registry, errors, a trained checkpoint through agents.checkpoint."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from libero_gym.data.policies import CheckpointPolicy, PolicySpec, RandomPolicy, make_policy
from libero_gym.errors import CheckpointError, InvalidInputError


def test_random_policy_is_seeded_per_episode() -> None:
    policy = make_policy(PolicySpec("random"))
    assert isinstance(policy, RandomPolicy)
    policy.seed(3)
    first = [policy.act({}) for _ in range(4)]
    policy.seed(3)
    again = [policy.act({}) for _ in range(4)]
    np.testing.assert_array_equal(first, again)
    assert all(a.shape == (7,) and np.all(np.abs(a) <= 1) for a in first)


def test_unknown_and_incomplete_policies_are_user_errors(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="policy must be one of"):
        make_policy(PolicySpec("nope"))
    with pytest.raises(InvalidInputError, match="needs --checkpoint"):
        make_policy(PolicySpec("checkpoint"))
    with pytest.raises(InvalidInputError, match="cannot import policy"):
        make_policy(PolicySpec("no_such_module_xyz:Policy"))
    with pytest.raises(CheckpointError):
        make_policy(PolicySpec("checkpoint", checkpoint=str(tmp_path / "missing")))


def test_checkpoint_policy_acts_like_the_saved_agent(tmp_path: Path) -> None:
    pytest.importorskip("agents.checkpoint")
    from agents.checkpoint import EnvInfo, build_agent, save_checkpoint
    from agents.registry import resolve_agent
    from stable_baselines3.common.vec_env import DummyVecEnv

    from libero_gym.testing import FakeLiberoEnv

    spec = resolve_agent("gaussian-ppo")
    env = DummyVecEnv([lambda: FakeLiberoEnv("state")])
    model = build_agent(spec, env, spec.make_config({"n_steps": 16, "batch_size": 16}), seed=0, device="cpu")
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=EnvInfo("LIBERO-Goal-v0", (0,), "state"))
    policy = make_policy(PolicySpec("checkpoint", checkpoint=str(path)))
    assert isinstance(policy, CheckpointPolicy) and policy.obs_mode == "state"
    obs, _ = FakeLiberoEnv("state").reset(seed=5)
    policy.reset(None)
    action = policy.act(obs)
    expected, _ = model.predict(obs, deterministic=True)
    assert action.shape == (7,)
    np.testing.assert_allclose(action, np.asarray(expected, dtype=np.float64).reshape(7), rtol=1e-6)
    env.close()


@pytest.mark.parametrize("deterministic", [True, False], ids=["deterministic", "stochastic"])
def test_checkpoint_policy_replays_an_episode_from_its_seed(tmp_path: Path, deterministic: bool) -> None:
    """A diffusion policy samples x_T even in deterministic mode: collect's per-episode seed fixes it."""
    from agents.checkpoint import EnvInfo, build_agent, save_checkpoint
    from agents.registry import resolve_agent

    from libero_gym.testing import FakeLiberoEnv
    from tests.agents.conftest import SMALL_DIFFUSION, fake_vec

    spec = resolve_agent("diffusion-ppo")
    config = spec.make_config(SMALL_DIFFUSION)
    env = fake_vec(1, chunk_size=config.policy.horizon_steps, obs_mode="state")
    model = build_agent(spec, env, config, seed=0, device="cpu")
    path = save_checkpoint(model, tmp_path / "ck", agent="diffusion-ppo", env=EnvInfo("LIBERO-Goal-v0", (0,), "state"))
    env.close()
    policy = make_policy(PolicySpec("checkpoint", checkpoint=str(path), deterministic=deterministic))
    obs, _ = FakeLiberoEnv("state").reset(seed=5)

    def episode(seed: int) -> np.ndarray:
        policy.seed(seed)
        policy.reset(None)
        return np.stack([policy.act(obs) for _ in range(5)])

    first = episode(3)
    np.testing.assert_array_equal(first, episode(3))
    assert not np.array_equal(first, episode(4))
