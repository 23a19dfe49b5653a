"""``train`` and ``eval`` end to end on a real LIBERO task (LIBERO-Goal-v0, task 0).

A few hundred env steps per run, short episodes (max_episode_steps=40) so that
episodes end and rollout/* metrics appear; pixels at 64x64 to keep CPU cost low.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import cli
from agents.checkpoint import read_meta
from agents.configs import EvalConfig, TrainConfig
from agents.evaluate import evaluate
from agents.train import train
from libero_gym.errors import InvalidInputError
from tests.agents.conftest import SMALL_DIFFUSION, SMALL_GAUSSIAN, agent_config

PPO_METRICS = {"rollout/success_rate", "rollout/ep_len_mean", "train/explained_variance"}
GAUSSIAN_METRICS = PPO_METRICS | {
    "train/approx_kl",
    "train/clip_fraction",
    "train/value_loss",
    "train/policy_gradient_loss",
}


def _config(run_dir: Path, agent: str, overrides: dict, obs_mode: str = "state", **kwargs) -> TrainConfig:
    base = dict(
        agent=agent_config(agent, overrides),
        env="LIBERO-Goal-v0",
        task_id=(0,),
        obs_mode=obs_mode,
        image_size=64,
        max_episode_steps=40,
        num_envs=2,
        vectorization="sync",
        total_timesteps=128,
        run_dir=run_dir,
        seed=0,
        checkpoint_every=64,
        progress=False,
        device="cpu",
    )
    base.update(kwargs)
    return TrainConfig(**base)


def _metrics(run_dir: Path) -> set[str]:
    names: set[str] = set()
    for path in (run_dir / "logs").glob("progress*.csv"):
        with open(path) as handle:
            for row in csv.DictReader(handle):
                names |= {key for key, value in row.items() if value not in ("", None)}
    return names


def _check_run(run_dir: Path, agent: str, steps: int, metrics: set[str]) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    assert config["train"]["agent"] == agent and config["agent"]["config"]
    assert list((run_dir / "logs").glob("events.out.tfevents.*"))
    missing = metrics - _metrics(run_dir)
    assert not missing, missing
    meta = read_meta(run_dir)
    assert meta["agent"] == agent and meta["num_timesteps"] == steps and meta["env"]["env_id"] == "LIBERO-Goal-v0"
    assert len(list((run_dir / "checkpoints").glob("step_*"))) == 2  # the newest and the previous one


def test_gaussian_state_train_resume_eval(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    result = train(_config(run_dir, "gaussian-ppo", SMALL_GAUSSIAN, resume=run_dir))  # --resume: nothing yet, starts
    assert result.num_timesteps == 128 and result.episodes >= 2
    _check_run(run_dir, "gaussian-ppo", 128, GAUSSIAN_METRICS)
    n_updates = read_meta(run_dir / "checkpoints" / "step_000000000064")["counters"]["n_updates"]

    # a run killed while writing: the newest checkpoint is truncated, resume falls back to the previous one
    newest = run_dir / "checkpoints" / "step_000000000128" / "params.pt"
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="skipping checkpoint"):
        resumed = train(_config(run_dir, "gaussian-ppo", SMALL_GAUSSIAN, total_timesteps=192, resume=run_dir))
    assert resumed.num_timesteps == 192 and resumed.steps_this_run == 128  # from step 64
    assert read_meta(run_dir)["counters"]["n_updates"] == n_updates + 2 * SMALL_GAUSSIAN["n_epochs"]  # 2 more rollouts
    assert (run_dir / "logs" / "progress-resumed-000000000064.csv").exists()

    videos_dir = tmp_path / "videos"
    out = evaluate(EvalConfig(checkpoint=run_dir, episodes=2, max_episode_steps=10, video_dir=videos_dir, device="cpu"))
    assert [t.episodes for t in out.tasks] == [2] and out.tasks[0].mean_length == 10.0
    assert out.tasks[0].language == "open the middle drawer of the cabinet"
    videos = sorted((tmp_path / "videos").glob("*.mp4"))
    assert len(videos) == 2 and all(v.stat().st_size > 1000 for v in videos)
    with pytest.raises(InvalidInputError, match="'zero-init' needs a diffusion agent; gaussian-ppo acts in"):
        evaluate(EvalConfig(checkpoint=run_dir, episodes=2, device="cpu", sampling=("deterministic", "zero-init")))


# Pixels cost ~0.1-0.3 s per rendered step on these CPUs (both cameras, settle steps included):
# one env, 32 steps, 16-step episodes keep each pixel run near half a minute.
PIXELS = {"num_envs": 1, "total_timesteps": 32, "max_episode_steps": 16, "checkpoint_every": 16}


@pytest.mark.slow  # real pixels through train: test_diffusion_ppo[pixels]; gaussian-ppo on pixels: test_checkpoint.py
def test_gaussian_pixels(tmp_path: Path) -> None:
    overrides = {**SMALL_GAUSSIAN, "n_steps": 16, "batch_size": 16}
    result = train(_config(tmp_path / "run", "gaussian-ppo", overrides, obs_mode="pixels", **PIXELS))
    _check_run(tmp_path / "run", "gaussian-ppo", 32, GAUSSIAN_METRICS)
    assert result.obs_mode == "pixels"
    assert read_meta(tmp_path / "run")["observation_space"]["spaces"]["agentview_image"]["shape"] == [64, 64, 3]


@pytest.mark.parametrize("obs_mode", ["state", "pixels"])
def test_diffusion_ppo(tmp_path: Path, obs_mode: str) -> None:
    # state: 8 chunks x 4 steps x 2 envs = 64 steps per rollout, two rollouts (two PPO updates);
    # pixels: 4 chunks x 4 steps x 1 env = 16 steps per rollout, two rollouts.
    pixels = obs_mode == "pixels"
    overrides = {**SMALL_DIFFUSION, "n_chunks": 4} if pixels else SMALL_DIFFUSION
    steps = 32 if pixels else 128
    extra = PIXELS if pixels else {}
    result = train(_config(tmp_path / "run", "diffusion-ppo", overrides, obs_mode=obs_mode, **extra))
    assert result.num_timesteps == steps
    _check_run(tmp_path / "run", "diffusion-ppo", steps, PPO_METRICS | {"train/approx_kl", "train/clip_fraction"})
    # trained on chunk envs (one env step per Ta = 4 actions); episode lengths in control steps
    meta = read_meta(tmp_path / "run")
    assert meta["env"]["chunk_size"] == 4 and meta["action_space"]["shape"] == [4, 7]
    assert result.ep_len_mean == (16.0 if pixels else 40.0)  # no success in a few random episodes: the step limit
    if not pixels:  # eval of a pixels checkpoint is the same code path; spare the renders
        modes = ("deterministic", "stochastic", "zero-init")
        out = evaluate(EvalConfig(checkpoint=tmp_path / "run", episodes=2, max_episode_steps=8, device="cpu", sampling=modes))
        assert out.tasks[0].episodes == 2 and out.agent == "diffusion-ppo"
        assert tuple(out.by_sampling) == modes and out.tasks == out.by_sampling["deterministic"]
        for mode in modes:  # every mode from the same init states, 0 and 1 (cycled in LIBERO's order)
            result = out.by_sampling[mode][0]
            assert result.init_state_ids == (0, 1) and len(result.episode_successes) == 2
            assert sum(result.episode_successes) == result.successes and result.episode_lengths == (8, 8)
        row = out.to_json()["by_sampling"]["stochastic"][0]
        assert row["episodes"] == 2 and 0 <= row["interval95"][0] <= row["success_rate"] <= row["interval95"][1] <= 1


def test_diffusion_ppo_async_workers_equal_sync(tmp_path: Path) -> None:
    """On async LIBERO workers, train overlaps the env step with the critic (``step_async`` first); the trained
    weights are bit for bit those of the same run on in-process (sync) envs."""
    import torch

    from agents.checkpoint import read_checkpoint

    params = {}
    for vectorization in ("sync", "async"):
        run_dir = tmp_path / vectorization
        train(_config(run_dir, "diffusion-ppo", SMALL_DIFFUSION, total_timesteps=64, vectorization=vectorization))
        params[vectorization] = read_checkpoint(run_dir)[1]["params"]
    for name, state in params["sync"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                assert torch.equal(value, params["async"][name][key]), (name, key)


def test_sac_through_cli_async(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A third-party SB3 algorithm by module:Class, through cli.main, on 2 async LIBERO workers."""
    run_dir = tmp_path / "sac"
    argv = [
        "train", "--agent", "stable_baselines3:SAC", "--env", "LIBERO-Goal-v0", "--task-id", "0",
        "--max-episode-steps", "40", "--num-envs", "2", "--total-timesteps", "160", "--run-dir", str(run_dir),
        "--agent.kwargs", '{"learning_starts": 64, "batch_size": 32, "policy_kwargs": {"net_arch": [32, 32]}}',
        "--no-progress", "--device", "cpu", "--checkpoint-every", "80",
    ]  # fmt: skip
    assert cli.main(argv) == 0
    out = capsys.readouterr().out
    assert "trained stable_baselines3:SAC on LIBERO-Goal-v0" in out and "steps/s" in out
    meta = read_meta(run_dir)
    assert meta["class_path"] == "stable_baselines3:SAC" and meta["config"]["buffer_size"] == 1000
    assert {"rollout/success_rate", "rollout/ep_len_mean", "train/actor_loss"} <= _metrics(run_dir)
    assert cli.main(["eval", "--checkpoint", str(run_dir), "--episodes", "1", "--max-episode-steps", "5"]) == 0
    assert "success" in capsys.readouterr().out
    # the same run folder again without --resume is refused, with a one-line error
    assert cli.main(argv) == 2
    assert "already holds a run" in capsys.readouterr().err
    # a diffusion-ppo --init-from of a SAC checkpoint names both agents
    argv = ["train", "--agent", "gaussian-ppo", "--init-from", str(run_dir), "--run-dir", str(tmp_path / "x")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "stable_baselines3:SAC" in err and "gaussian-ppo" in err
    assert np.isfinite(meta["num_timesteps"])


@pytest.mark.slow
def test_makefile_main_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The Makefile's `make train` command line, as is (defaults: 2 async workers, DiffusionPPO defaults)."""
    argv = ["train", "--agent", "diffusion-ppo", "--env", "LIBERO-Goal-v0", "--task-id", "0"]
    argv += ["--total-timesteps", "2000"]
    assert cli.main([*argv, "--resume", str(tmp_path / "main")]) == 0
    out = capsys.readouterr().out
    assert "trained diffusion-ppo on LIBERO-Goal-v0 (state)" in out and "checkpoint:" in out
    assert read_meta(tmp_path / "main")["num_timesteps"] >= 2000
