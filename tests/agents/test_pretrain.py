"""``pretrain`` on a LIBERO-layout file recorded from a real LIBERO task, then ``train --init-from``."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import cli
from agents.checkpoint import load_agent, read_checkpoint
from agents.configs import PretrainConfig
from agents.pretrain import action_chunks, pretrain
from tests.agents.conftest import SMALL_DIFFUSION, agent_config, record_controller_demos

STEPS = 12
"""Steps per recorded demo: enough for several chunks, cheap to replay."""


def test_action_chunks_pad_with_last_action() -> None:
    actions = np.arange(3 * 7, dtype=np.float64).reshape(3, 7) / 100
    chunks = action_chunks(actions, 4)
    assert chunks.shape == (3, 4, 7) and chunks.dtype == np.float32
    np.testing.assert_allclose(chunks[0], actions[[0, 1, 2, 2]], rtol=1e-6)
    np.testing.assert_allclose(chunks[2], actions[[2, 2, 2, 2]], rtol=1e-6)
    assert action_chunks(np.full((2, 7), 5.0), 2).max() == 1.0  # clamped to the action range


@pytest.fixture(scope="module")
def demos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The recorded file, shared (read only) by the tests of this module."""
    path = tmp_path_factory.mktemp("demos") / "demos.hdf5"
    record_controller_demos(path, steps=STEPS)
    return path


def test_pretrain_then_init_from(demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = demos
    result = pretrain(
        PretrainConfig(
            dataset=(data,), run_dir=tmp_path / "bc", agent=agent_config("diffusion-ppo", SMALL_DIFFUSION), epochs=60, batch_size=8, learning_rate=1e-3,
            progress=False, device="cpu", lr_schedule="constant",
        )  # fmt: skip
    )
    assert result.env_id == "LIBERO-Goal-v0" and result.task_ids == (0,) and result.samples == 2 * STEPS
    assert result.final_loss < 0.5 * result.first_loss, (result.first_loss, result.final_loss)
    meta, params = read_checkpoint(result.checkpoint)
    assert meta["agent"] == "diffusion-ppo" and meta["pretrain"]["demos"] == 2
    model, _ = load_agent(result.checkpoint, device="cpu")  # eval-ready without an env
    # RL fine-tunes a copy of the cloned network
    for a, b in zip(model.policy.actor.state_dict().values(), model.policy.actor_ft.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b)

    # train --init-from: starts from the cloned weights, with the checkpoint's agent config
    run = tmp_path / "ft"
    argv = [
        "train", "--agent", "diffusion-ppo", "--env", "LIBERO-Goal-v0", "--task-id", "0",
        "--init-from", str(result.checkpoint),
        "--total-timesteps", "32", "--num-envs", "1", "--vectorization", "sync", "--max-episode-steps", "16",
        "--agent.n-chunks", "8", "--agent.actor-lr", "1e-9", "--agent.critic-lr", "1e-9", "--resume", str(run),
        "--no-progress", "--device", "cpu",
    ]  # fmt: skip  (--resume with no checkpoint yet: a new run, from --init-from; the Makefile's rerunnable form)
    assert cli.main(argv) == 0
    assert "trained diffusion-ppo" in capsys.readouterr().out
    assert read_checkpoint(run)[0]["env"]["chunk_size"] == 4  # BC on (7,) actions, fine-tuned on Ta = 4 chunks
    resolved = json.loads((run / "config.json").read_text())["agent"]["config"]
    # the checkpoint's config is the base, --agent.* flags override it
    assert resolved["policy"]["mlp_dims"] == [64, 64] and resolved["n_chunks"] == 8
    _, tuned = read_checkpoint(run)
    pre = params["params"]["policy"]
    post = tuned["params"]["policy"]
    frozen = [k for k in pre if k.startswith("actor.")]
    assert frozen and all(torch.equal(pre[k], post[k]) for k in frozen)  # the pre-trained network itself is untouched
    # the same command again, further: it resumes the run (--init-from only starts one)
    argv[argv.index("--total-timesteps") + 1] = "64"
    assert cli.main(argv) == 0
    assert "64 env steps (32 this run)" in capsys.readouterr().out


def test_pretrain_rejects_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["pretrain", "--dataset", str(tmp_path / "missing.hdf5"), "--run-dir", str(tmp_path / "bc")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "bad.hdf5").write_text("not hdf5")
    assert cli.main(["pretrain", "--dataset", str(tmp_path / "bad.hdf5"), "--run-dir", str(tmp_path / "bc")]) == 2
    assert capsys.readouterr().err.startswith("error:")
    argv = ["pretrain", "--dataset", str(tmp_path / "bad.hdf5"), "--run-dir", str(tmp_path / "bc")]
    assert cli.main([*argv, "--agent", "stable_baselines3:SAC"]) == 2
    err = capsys.readouterr().err
    assert "behaviour-cloned" in err and "diffusion-ppo" in err and "gaussian-ppo" in err


def test_pretrain_gaussian_then_init_from(demos: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The Gaussian baseline from the same demos: fitted scalings and cloned weights reach the PPO run."""
    data = demos
    result = pretrain(
        PretrainConfig(
            dataset=(data,), run_dir=tmp_path / "bc", agent=agent_config("gaussian-ppo", {"net_arch": [32, 32]}),
            epochs=40, batch_size=8, learning_rate=1e-3, progress=False, device="cpu",
        )  # fmt: skip
    )
    assert result.final_loss < 0.5 * result.first_loss, (result.first_loss, result.final_loss)
    meta, params = read_checkpoint(result.checkpoint)
    assert meta["agent"] == "gaussian-ppo" and meta["pretrain"]["ema_max_decay"] > 0
    pre = params["params"]["policy"]
    # The demos move +x at 0.5 with the gripper open: the action scaling is fitted on exactly that.
    np.testing.assert_allclose(pre["action_normalizer.low"].numpy(), [0.5, 0, 0, 0, 0, 0, -1], atol=1e-6)
    assert not torch.equal(pre["features_extractor.normalizer.low"], -torch.ones_like(pre["features_extractor.normalizer.low"]))
    model, _ = load_agent(result.checkpoint, device="cpu")
    obs = gym.make("LIBERO-Goal-v0", task_id=0).observation_space.sample()
    action, _ = model.predict(obs, deterministic=True)
    np.testing.assert_allclose(action, [0.5, 0, 0, 0, 0, 0, -1], atol=0.05)  # the clone acts like the demos

    run = tmp_path / "ft"
    argv = [
        "train", "--agent", "gaussian-ppo", "--env", "LIBERO-Goal-v0", "--task-id", "0",
        "--init-from", str(result.checkpoint), "--total-timesteps", "32", "--num-envs", "1",
        "--vectorization", "sync", "--max-episode-steps", "16", "--agent.n-steps", "32", "--agent.batch-size", "32",
        "--run-dir", str(run), "--no-progress", "--device", "cpu",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    _, tuned = read_checkpoint(run)
    for key in ("action_normalizer.low", "action_normalizer.high", "features_extractor.normalizer.high"):
        assert torch.equal(tuned["params"]["policy"][key], pre[key]), key
