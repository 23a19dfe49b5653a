"""Observation and action scaling: the Normalizer, and how both agents apply and save it."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch

from agents.checkpoint import load_agent, save_checkpoint
from libero_gym.env_config import EnvConfig
from agents.diffusion_policy import DiffusionPolicy
from agents.diffusion_ppo import DiffusionPPO, DiffusionPPOConfig
from agents.encoders import obs_as_tensor
from agents.gaussian_ppo import GaussianPPO, GaussianPPOConfig
from agents.normalization import MIN_HALF_RANGE, Normalizer
from agents.registry import resolve_agent
from tests.agents.conftest import SMALL_DIFFUSION, SMALL_GAUSSIAN, fake_vec

ENV = EnvConfig("LIBERO-Goal-v0", (0,), "state")


def test_normalizer_maps_the_data_range_onto_minus_one_one() -> None:
    data = np.array([[0.0, 5.0, 2.0], [1.0, 7.0, 2.0], [0.5, 6.0, 2.0]], dtype=np.float32)
    norm = Normalizer(3)
    assert norm.is_identity
    x = torch.as_tensor(data)
    assert torch.equal(norm.normalize(x), x)  # identity: bit-exact
    norm.fit(data)
    y = norm.normalize(x)
    torch.testing.assert_close(y[:, :2].min(0).values, torch.tensor([-1.0, -1.0]))
    torch.testing.assert_close(y[:, :2].max(0).values, torch.tensor([1.0, 1.0]))
    # A constant dimension is centred, its later deviations scaled by 1 / MIN_HALF_RANGE, not 1e6.
    assert torch.all(y[:, 2] == 0)
    shifted = norm.normalize(torch.tensor([[0.0, 5.0, 2.0 + MIN_HALF_RANGE]]))
    torch.testing.assert_close(shifted[0, 2], torch.tensor(1.0), rtol=1e-3, atol=1e-3)  # float32 at 2.0
    torch.testing.assert_close(norm.unnormalize(y), x)


def test_normalizer_loads_old_state_dicts_as_identity() -> None:
    fitted = Normalizer(2)
    fitted.fit(np.array([[0.0, 1.0], [2.0, 3.0]]))
    fresh = Normalizer(2)
    fresh.load_state_dict(fitted.state_dict())
    assert torch.equal(fresh.low, fitted.low) and torch.equal(fresh.high, fitted.high)
    before = Normalizer(2)
    before.fit(np.array([[0.0, 1.0], [2.0, 3.0]]))
    before.load_state_dict({})  # a checkpoint from before normalisation existed
    assert before.is_identity


def _demos(env: Any, n: int = 64, horizon: int = 4) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Observations of a fake env and actions with small, offset ranges per dimension [n, Ta, 7]."""
    env.seed(0)
    obs = env.reset()
    observations = {key: np.repeat(value, n // len(value), axis=0) for key, value in obs.items()}
    observations["proprio"] = observations["proprio"] + np.linspace(0, 0.01, n)[:, None].astype(np.float32)
    # Actions that the observation determines (through the proprio offset), small ranges in the rotation dims.
    t = np.linspace(-1, 1, n)[:, None, None] * np.ones((1, horizon, 1))
    actions = (t * np.array([0.5, -0.5, 0.4, 0.1, 0.1, -0.1, 1.0]) + 0.05).astype(np.float32)
    return observations, np.clip(actions, -1, 1)


def test_diffusion_policy_chain_runs_in_normalised_space() -> None:
    env = fake_vec(2)
    model = DiffusionPPO(env, DiffusionPPOConfig(**SMALL_DIFFUSION), seed=0, device="cpu")
    observations, actions = _demos(env)
    model.fit_normalization(observations, actions)
    policy: DiffusionPolicy = model.policy
    low, high = actions.reshape(-1, 7).min(0), actions.reshape(-1, 7).max(0)
    np.testing.assert_allclose(policy.action_normalizer.low.numpy(), low)
    # Both networks and the critic scale observations the same way.
    for encoder in (policy.actor.encoder, policy.actor_ft.encoder, model.critic.encoder):
        assert not encoder.normalizer.is_identity
        torch.testing.assert_close(encoder.normalizer.low, policy.actor.encoder.normalizer.low)
    obs_t = obs_as_tensor({k: v[:8] for k, v in observations.items()}, "cpu")
    torch.manual_seed(0)
    executed, chain = policy.sample(obs_t)
    # Executed actions are the chain's last step mapped back to env units: inside the demos' range.
    torch.testing.assert_close(executed, policy.action_normalizer.unnormalize(chain[:, -1].clamp(-1, 1)).clamp(-1, 1))
    assert np.all(executed.numpy() >= low - 1e-6) and np.all(executed.numpy() <= high + 1e-6)
    # BC targets are normalised: a chunk at the demos' centre is x0 = 0.
    centre = torch.as_tensor((low + high) / 2).expand(8, 4, 7)
    torch.testing.assert_close(policy.action_normalizer.normalize(centre), torch.zeros(8, 4, 7))


def test_diffusion_save_load_keeps_normalisation_and_predict(tmp_path: Any) -> None:
    env = fake_vec(2)
    model = DiffusionPPO(env, DiffusionPPOConfig(**SMALL_DIFFUSION), seed=0, device="cpu")
    model.fit_normalization(*_demos(env))
    path = save_checkpoint(model, tmp_path / "ck", agent="diffusion-ppo", env=ENV)
    loaded, _ = load_agent(path, env, agent="diffusion-ppo", device="cpu")
    obs = env.reset()
    for mode in ("deterministic", "stochastic", "zero-init"):
        torch.manual_seed(5)
        expected = model.predict_chunk(obs, mode=mode)
        torch.manual_seed(5)
        np.testing.assert_array_equal(loaded.predict_chunk(obs, mode=mode), expected)
    # init-from: the fine-tuning critic gets the policy's scaling
    fresh = DiffusionPPO(env, DiffusionPPOConfig(**SMALL_DIFFUSION), seed=1, device="cpu")
    fresh.load_pretrained_policy(model.policy.state_dict())
    torch.testing.assert_close(fresh.critic.encoder.normalizer.high, model.policy.actor.encoder.normalizer.high)


def test_old_diffusion_checkpoint_loads_with_identity_scaling(tmp_path: Any) -> None:
    env = fake_vec(2)
    model = DiffusionPPO(env, DiffusionPPOConfig(**SMALL_DIFFUSION), seed=0, device="cpu")
    params = model.get_parameters()
    for name in ("policy", "critic"):  # what a checkpoint written before normalisation holds
        params[name] = {k: v for k, v in params[name].items() if "normalizer" not in k}
    other = DiffusionPPO(env, DiffusionPPOConfig(**SMALL_DIFFUSION), seed=1, device="cpu")
    other.fit_normalization(*_demos(env))
    other.set_parameters(params, exact_match=True)
    assert other.policy.action_normalizer.is_identity and other.policy.actor.encoder.normalizer.is_identity
    obs = env.reset()
    torch.manual_seed(2)
    expected = model.predict_chunk(obs, mode="deterministic")
    torch.manual_seed(2)
    np.testing.assert_array_equal(other.predict_chunk(obs, mode="deterministic"), expected)


def test_gaussian_acts_in_normalised_space(tmp_path: Any) -> None:
    env = fake_vec(2)
    model = GaussianPPO(env, GaussianPPOConfig(**SMALL_GAUSSIAN), seed=0, device="cpu")
    observations, chunks = _demos(env, horizon=1)
    model.fit_normalization(observations, chunks)
    low, high = chunks.reshape(-1, 7).min(0), chunks.reshape(-1, 7).max(0)
    obs = env.reset()
    actions, _ = model.predict(obs, deterministic=True)
    raw, _ = super(type(model.policy), model.policy).predict(obs, deterministic=True)  # SB3's, normalised
    np.testing.assert_allclose(actions, np.clip(raw * (high - low) / 2 + (high + low) / 2, -1, 1), rtol=1e-5, atol=1e-6)
    # The std starts at DPPO's Gaussian baseline's 0.1 and is clamped to [min_std, max_std].
    dist = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0])
    torch.testing.assert_close(dist.distribution.stddev, torch.full_like(dist.distribution.stddev, 0.1))
    with torch.no_grad():
        model.policy.log_std.fill_(5.0)
    dist = model.policy.get_distribution(model.policy.obs_to_tensor(obs)[0])
    torch.testing.assert_close(dist.distribution.stddev, torch.full_like(dist.distribution.stddev, 0.2))
    # The training env receives env-unit actions.
    sent: list[np.ndarray] = []
    inner = model.env.venv
    original = inner.step_async
    inner.step_async = lambda a: (sent.append(np.array(a)), original(a))[1]  # type: ignore[method-assign]
    model.env.step(np.zeros((2, 7), np.float32))
    np.testing.assert_allclose(sent[0], np.tile((high + low) / 2, (2, 1)), atol=1e-6)
    # Save/load keeps the scaling and the deterministic predict.
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=ENV)
    loaded, _ = load_agent(path, env, agent="gaussian-ppo", device="cpu")
    np.testing.assert_array_equal(loaded.predict(obs, deterministic=True)[0], actions)
    standalone, _ = load_agent(path, device="cpu")  # collect's CheckpointPolicy path
    np.testing.assert_array_equal(standalone.predict(obs, deterministic=True)[0], actions)


@pytest.mark.parametrize("agent", ["diffusion-ppo", "gaussian-ppo"])
def test_bc_protocol_lowers_the_loss(agent: str) -> None:
    """What ``pretrain`` calls: fit the scalings, then the loss falls on fixed demos."""
    env = fake_vec(2)
    spec = resolve_agent(agent)
    config = spec.make_config(SMALL_DIFFUSION if agent == "diffusion-ppo" else SMALL_GAUSSIAN)
    model = spec.load_class()(env, config, seed=0, device="cpu")
    observations, chunks = _demos(env, horizon=model.bc_horizon)
    model.fit_normalization(observations, chunks)
    module = model.bc_module()
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-3)
    obs_t, chunks_t = obs_as_tensor(observations, "cpu"), torch.as_tensor(chunks)
    losses = []
    torch.manual_seed(0)
    for _ in range(150):
        loss = model.bc_loss(obs_t, chunks_t)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert np.mean(losses[-10:]) < 0.6 * np.mean(losses[:10]), (losses[:3], losses[-3:])
    model.end_pretraining()
    if agent == "diffusion-ppo":
        for a, b in zip(model.policy.actor.parameters(), model.policy.actor_ft.parameters(), strict=True):
            assert torch.equal(a, b)


def test_gaussian_config_rejects_bad_std_clamps() -> None:
    with pytest.raises(ValueError, match="min_std"):
        dataclasses.replace(GaussianPPOConfig(), min_std=0.3, max_std=0.2)


def test_bounded_normalizer_floors_and_clips_observations() -> None:
    """Observation scaling: a near-constant feature is not blown up, and nothing leaves +-OBS_BOUND."""
    from agents.normalization import OBS_BOUND, OBS_MIN_HALF_RANGE

    normalizer = Normalizer(2, bounded=True)
    normalizer.fit(np.array([[0.0, 0.999], [1.0, 1.001]]))  # dim 1 varies by +-0.001 in the demos
    assert torch.allclose(normalizer.half_range, torch.tensor([0.5, OBS_MIN_HALF_RANGE]))
    # A 3-degree tilt of a quaternion value (~0.026) stays a few units; a large one is clipped.
    scaled = normalizer.normalize(torch.tensor([[0.5, 1.026], [0.5, 1.5], [100.0, -3.0]]))
    assert abs(float(scaled[0, 1]) - 2.6) < 1e-4
    assert float(scaled.abs().max()) == OBS_BOUND
    # Action scaling keeps its fine floor and is unclipped (the inverse must hold).
    actions = Normalizer(1)
    actions.fit(np.array([[0.0], [0.002]]))
    assert torch.allclose(actions.unnormalize(actions.normalize(torch.tensor([[5.0]]))), torch.tensor([[5.0]]))


def test_actor_and_critic_may_see_different_inputs(tmp_path: Any) -> None:
    """The critic fits its own scaling: it may take the velocities the policy does not."""
    env = fake_vec(2)
    config = dict(SMALL_DIFFUSION, critic_encoder={**SMALL_DIFFUSION["critic_encoder"], "velocities": True})
    model = DiffusionPPO(env, DiffusionPPOConfig(**config), seed=0, device="cpu")
    model.fit_normalization(*_demos(env))
    assert model.critic.encoder.normalizer.low.shape[0] == model.policy.actor.encoder.normalizer.low.shape[0] + 9
    path = save_checkpoint(model, tmp_path / "ck", agent="diffusion-ppo", env=ENV)
    loaded, _ = load_agent(path, env, agent="diffusion-ppo", device="cpu")
    torch.testing.assert_close(loaded.critic.encoder.normalizer.low, model.critic.encoder.normalizer.low)
    # Fine-tuning from a BC policy: the critic's scaling comes from the policy's, column by column.
    fresh = DiffusionPPO(env, DiffusionPPOConfig(**config), seed=1, device="cpu")
    fresh.load_pretrained_policy(model.policy.state_dict())
    actor, critic = model.policy.actor.encoder.normalizer, fresh.critic.encoder.normalizer
    torch.testing.assert_close(critic.low[:21], actor.low[:21])  # joint pos, cos, sin
    torch.testing.assert_close(critic.low[28:37], actor.low[21:30])  # eef pos, quat, gripper qpos
    torch.testing.assert_close(critic.low[39:], actor.low[30:])  # object
    assert torch.all(critic.low[21:28] == -1)  # joint velocities: the critic's own (identity) scaling
