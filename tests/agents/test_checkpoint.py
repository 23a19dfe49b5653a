"""Checkpoint format: round trips, wrong agent/env errors, atomic writes and fallback."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from agents.checkpoint import AGENT_FILE, PARAMS_FILE, check_compatible, load_agent, read_checkpoint, save_checkpoint
from agents.registry import build_agent, resolve_agent
from agents.run_folder import CheckpointManager
from libero_gym.env_config import EnvConfig
from libero_gym.errors import CheckpointError
from tests.agents.conftest import SMALL_DIFFUSION, SMALL_GAUSSIAN, fake_vec

ENV = EnvConfig("LIBERO-Goal-v0", (0,), "state")


def _trained(agent: str, config: dict, steps: int, obs_mode: str = "state", image_size: int = 32):
    spec = resolve_agent(agent)
    env = fake_vec(2, obs_mode=obs_mode, image_size=image_size)
    cfg = spec.make_config(config) if spec.protocol == "config" else config
    model = build_agent(spec, env, cfg, seed=0, device="cpu")
    model.learn(steps)
    return model, env


def _predict(model, env) -> np.ndarray:
    """``predict(deterministic=True)`` from fixed RNG states (the diffusion policy's x_T is random)."""
    env.seed(11)
    obs = env.reset()
    torch.manual_seed(3)
    actions, _ = model.predict(obs, episode_start=np.ones(env.num_envs, bool), deterministic=True)
    return actions


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_gaussian_round_trip(tmp_path, suffix: str) -> None:
    model, env = _trained("gaussian-ppo", SMALL_GAUSSIAN, 128)
    path = save_checkpoint(model, tmp_path / f"ck{suffix}", agent="gaussian-ppo", env=ENV)
    loaded, meta = load_agent(path, env, agent="gaussian-ppo", env_id="LIBERO-Goal-v0", device="cpu")
    np.testing.assert_array_equal(_predict(model, env), _predict(loaded, env))
    assert loaded.num_timesteps == model.num_timesteps == meta["num_timesteps"] == 128
    assert loaded._n_updates == model._n_updates > 0
    # optimizer state is part of the checkpoint (resume)
    before, after = model.policy.optimizer.state_dict(), loaded.policy.optimizer.state_dict()
    for key in before["state"]:
        torch.testing.assert_close(before["state"][key]["exp_avg"], after["state"][key]["exp_avg"])
    assert meta["agent"] == "gaussian-ppo" and meta["env"]["env_id"] == "LIBERO-Goal-v0"
    assert meta["config"]["n_steps"] == 32 and meta["observation_space"]["type"] == "Dict"
    assert {"torch", "stable-baselines3"} <= set(meta["versions"])
    env.close()


def test_gaussian_pixels_round_trip(tmp_path) -> None:
    """gaussian-ppo on pixel observations (SB3's CNN on each camera): updates, saves and loads to the same
    actions. (The same agent on real LIBERO pixels: test_train_e2e.py::test_gaussian_pixels, slow; the
    train command on real pixels: test_diffusion_ppo[pixels].)"""
    config = {**SMALL_GAUSSIAN, "n_steps": 16, "batch_size": 16}
    model, env = _trained("gaussian-ppo", config, 64, obs_mode="pixels", image_size=64)  # SB3's NatureCNN: >= 36 px
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=EnvConfig("LIBERO-Goal-v0", (0,), "pixels"))
    loaded, meta = load_agent(path, env, agent="gaussian-ppo", device="cpu")
    np.testing.assert_array_equal(_predict(model, env), _predict(loaded, env))
    assert loaded.num_timesteps == 64 and loaded._n_updates == model._n_updates > 0
    assert meta["observation_space"]["spaces"]["agentview_image"]["shape"] == [64, 64, 3]
    env.close()


def test_params_are_plain_tensors(tmp_path) -> None:
    """params.pt loads with weights_only=True (no pickled objects) and agent.json is JSON."""
    model, env = _trained("gaussian-ppo", SMALL_GAUSSIAN, 64)
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=ENV)
    data = torch.load(path / PARAMS_FILE, weights_only=True)
    assert {"policy", "policy.optimizer"} <= set(data["params"])
    json.loads((path / AGENT_FILE).read_text())
    env.close()


def test_load_without_env(tmp_path) -> None:
    """A checkpoint alone is enough to predict (spaces rebuilt from agent.json)."""
    model, env = _trained("gaussian-ppo", SMALL_GAUSSIAN, 64)
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=ENV)
    loaded, _ = load_agent(path, device="cpu")
    np.testing.assert_array_equal(_predict(model, env), _predict(loaded, env))
    env.close()


def test_sac_round_trip_with_torch_variables(tmp_path) -> None:
    model, env = _trained("stable_baselines3:SAC", {"buffer_size": 500, "learning_starts": 16, "batch_size": 16}, 48)
    with torch.no_grad():
        model.log_ent_coef.fill_(-1.234)
    path = save_checkpoint(model, tmp_path / "ck", agent="stable_baselines3:SAC", env=ENV)
    loaded, meta = load_agent(path, env, agent="stable_baselines3:SAC", device="cpu")
    assert meta["config"]["buffer_size"] == 500
    assert float(loaded.log_ent_coef.detach()) == pytest.approx(-1.234)
    np.testing.assert_array_equal(_predict(model, env), _predict(loaded, env))
    env.close()


def test_diffusion_round_trip(tmp_path) -> None:
    model, env = _trained("diffusion-ppo", SMALL_DIFFUSION, 64)
    path = save_checkpoint(model, tmp_path / "ck", agent="diffusion-ppo", env=ENV)
    loaded, _ = load_agent(path, env, agent="diffusion-ppo", device="cpu")
    np.testing.assert_array_equal(_predict(model, env), _predict(loaded, env))
    assert loaded.num_timesteps == model.num_timesteps
    env.close()


def test_wrong_agent_and_env_are_named(tmp_path) -> None:
    model, env = _trained("gaussian-ppo", SMALL_GAUSSIAN, 32)
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=ENV)
    with pytest.raises(CheckpointError, match="gaussian-ppo.*not 'diffusion-ppo'"):
        load_agent(path, env, agent="diffusion-ppo")
    with pytest.raises(CheckpointError, match="stable_baselines3:SAC"):
        load_agent(path, env, agent="stable_baselines3:SAC")
    with pytest.raises(CheckpointError, match="LIBERO-Goal-v0.*not 'LIBERO-Spatial-v0'"):
        load_agent(path, env, env_id="LIBERO-Spatial-v0")
    pixels = fake_vec(1, obs_mode="pixels", image_size=32)
    with pytest.raises(CheckpointError, match="obs_mode 'state'.*agentview_image"):
        load_agent(path, pixels)
    meta, _ = read_checkpoint(path)
    check_compatible(meta, agent="gaussian-ppo", env_id="LIBERO-Goal-v0", observation_space=env.observation_space)
    env.close()
    pixels.close()


def test_corrupt_checkpoints(tmp_path) -> None:
    model, env = _trained("gaussian-ppo", SMALL_GAUSSIAN, 32)
    manager = CheckpointManager(tmp_path / "checkpoints", keep=2)
    first = manager.save(model, agent="gaussian-ppo", env=ENV)
    model.num_timesteps += 100
    second = manager.save(model, agent="gaussian-ppo", env=ENV)
    model.num_timesteps += 100
    third = manager.save(model, agent="gaussian-ppo", env=ENV)
    assert manager.paths() == [second, third] and not first.exists()  # keeps the newest two
    assert not list((tmp_path / "checkpoints").glob(".tmp-*"))
    blob = (third / PARAMS_FILE).read_bytes()
    (third / PARAMS_FILE).write_bytes(blob[: len(blob) // 2])  # a truncated newest checkpoint
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        read_checkpoint(third)
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        assert manager.latest_valid() == second
    with pytest.warns(UserWarning):
        _, meta = load_agent(tmp_path, env)  # a run folder resolves to its newest valid checkpoint
    assert meta["num_timesteps"] == model.num_timesteps - 100
    (tmp_path / "junk").mkdir()
    with pytest.raises(CheckpointError, match="neither a checkpoint"):
        read_checkpoint(tmp_path / "junk")
    (second / AGENT_FILE).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        read_checkpoint(second)
    env.close()


def test_data_package_loads_our_checkpoints(tmp_path) -> None:
    """agents.policy's CheckpointPolicy (collect --policy checkpoint) acts from our format."""
    from agents.policy import CheckpointPolicy
    from libero_gym.testing import FakeLiberoEnv

    model, env = _trained("gaussian-ppo", SMALL_GAUSSIAN, 32)
    path = save_checkpoint(model, tmp_path / "ck", agent="gaussian-ppo", env=ENV)
    policy = CheckpointPolicy(str(path))
    assert policy.obs_mode == "state"
    obs, _ = FakeLiberoEnv().reset(seed=0)
    action = policy.act(obs)
    assert action.shape == (7,)
    np.testing.assert_allclose(action, model.predict(obs, deterministic=True)[0], rtol=1e-6)
    env.close()
