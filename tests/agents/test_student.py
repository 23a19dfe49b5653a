"""The multi-task student: seeded per-task draw, dataset mixing, task conditioning, determinism, and the
real-simulator path from recorded demos to ``eval --task-id all``'s chart and JSON."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

import cli
from agents.checkpoint import read_checkpoint
from agents.pretrain import fit_bc
from agents.registry import SpacesOnlyEnv, build_agent, resolve_agent
from agents.run_folder import make_logger
from agents.student import EpisodeRef, ObservationNoise, StudentConfig, draw_episodes, scan_episodes
from libero_gym import suites
from libero_gym.data.dataset import Episode, write_dataset
from libero_gym.errors import DatasetError
from libero_gym.testing import FakeLiberoEnv
from tests.agents.conftest import record_controller_demos

STEPS = 10
"""Steps per recorded demo: a few chunks, cheap to replay."""
TINY = ["--mlp-dims", "32", "32", "--encoder-dims", "32", "--horizon-steps", "2", "--batch-size", "8",
        "--lr-warmup-steps", "0", "--no-progress", "--device", "cpu"]  # fmt: skip
"""A student small enough for CPU tests."""


def _refs(counts: dict[int, int], source: str = "a") -> list[EpisodeRef]:
    return [
        EpisodeRef(Path(f"{source}{t}.hdf5"), f"demo_{i}", "libero_goal", t, source)
        for t, n in counts.items()
        for i in range(n)
    ]


def test_draw_is_seeded_per_task_and_without_replacement() -> None:
    refs = _refs({0: 20, 1: 20, 2: 3})
    first = draw_episodes(refs, 5, seed=7)
    assert first == draw_episodes(refs, 5, seed=7)  # same seed, same draw
    assert {t: len(r) for t, r in first.items()} == {0: 5, 1: 5, 2: 3}  # a short task gives all it has
    assert all(len(set(r)) == len(r) for r in first.values())
    assert first[0] != draw_episodes(refs, 5, seed=8)[0]
    # A task's draw does not depend on the other tasks' episodes.
    assert draw_episodes(_refs({0: 20}), 5, seed=7)[0] == first[0]
    assert draw_episodes(refs, None, seed=7)[1] == [r for r in refs if r.task_index == 1]


def _write(
    path: Path, task: int, n: int, success: list[bool] | None = None, suite: str = "libero_goal", images: bool = False
) -> None:
    """A LIBERO-layout file of ``n`` short demos of ``task`` of ``suite`` (zeros: scanning reads attributes only)."""
    episodes = []
    for i in range(n):
        attrs = {"init_state_id": i} if success is None else {"init_state_id": i, "success": success[i]}
        low_dim = {"gripper_states": (2,), "joint_states": (7,), "ee_states": (6,), "ee_pos": (3,), "ee_ori": (3,)}
        obs = {key: np.zeros((3, *shape)) for key, shape in low_dim.items()}
        if images:
            obs |= {key: np.zeros((3, 16, 16, 3), np.uint8) for key in ("agentview_rgb", "eye_in_hand_rgb")}
        episodes.append(Episode(
            np.zeros((3, 7)), np.zeros((3, 10)), np.zeros((3, 9)), np.zeros(3, np.uint8), np.array([0, 0, 1], np.uint8),
            obs, np.zeros(10), "", attrs,
        ))  # fmt: skip
    write_dataset(path, episodes, suites.get_task(suite, task))


def test_sources_mix_by_task(tmp_path: Path) -> None:
    """A generate folder, a folder of files and a single file mix into one pool grouped by task; failures are
    left out unless asked for."""
    generated = tmp_path / "gen" / "tasks" / "libero_goal_01" / "export"
    generated.mkdir(parents=True)
    _write(generated / "t1.hdf5", 1, 3)
    (tmp_path / "folder").mkdir()
    _write(tmp_path / "folder" / "t0.hdf5", 0, 2, success=[True, False])
    _write(tmp_path / "single.hdf5", 1, 2)
    sources = [tmp_path / "gen", tmp_path / "folder", tmp_path / "single.hdf5"]
    refs = scan_episodes(sources)
    assert [(r.task_index, r.demo) for r in refs] == [(1, "demo_0"), (1, "demo_1"), (1, "demo_2"), (0, "demo_0"),
                                                      (1, "demo_0"), (1, "demo_1")]  # fmt: skip
    assert len(scan_episodes(sources, only_success=False)) == 7
    drawn = draw_episodes(refs, 4, seed=0)
    assert {t: len(r) for t, r in drawn.items()} == {0: 1, 1: 4}
    assert {r.source for r in drawn[1]} <= {str(tmp_path / "gen"), str(tmp_path / "single.hdf5")}


def test_lerobot_folder_reads_back_its_source_demos(tmp_path: Path) -> None:
    """A LeRobot v3 export is a source too: its episodes are the HDF5 demos it was exported from."""
    from libero_gym.data.lerobot import export_lerobot

    _write(tmp_path / "t2.hdf5", 2, 2, images=True)
    _write(tmp_path / "t3.hdf5", 3, 1, images=True)
    export_lerobot([tmp_path / "t2.hdf5", tmp_path / "t3.hdf5"], tmp_path / "lerobot", video=False)
    refs = scan_episodes([tmp_path / "lerobot"])
    assert [(r.file.name, r.demo, r.task_index) for r in refs] == [("t2.hdf5", "demo_0", 2), ("t2.hdf5", "demo_1", 2),
                                                                   ("t3.hdf5", "demo_0", 3)]  # fmt: skip
    (tmp_path / "t3.hdf5").unlink()
    with pytest.raises(DatasetError, match="source demos are gone"):
        scan_episodes([tmp_path / "lerobot"])


def test_sources_reject_bad_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = ["--run-dir", str(tmp_path / "run")]
    assert cli.main(["student", "--dataset", str(tmp_path / "missing"), *run]) == 2
    assert capsys.readouterr().err.strip().endswith("does not exist")
    (tmp_path / "empty").mkdir()
    assert cli.main(["student", "--dataset", str(tmp_path / "empty"), *run]) == 2
    assert "no *.hdf5 datasets" in capsys.readouterr().err
    _write(tmp_path / "goal.hdf5", 0, 1)
    assert cli.main(["student", "--dataset", str(tmp_path / "goal.hdf5"), "--episodes-per-task", "0", *run]) == 2
    assert capsys.readouterr().err.startswith("error: episodes_per_task must be >= 1")
    assert cli.main(["student", "--dataset", str(tmp_path / "goal.hdf5"), "--head", "nope", *run]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and err.count("\n") == 1
    _write(tmp_path / "spatial.hdf5", 0, 1, suite="libero_spatial")
    assert cli.main(["student", "--dataset", str(tmp_path / "goal.hdf5"), str(tmp_path / "spatial.hdf5"), *run]) == 2
    assert "mix suites ['libero_goal', 'libero_spatial']" in capsys.readouterr().err


def _fake_model(seed: int, horizon: int = 2) -> tuple[object, FakeLiberoEnv]:
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = FakeLiberoEnv(n_tasks=3)
    config = StudentConfig(
        dataset=(Path("x"),), run_dir=Path("x"), horizon_steps=horizon, mlp_dims=(64, 64), encoder_dims=(32,)
    )
    vec = DummyVecEnv([lambda: SpacesOnlyEnv(env.observation_space, env.action_space)])
    torch.manual_seed(seed)
    return build_agent(resolve_agent("diffusion-ppo"), vec, config.agent_config(), seed=seed, device="cpu"), env


TARGETS = np.array([[0.5, 0, 0, 0, 0, 0, -1], [-0.5, 0, 0, 0, 0, 0, 1], [0, 0.5, 0, 0, 0, 0, -1]], np.float32)
"""The demonstrated action of each of 3 fake tasks."""


def _task_data(env: FakeLiberoEnv, n: int = 96) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Observations of 3 tasks whose demonstrated chunk is a task-specific constant action."""
    rng = np.random.default_rng(0)
    env.observation_space.seed(0)
    one = env.observation_space.sample()  # one observation: only the task tells the demos apart
    observations = {key: np.repeat(np.asarray(value)[None], n, axis=0) for key, value in one.items()}
    observations["task_index"] = np.arange(n) % 3
    chunks = np.repeat(TARGETS[observations["task_index"]][:, None], 2, axis=1) + rng.normal(0, 0.01, (n, 2, 7))
    return observations, np.clip(chunks, -1, 1).astype(np.float32)


def _fit(seed: int, tmp_path: Path, noise: float, epochs: int = 150) -> object:
    model, env = _fake_model(seed)
    observations, chunks = _task_data(env)
    model.fit_normalization(observations, chunks)
    config = StudentConfig(dataset=(Path("x"),), run_dir=tmp_path, epochs=epochs, batch_size=32, learning_rate=1e-3,
                           lr_warmup_steps=0, ema_max_decay=0.0, seed=seed)  # fmt: skip
    augment = ObservationNoise(observations, noise, seed, "cpu") if noise > 0 else None
    fit_bc(model, observations, chunks, config, make_logger(tmp_path / f"logs{seed}{noise}"), augment=augment)
    return model


def test_one_network_acts_per_task_and_is_deterministic(tmp_path: Path) -> None:
    """The task index conditions the network (its one-hot is a learned embedding); same seed, same weights."""
    model = _fit(0, tmp_path, noise=0.1)
    observations, _ = _task_data(FakeLiberoEnv(n_tasks=3))
    for task in range(3):
        obs = {key: torch.as_tensor(value[task : task + 1]) for key, value in observations.items()}  # task_index: task
        chunk, _ = model.policy.sample(obs, mode="zero-init")
        distances = np.abs(chunk[0].numpy()[None] - TARGETS[:, None]).max(axis=(1, 2))
        assert distances.argmin() == task and distances[task] < 0.3, (task, distances)  # its own task's action
    model, again = _fit(0, tmp_path, noise=0.1, epochs=3), _fit(0, tmp_path, noise=0.1, epochs=3)
    for a, b in zip(model.policy.state_dict().values(), again.policy.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    other = _fit(1, tmp_path, noise=0.1, epochs=3)
    pairs = zip(model.policy.state_dict().values(), other.policy.state_dict().values(), strict=True)
    assert any(not torch.equal(a, b) for a, b in pairs)  # another seed, other weights


def test_observation_noise_scales_with_each_dimension() -> None:
    rng = np.random.default_rng(0)
    observations = {"proprio": rng.normal(0, [1.0, 10.0], (500, 2)).astype(np.float32), "task_index": np.zeros(500)}
    noise = ObservationNoise(observations, 0.5, seed=3, device="cpu")
    batch = {"proprio": torch.zeros(20000, 2), "task_index": torch.zeros(20000, dtype=torch.long)}
    out = noise(batch)
    np.testing.assert_allclose(out["proprio"].std(0).numpy(), [0.5, 5.0], rtol=0.05)
    assert torch.equal(out["task_index"], batch["task_index"])
    again = ObservationNoise(observations, 0.5, seed=3, device="cpu")(batch)
    torch.testing.assert_close(again["proprio"], out["proprio"])  # same seed, same noise


@pytest.mark.slow
def test_student_then_eval_all_tasks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two real tasks, two sources: train the student twice with one seed (identical weights), then
    ``eval --task-id all`` prints the suite mean with its interval and writes the chart and JSON."""
    (tmp_path / "a").mkdir()
    record_controller_demos(tmp_path / "a" / "t0.hdf5", 0, 3, steps=STEPS)
    record_controller_demos(tmp_path / "t1.hdf5", 1, 2, steps=STEPS)
    argv = ["student", "--dataset", str(tmp_path / "a"), str(tmp_path / "t1.hdf5"), "--episodes-per-task", "2",
            "--epochs", "30", "--seed", "3", *TINY]  # fmt: skip
    assert cli.main([*argv, "--run-dir", str(tmp_path / "s1")]) == 0
    out = capsys.readouterr().out
    assert "demos per task {0: 2, 1: 2}" in out
    assert cli.main([*argv, "--run-dir", str(tmp_path / "s2")]) == 0
    meta, params = read_checkpoint(tmp_path / "s1" / "checkpoint")
    _, params2 = read_checkpoint(tmp_path / "s2" / "checkpoint")
    assert meta["env"]["env_id"] == "LIBERO-Goal-v0" and meta["env"]["task_ids"] == [0, 1]
    for key, value in params["params"]["policy"].items():
        assert torch.equal(value, params2["params"]["policy"][key]), key
    draw = json.loads((tmp_path / "s1" / "draw.json").read_text())
    assert len(draw["tasks"]["0"]) == 2 and draw["missing_tasks"] == list(range(2, 10))

    assert cli.main(["eval", "--checkpoint", str(tmp_path / "s1" / "checkpoint"), "--task-id", "all", "--episodes", "1",
                     "--max-episode-steps", "4", "--sampling", "deterministic", "--device", "cpu"]) == 0  # fmt: skip
    printed = capsys.readouterr().out
    assert "mean" in printed and "(0-" in printed
    results = json.loads((tmp_path / "s1" / "eval" / "results.json").read_text())
    assert [t["task_id"] for t in results["tasks"]] == list(range(10))
    low, high = results["suite_mean"]["deterministic"]["interval95"]
    assert results["suite_mean"]["deterministic"]["episodes"] == 10 and 0 <= low <= high <= 1
    assert (tmp_path / "s1" / "eval" / "success.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.slow
def test_pixel_student_smoke(tmp_path: Path) -> None:
    """Pixels on CPU, tiny: the images are rendered from the stored states at the requested size, both cameras
    feed the FiLM-ResNet encoder, and the checkpoint records the pixel env."""
    from agents.checkpoint import load_agent

    record_controller_demos(tmp_path / "t0.hdf5", 0, 1, steps=STEPS)
    argv = ["student", "--dataset", str(tmp_path / "t0.hdf5"), "--obs-mode", "pixels", "--image-size", "32",
            "--epochs", "2", "--run-dir", str(tmp_path / "px"), *TINY]  # fmt: skip
    assert cli.main(argv) == 0
    meta, _ = read_checkpoint(tmp_path / "px" / "checkpoint")
    assert meta["env"]["obs_mode"] == "pixels" and meta["env"]["image_size"] == 32
    model, _ = load_agent(tmp_path / "px" / "checkpoint", device="cpu")
    assert set(model.policy.actor.encoder.backbones) == {"agentview_image", "eye_in_hand_image"}
    obs = gym.make("LIBERO-Goal-v0", task_id=0, obs_mode="pixels", image_size=32).observation_space.sample()
    action, _ = model.predict(obs, deterministic=True)
    assert action.shape == (7,) and np.all(np.abs(action) <= 1)


def test_eval_report_chart_and_suite_interval(tmp_path: Path) -> None:
    """The suite mean's interval pools every task's episodes; 0% and 100% tasks chart fine."""
    from agents.evaluate import EvalResult, TaskResult, suite_mean, wilson_interval, write_report

    tasks = [TaskResult(i, 10, s, 50.0, f"task {i}") for i, s in enumerate([10, 0, 7, 10])]
    mean, interval = suite_mean(tasks)
    assert mean == pytest.approx(27 / 40) and interval == wilson_interval(27, 40)
    result = EvalResult("ck", "diffusion-ppo", "LIBERO-Goal-v0", "state", 0, tasks, [], 1.0, {"deterministic": tasks})
    json_path, png_path = write_report(result, tmp_path / "eval")
    payload = json.loads(json_path.read_text())
    expected = {"success_rate": mean, "interval95": list(interval), "episodes": 40}
    assert payload["suite_mean"]["deterministic"] == expected
    assert [t["success_rate"] for t in payload["tasks"]] == [1.0, 0.0, 0.7, 1.0]
    assert png_path.read_bytes()[:4] == b"\x89PNG"


def test_gaussian_head_clones_the_task_actions(tmp_path: Path) -> None:
    """--head gaussian: gaussian-ppo's policy, one action per step, trained by the squared error of its mean."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    env = FakeLiberoEnv(n_tasks=3)
    config = StudentConfig(dataset=(Path("x"),), run_dir=tmp_path, head="gaussian", mlp_dims=(64, 64), epochs=60,
                           batch_size=32, learning_rate=1e-3, lr_warmup_steps=0, ema_max_decay=0.0)  # fmt: skip
    vec = DummyVecEnv([lambda: SpacesOnlyEnv(env.observation_space, env.action_space)])
    model = build_agent(resolve_agent("gaussian-ppo"), vec, config.agent_config(), seed=0, device="cpu")
    observations, chunks = _task_data(env)
    chunks = chunks[:, :1]  # Ta = 1
    model.fit_normalization(observations, chunks)
    fit_bc(model, observations, chunks, config, make_logger(tmp_path / "logs"))
    for task in range(3):
        action, _ = model.predict({key: value[task] for key, value in observations.items()}, deterministic=True)
        assert np.abs(action - TARGETS).max(axis=1).argmin() == task, (task, action)
