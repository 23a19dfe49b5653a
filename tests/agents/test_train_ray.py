"""``train --backend ray``: the same run as the local backend for the same seed, and a killed actor is replaced.

Real LIBERO (LIBERO-Goal task 0, state observations, 16-step episodes), gaussian-ppo cut small,
one local Ray for the module.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any

import pytest
import ray
import torch

import agents.train
import cli
from agents.configs import TrainConfig
from agents.train import train
from tests.agents.conftest import SMALL_GAUSSIAN, agent_config, agent_flags

TINY = {**SMALL_GAUSSIAN, "n_steps": 16, "batch_size": 32, "n_epochs": 1}
"""One 32-step rollout (2 envs x 16) per update."""


pytestmark = pytest.mark.usefixtures("local_ray")  # tests/conftest.py: one local Ray for the module


def _rows(run_dir: Path) -> list[dict[str, str]]:
    """progress.csv without wall-clock columns."""
    with open(run_dir / "logs" / "progress.csv") as handle:
        return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in csv.DictReader(handle)]


def _params(run_dir: Path) -> dict[str, torch.Tensor]:
    (checkpoint,) = sorted((run_dir / "checkpoints").iterdir())[-1:]
    return torch.load(checkpoint / "params.pt", map_location="cpu", weights_only=False)


def _assert_params_equal(a: Any, b: Any, where: str = "") -> None:
    if isinstance(a, dict):
        assert sorted(a) == sorted(b), where
        for key in a:
            _assert_params_equal(a[key], b[key], f"{where}/{key}")
    elif isinstance(a, torch.Tensor):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=where)
    else:
        assert a == b, where


@pytest.mark.slow  # the vector env's equality test (test_ray_vector.py) is in the default run
def test_train_on_ray_equals_local(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI, same seed: the same logged metrics and the same weights on either backend."""
    argv = ["train", *agent_flags("gaussian-ppo", TINY), "--env", "LIBERO-Goal-v0", "--task-id", "0",
            "--max-episode-steps", "16", "--num-envs", "2", "--total-timesteps", "64", "--checkpoint-every", "64",
            "--seed", "3", "--device", "cpu", "--no-progress"]  # fmt: skip
    runs = {backend: tmp_path / backend for backend in ("local", "ray")}
    assert cli.main([*argv, "--run-dir", str(runs["local"])]) == 0
    assert cli.main([*argv, "--run-dir", str(runs["ray"]), "--backend", "ray"]) == 0
    capsys.readouterr()
    rows = {backend: _rows(run) for backend, run in runs.items()}
    assert len(rows["local"]) == 2 and rows["ray"] == rows["local"]
    _assert_params_equal(_params(runs["local"]), _params(runs["ray"]))
    saved = json.loads((runs["ray"] / "config.json").read_text())["train"]
    assert (saved["backend"], saved["ray_address"]) == ("ray", None)


def _kill(vec_env: Any, index: int) -> None:
    """``ray.kill`` the actor of slot ``index`` and wait until it is dead: Ray reports it (a call queued behind
    its serve loop fails) and its end of the direct connection is closed (the process can outlive the report)."""
    actor = vec_env.actors[index]
    ray.kill(actor)
    with pytest.raises(ray.exceptions.RayActorError):
        ray.get(actor.node_id.remote(), timeout=60)
    conn, deadline = vec_env._conns[index], time.time() + 60
    while conn is not None and not conn.poll(0.2) and time.time() < deadline:
        pass


def test_train_command_survives_a_killed_actor(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """train --backend ray; actor 0 is killed before the 3rd vector step: replaced, its episode dropped, and the
    run finishes its planned steps with the fault in its summary and logs."""
    make_env = agents.train.make_env
    killed: list[Any] = []
    steps = [0]

    def make_env_that_kills(*args: Any, **kwargs: Any) -> Any:
        vec_env = make_env(*args, **kwargs)
        step_async = vec_env.step_async

        def step_async_killing(actions: Any) -> None:
            if not killed and steps[0] == 2:
                _kill(vec_env.vec_env, 0)  # SB3VecEnv -> RayVectorEnv
                killed.append(vec_env.vec_env.actors[0])
            steps[0] += 1
            step_async(actions)

        vec_env.step_async = step_async_killing
        return vec_env

    monkeypatch.setattr(agents.train, "make_env", make_env_that_kills)
    run_dir = tmp_path / "run"
    config = TrainConfig(
        agent=agent_config("gaussian-ppo", TINY), env="LIBERO-Goal-v0", task_id=(0,), max_episode_steps=16,
        num_envs=2, total_timesteps=64, run_dir=run_dir, checkpoint_every=32, progress=False, device="cpu",
        backend="ray",
    )  # fmt: skip
    result = train(config)
    assert killed
    assert result.num_timesteps >= 64 and result.dropped_episodes == 1 and result.worker_restarts == 1
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["dropped_episodes"] == 1 and summary["worker_restarts"] == 1
    logged = [float(row["rollout/dropped_episodes"]) for row in _rows(run_dir) if row.get("rollout/dropped_episodes")]
    assert logged and max(logged) == 1
    assert result.ep_len_mean in (None, 16.0)  # whole (truncated) episodes only: the cut one is not counted
