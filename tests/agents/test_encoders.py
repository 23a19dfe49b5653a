"""Observation encoders on FakeLiberoEnv's spaces: state MLP, FiLM-ResNet per camera, layouts, errors."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from gymnasium import spaces

from agents.diffusion_policy import DiffusionPolicy
from agents.encoders import EncoderConfig, PixelEncoder, StateEncoder, make_encoder, obs_as_tensor
from libero_gym.errors import InvalidInputError
from tests.agents.test_diffusion_policy import SMALL, _observations



@pytest.mark.parametrize("obs_mode", ["state", "pixels", "both"])
def test_encoders_on_fake_env(obs_mode: str) -> None:
    env, obs = _observations(obs_mode, image_size=32)
    encoder = make_encoder(env.observation_space, SMALL.encoder)
    assert isinstance(encoder, StateEncoder if obs_mode == "state" else PixelEncoder)
    obs_t = obs_as_tensor(obs, "cpu")
    features = encoder(obs_t)
    assert features.shape == (6, encoder.output_dim) and torch.isfinite(features).all()
    if obs_mode != "state":
        # SB3's VecTransposeImage hands images channel-first: same features.
        transposed = {k: v.permute(0, 3, 1, 2) if v.ndim == 4 else v for k, v in obs_t.items()}
        torch.testing.assert_close(encoder(transposed), features)
        # The images matter (the goal is drawn in them).
        _, other = _observations(obs_mode, seed=100, image_size=32)
        moved = dict(obs_t, agentview_image=obs_as_tensor(other, "cpu")["agentview_image"])
        assert not torch.allclose(encoder(moved), features)
    policy = DiffusionPolicy(env.observation_space, SMALL)
    actions, chain = policy.sample(obs_t)
    assert actions.shape == (6, 4, 7)
    loss = policy.bc_loss(obs_t, actions)
    loss.backward()
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_make_encoder_rejects_non_libero_spaces() -> None:
    with pytest.raises(InvalidInputError, match="proprio"):
        make_encoder(spaces.Box(-1, 1, (3,)), EncoderConfig())


@pytest.mark.parametrize("obs_mode", ["state", "pixels"])
@pytest.mark.parametrize("velocities", [False, True])
def test_velocities_reach_the_network_only_when_asked(obs_mode: str, velocities: bool) -> None:
    """By default the policy cannot see proprio's joint and finger velocities (nor copy its momentum)."""
    from libero_gym.spaces import PROPRIO_SLICES

    env, obs = _observations(obs_mode, image_size=32)
    encoder = make_encoder(env.observation_space, dataclasses.replace(SMALL.encoder, velocities=velocities))
    expected = 39 if velocities else 30
    assert encoder.normalizer.low.shape[0] - (env.observation_space.spaces.get("object", spaces.Box(0, 1, (0,))).shape[0]) == expected
    encoder.fit_normalizer(obs)
    obs_t = obs_as_tensor(obs, "cpu")
    features = encoder(obs_t)
    for key in ("joint_vel", "gripper_qvel"):
        moved = obs_t["proprio"].clone()
        moved[:, PROPRIO_SLICES[key]] += 0.5
        changed = not torch.allclose(encoder(dict(obs_t, proprio=moved)), features)
        assert changed == velocities, key
    moved = obs_t["proprio"].clone()
    moved[:, PROPRIO_SLICES["eef_pos"]] += 0.05
    assert not torch.allclose(encoder(dict(obs_t, proprio=moved)), features)
