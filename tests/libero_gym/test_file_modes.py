"""Atomically written files get the mode a plain ``open()`` gives (umask), not mkstemp's 0600."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from libero_gym import suites
from libero_gym.data import dataset as ds
from libero_gym.file_modes import current_umask, default_mode


@pytest.fixture(params=[0o022, 0o027, 0o002], ids=oct)
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    previous = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(previous)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _episode(steps: int = 4, state_dim: int = 9) -> ds.Episode:
    rng = np.random.default_rng(0)
    return ds.Episode(
        actions=rng.uniform(-1, 1, (steps, 7)), states=rng.normal(size=(steps, state_dim)),
        robot_states=rng.normal(size=(steps, 9)), rewards=np.zeros(steps, np.uint8),
        dones=np.eye(1, steps, steps - 1, dtype=np.uint8)[0],
        obs={"gripper_states": rng.normal(size=(steps, 2))}, init_state=np.zeros(state_dim), model_file="<mujoco/>",
    )


def test_current_umask_reads_without_changing(umask: int) -> None:
    assert current_umask() == umask
    assert os.umask(umask) == umask  # still set
    assert default_mode() == 0o666 & ~umask and default_mode(directory=True) == 0o777 & ~umask


def test_dataset_and_json_follow_umask(tmp_path: Path, umask: int) -> None:
    expected = 0o666 & ~umask  # 0644 under 022, 0640 under 027, 0664 under 002
    hdf5 = ds.write_dataset(tmp_path / "out" / "task_demo.hdf5", [_episode()], suites.get_task("libero_goal", 0))
    summary = tmp_path / "out" / "manifest.json"
    ds.write_json_atomic(summary, {"a": 1})
    plain = tmp_path / "plain.txt"
    plain.write_text("x")
    assert _mode(plain) == expected  # what the kernel gives a normal open() here
    assert _mode(hdf5) == expected, oct(_mode(hdf5))
    assert _mode(summary) == expected, oct(_mode(summary))
    ds.write_json_atomic(summary, {"a": 2})  # replacing keeps it
    assert _mode(summary) == expected


@pytest.mark.parametrize("suffix", ["", ".zip"])
def test_checkpoint_follows_umask(tmp_path: Path, umask: int, suffix: str) -> None:
    from agents.checkpoint import save_checkpoint
    from agents.registry import build_agent, resolve_agent
    from libero_gym.env_config import EnvConfig
    from tests.agents.conftest import SMALL_GAUSSIAN, fake_vec

    spec = resolve_agent("gaussian-ppo")
    env = fake_vec(1, obs_mode="state", image_size=32)
    model = build_agent(spec, env, spec.make_config(SMALL_GAUSSIAN), seed=0, device="cpu")
    path = save_checkpoint(model, tmp_path / f"ck{suffix}", agent="gaussian-ppo", env=EnvConfig("LIBERO-Goal-v0", (0,), "state"))
    env.close()
    if suffix:
        assert _mode(path) == 0o666 & ~umask, oct(_mode(path))
    else:
        assert _mode(path) == 0o777 & ~umask, oct(_mode(path))  # the folder: mkdtemp made it 0700
        for name in ("agent.json", "params.pt"):
            assert _mode(path / name) == 0o666 & ~umask
