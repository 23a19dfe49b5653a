"""``cli.py generate``: the pipeline's settings, resume and refusals, and tiny real runs on LIBERO-Goal task 0."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

import cli
from agents.pipeline import GENERATE_AGENTS, GenerateConfig, expand_config_file, resolve_tasks
from agents.pipeline.manifest import Manifest, check_settings
from agents.pipeline.stages import stage_run
from agents.stage import config_from_json, config_to_json
from libero_gym.errors import InvalidInputError

REPO = Path(__file__).resolve().parents[2]

TINY_RL = ["--env", "LIBERO-Goal-v0", "--task-id", "0", "--demos", "1", "--bc-epochs", "2", "--eval-episodes", "2",
           "--rl-steps", "800", "--checkpoint-every", "400", "--max-episode-steps", "30", "--episodes", "1",
           "--max-attempts", "1", "--no-images", "--envs-per-task", "1", "--max-workers", "1", "--no-progress"]  # fmt: skip
"""A run through every stage in about a minute: 1 demo, 2 BC epochs, 2 iterations of DiffusionPPO (400 env
steps each), one 30-step rollout (which fails, so the export has nothing to write)."""


# ---------------------------------------------------------------------- settings (no simulator)
def test_tasks_resolve_with_errors_that_name_the_choices() -> None:
    assert [t.key for t in resolve_tasks("LIBERO-Goal-v0", ["all"])] == [f"libero_goal_{i:02d}" for i in range(10)]
    assert [t.index for t in resolve_tasks("LIBERO-Goal-v0", ["3", "1", "3"])] == [3, 1]
    (single,) = resolve_tasks("LIBERO-Spatial-Task4-v0", ["0"])
    assert (single.env, single.index) == ("LIBERO-Spatial-v0", 4)
    with pytest.raises(InvalidInputError, match=r"task_id must be in \[0, 9\]"):
        resolve_tasks("LIBERO-Goal-v0", ["10"])
    with pytest.raises(InvalidInputError, match="or all"):
        resolve_tasks("LIBERO-Goal-v0", ["first"])
    with pytest.raises(InvalidInputError, match="env must be one of .*LIBERO-Goal-v0"):
        resolve_tasks("LIBERO-Nope-v0", ["0"])


def test_stop_after_runs_the_stages_up_to_one(tmp_path: Path) -> None:
    config = GenerateConfig(out=tmp_path, stop_after="bc_eval")
    assert config.stages == ("demos", "bc", "bc_eval")
    assert GenerateConfig(out=tmp_path).stages == ("demos", "bc", "bc_eval", "rl", "rl_eval", "rollouts", "export")
    assert GenerateConfig(out=tmp_path, eval_episodes=0).stages == ("demos", "bc", "rl", "rollouts", "export")
    with pytest.raises(InvalidInputError, match=r"stop_after must be one of \['rollouts', 'export'\]"):
        GenerateConfig(out=tmp_path, source="scripted", stop_after="bc").validate()
    rl_eval = stage_run(GenerateConfig(out=tmp_path, sampling="zero-init"), resolve_tasks("LIBERO-Goal-v0", ["0"])[0],
                        "rl_eval", tmp_path)  # fmt: skip
    assert rl_eval.commands[0].config.sampling == ("deterministic", "stochastic", "zero-init")


def test_a_changed_setting_is_refused_by_name_unless_restarted(tmp_path: Path) -> None:
    tasks = resolve_tasks("LIBERO-Goal-v0", ["0"])
    manifest = Manifest.load_or_create(tmp_path)
    old = GenerateConfig(out=tmp_path)
    for stage in ("demos", "bc", "bc_eval", "rl"):
        manifest.record(tasks[0].key, stage, done=True, settings=old.stage_settings(stage))
    # unchanged, or changed only in a stage not yet run: nothing to redo
    assert check_settings(old, manifest, tasks) == {"libero_goal_00": []}
    assert check_settings(GenerateConfig(out=tmp_path, episodes=7), manifest, tasks) == {"libero_goal_00": []}
    changed = GenerateConfig(out=tmp_path, bc_epochs=5)
    with pytest.raises(InvalidInputError, match=r"--bc-epochs changed \(200 -> 5\) since stage 'bc'.*--restart-from bc"):
        check_settings(changed, manifest, tasks)
    restarted = GenerateConfig(out=tmp_path, bc_epochs=5, restart_from="bc")
    assert check_settings(restarted, manifest, tasks) == {"libero_goal_00": ["bc", "bc_eval", "rl"]}
    with pytest.raises(InvalidInputError, match="--agent changed"):  # bc is before rl: restarting rl is not enough
        check_settings(GenerateConfig(out=tmp_path, agent=GENERATE_AGENTS["gaussian-ppo"], restart_from="rl"), manifest, tasks)


def test_export_converts_the_hdf5_file_to_each_other_format(tmp_path: Path) -> None:
    (task,) = resolve_tasks("LIBERO-Goal-v0", ["0"])
    folder = tmp_path / "tasks" / task.key
    plain = stage_run(GenerateConfig(out=tmp_path), task, "export", folder)
    (command,) = plain.commands
    assert command.cli_argv() == ["export", str(folder / "rollouts"), "--out", str(folder / "export"), "--only-success"]
    both = stage_run(GenerateConfig(out=tmp_path, formats=("hdf5", "lerobot")), task, "export", folder)
    assert both.commands[0] == command
    assert both.commands[1].cli_argv() == ["export", str(folder / "export"), "--format", "lerobot", "--out",
                                           str(folder / "export" / "lerobot")]  # fmt: skip
    # the formats are the export stage's setting: adding one redoes only that stage
    assert GenerateConfig(out=tmp_path, formats=("hdf5", "lerobot")).stage_settings("export") == {"formats": ["hdf5", "lerobot"]}


def test_config_file_values_are_defaults_that_flags_override(tmp_path: Path) -> None:
    saved = tmp_path / "generate.json"
    saved.write_text(json.dumps({"out": "a", "episodes": 7, "task_id": ["1", "2"], "images": False, "config": None}))
    argv = expand_config_file(["generate", "--config", str(saved), "--episodes", "9"])
    assert argv == ["generate", "--out", "a", "--episodes", "7", "--task-id", "1", "2", "--no-images", "--episodes", "9"]
    yaml_file = tmp_path / "g.yaml"
    yaml_file.write_text("out: b\nrl_steps: 5000\n")
    assert expand_config_file(["generate", "--config", str(yaml_file)]) == ["generate", "--out", "b", "--rl-steps", "5000"]
    assert expand_config_file(["generate", f"--config={yaml_file}"]) == ["generate", "--out", "b", "--rl-steps", "5000"]
    yaml_file.write_text("out: b\nrl_stepz: 5000\n")
    with pytest.raises(InvalidInputError, match=r"unknown settings \['rl_stepz'\]"):
        expand_config_file(["generate", "--config", str(yaml_file)])


@pytest.mark.parametrize("agent", list(GENERATE_AGENTS))
def test_stage_configs_round_trip_through_json(tmp_path: Path, agent: str) -> None:
    """Every stage's typed configs -> JSON -> the same configs (what ``python -m agents.stage`` rebuilds)."""
    (task,) = resolve_tasks("LIBERO-Goal-v0", ["0"])
    config = GenerateConfig(out=tmp_path, agent=GENERATE_AGENTS[agent], max_episode_steps=30,
                            formats=("hdf5", "lerobot"), backend="ray", ray_address="127.0.0.1:6379")  # fmt: skip
    for stage in config.stages:
        for command in stage_run(config, task, stage, tmp_path / "task").commands:
            typed = command.config
            again = config_from_json(type(typed), json.loads(json.dumps(config_to_json(typed))))
            assert again == typed, (stage, command.command)


def test_generate_agent_settings_reach_the_bc_and_rl_configs(tmp_path: Path) -> None:
    """``generate --agent gaussian-ppo --agent.*`` as ``train`` takes it: over Gaussian PPO's fine-tuning defaults,
    given to pretrain (bc) and train (rl), shown in their command lines and recorded as settings of both."""
    config = cli._parse(["generate", "--out", str(tmp_path), "--agent", "gaussian-ppo", "--agent.learning-rate", "1e-4",
                         "--agent.n-epochs", "3"])  # fmt: skip
    (task,) = resolve_tasks(config.env, config.task_id)
    (train,) = stage_run(config, task, "rl", tmp_path).commands
    (pretrain,) = stage_run(config, task, "bc", tmp_path).commands
    for command in (train, pretrain):
        agent = command.config.agent
        assert (agent.learning_rate, agent.n_epochs) == (1e-4, 3)
        assert (agent.n_steps, agent.gamma) == (GENERATE_AGENTS["gaussian-ppo"].n_steps, 0.999)  # generate's defaults
    assert train.config.init_from == tmp_path / "bc" / "checkpoint"
    argv = train.cli_argv()
    assert argv[:3] == ["train", "--agent", "gaussian-ppo"] and "--agent.learning-rate=0.0001" in argv
    assert "--agent.n-epochs=3" in argv
    assert config.stage_settings("rl")["agent.n_epochs"] == 3 == config.stage_settings("bc")["agent.n_epochs"]
    diffusion = cli._parse(["generate", "--out", str(tmp_path), "--agent.actor-lr", "1e-5"])
    assert stage_run(diffusion, task, "rl", tmp_path).commands[0].config.agent.actor_lr == 1e-5


def test_a_changed_agent_setting_is_refused_by_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    out.mkdir()
    (task,) = resolve_tasks("LIBERO-Goal-v0", ["0"])
    manifest = Manifest.load_or_create(out)
    for stage in ("demos", "bc"):
        manifest.record(task.key, stage, done=True, settings=GenerateConfig(out=out).stage_settings(stage))
    before = (out / "manifest.json").read_text()
    assert cli.main(["generate", "--out", str(out), "--agent.actor-lr", "1e-5", "--no-progress"]) == 2
    err = capsys.readouterr().err.strip()
    assert "--agent.actor-lr changed (3e-05 -> 1e-05) since stage 'bc'" in err and len(err.splitlines()) == 1
    assert (out / "manifest.json").read_text() == before


def test_config_file_agent_settings_are_flags_over_its_defaults(tmp_path: Path) -> None:
    saved = tmp_path / "generate.json"
    resolved = GenerateConfig(out=tmp_path, agent=cli._parse(
        ["generate", "--out", "a", "--agent", "gaussian-ppo", "--agent.net-arch", "64", "64"]).agent).resolved()
    saved.write_text(json.dumps(resolved))
    argv = expand_config_file(["generate", "--config", str(saved)])
    assert argv[argv.index("--agent"):][:5] == ["--agent", "gaussian-ppo", "--agent.net-arch", "64", "64"]
    assert cli._parse(argv).agent == cli._parse(["generate", "--out", "a", "--agent", "gaussian-ppo",
                                                 "--agent.net-arch", "64", "64"]).agent  # fmt: skip
    # nested and boolean settings too (the default agent, named or not)
    nested = cli._parse(["generate", "--out", "a", "--agent.policy.no-predict-epsilon", "--agent.critic-encoder.state-dims",
                         "64", "--agent.target-kl", "None"]).agent  # fmt: skip
    saved.write_text(json.dumps(GenerateConfig(out=tmp_path, agent=nested).resolved()))
    assert cli._parse(expand_config_file(["generate", "--config", str(saved)])).agent == nested
    # another --agent on the command line: the file's agent settings do not apply
    argv = expand_config_file(["generate", "--config", str(saved), "--agent", "gaussian-ppo"])
    assert not [a for a in argv if a.startswith("--agent.")] and cli._parse(argv).agent == GENERATE_AGENTS["gaussian-ppo"]


def test_a_stage_command_runs_through_python_m(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``python -m agents.stage export CONFIG_JSON``: the config rebuilt and the library command run in a child
    process (here on a collection without episodes: its one ``error:`` line, exit 2); a config it cannot rebuild
    is refused the same way."""
    from agents.stage import main, write_config
    from libero_gym.data.commands import ExportConfig

    (tmp_path / "data" / "episodes").mkdir(parents=True)
    path = write_config(tmp_path / "export.json", ExportConfig(str(tmp_path / "data"), out=str(tmp_path / "out")))
    done = subprocess.run([sys.executable, "-m", "agents.stage", "export", str(path)], env=_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    err = done.stderr.strip()
    assert done.returncode == 2 and err.startswith("error:") and "no collected episodes" in err
    assert len(err.splitlines()) == 1
    path.write_text(json.dumps({"collection": "x", "episodez": 1}))
    assert main(["export", str(path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "episodez" in err and len(err.splitlines()) == 1


@pytest.mark.slow  # ~20-60 s: one simulator
def test_a_collect_stage_runs_through_python_m(tmp_path: Path) -> None:
    """``python -m agents.stage collect CONFIG_JSON``: one 5-step episode of a random policy, written."""
    from agents.stage import write_config
    from libero_gym.data.commands import CollectConfig

    config = CollectConfig(out=str(tmp_path / "data"), policy="random", episodes=1, max_episode_steps=5, keep="all",
                           images=False, export=False, progress=False)  # fmt: skip
    path = write_config(tmp_path / "collect.json", config)
    done = subprocess.run([sys.executable, "-m", "agents.stage", "collect", str(path)], env=_env(),
                          capture_output=True, text=True, timeout=300)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    assert len(list((tmp_path / "data" / "episodes").glob("ep_*.json"))) == 1


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--task-id", "12"], "task_id must be in [0, 9]"),
        (["--episodes", "0"], "episodes must be >= 1"),
        (["--env", "LIBERO-Nope-v0"], "env must be one of"),
        (["--envs-per-task", "4", "--max-workers", "2"], "envs_per_task (4) must be <= max_workers (2)"),
        (["--config", "{tmp}/missing.yaml"], "cannot read it"),
        (["--formats", "hdf5", "lerobot", "--no-images"], "formats lerobot needs camera images"),
        (["--formats", "rlds", "--no-images"], "formats rlds needs camera images"),
        (["--formats", "zarr"], "zarr"),
        (["--agent", "gaussian-ppo", "--sampling", "zero-init"], "sampling 'zero-init' needs a diffusion agent; gaussian-ppo acts in"),
        (["--agent", "stable_baselines3:SAC"], "--agent must be one of ['diffusion-ppo', 'gaussian-ppo'] for generate"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str],
                                          message: str) -> None:  # fmt: skip
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert cli.main(["generate", "--out", str(tmp_path / "run"), *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert not (tmp_path / "run" / "manifest.json").exists()


def test_a_folder_holding_something_else_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    assert cli.main(["generate", "--out", str(tmp_path), "--no-progress"]) == 2
    assert "holds other files (notes.txt" in capsys.readouterr().err
    assert (tmp_path / "notes.txt").read_text() == "mine" and not (tmp_path / "manifest.json").exists()


# ---------------------------------------------------------------------- real runs
def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.mark.slow  # ~90 s; the default suite runs every stage in the SIGKILL test below
def test_scripted_source_exports_what_the_reader_reads(tmp_path: Path) -> None:
    """``--source scripted``: the expert's rollouts with images, one LIBERO HDF5, a report with its figures."""
    from libero_gym.data.dataset import read_dataset

    out = tmp_path / "run"
    code = cli.main(["generate", "--out", str(out), "--source", "scripted", "--episodes", "2", "--image-size", "32",
                     "--formats", "hdf5", "lerobot", "--envs-per-task", "1", "--max-workers", "1", "--no-progress"])  # fmt: skip
    assert code == 0
    manifest = json.loads((out / "manifest.json").read_text())
    task = manifest["tasks"]["libero_goal_00"]
    assert task["status"] == "done" and set(task["stages"]) == {"rollouts", "export"}
    (exported,) = (out / "tasks" / "libero_goal_00" / "export").glob("*.hdf5")
    data = read_dataset(exported)
    assert len(data.episodes) == 2 and all(ep.success for ep in data.episodes)
    assert data.episodes[0].obs["agentview_rgb"].shape[1:] == (32, 32, 3)
    info = json.loads((out / "tasks" / "libero_goal_00" / "export" / "lerobot" / "meta" / "info.json").read_text())
    assert info["total_episodes"] == 2 and info["total_frames"] == sum(len(ep.actions) - ep.settle_steps for ep in data.episodes)
    report = (out / "report.md").read_text()
    assert "libero_goal_00" in report and "expert data" in report and "(2/2;" in report
    assert json.loads((out / "generate.json").read_text())["episodes"] == 2
    # the same command again: nothing to do, nothing rewritten
    before = exported.stat().st_mtime_ns
    assert cli.main(["generate", "--config", str(out / "generate.json")]) == 0
    assert exported.stat().st_mtime_ns == before


def test_sigterm_stops_the_stage_in_flight_and_starts_nothing_more(tmp_path: Path) -> None:
    """SIGTERM while a stage runs: the stage shuts down, no later stage or queued task starts, the report is
    written, exit 143 (before the fix the pool's exit waited for every stage and task to finish on its own)."""
    out = tmp_path / "run"
    command = [sys.executable, str(REPO / "cli.py"), "generate", "--out", str(out), "--source", "scripted",
               "--task-id", "0", "1", "--episodes", "50", "--no-images", "--envs-per-task", "1", "--max-workers", "1",
               "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    episodes = out / "tasks" / "libero_goal_00" / "rollouts" / "episodes"
    deadline = time.time() + 600
    while not list(episodes.glob("ep_*.json")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)  # the rollouts stage is collecting
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=180)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError("generate did not stop within 180 s of SIGTERM") from None
    assert code == 143
    manifest = json.loads((out / "manifest.json").read_text())
    first, second = manifest["tasks"]["libero_goal_00"], manifest["tasks"].get("libero_goal_01", {})
    assert first["status"] == "stopped" and not first["stages"].get("rollouts", {}).get("done")
    assert not second.get("stages") and not (out / "tasks" / "libero_goal_01").exists()
    assert (out / "report.md").exists() and manifest["wall_s"] > 0


def test_rl_pipeline_survives_sigkill_in_the_rl_stage(tmp_path: Path) -> None:
    """Every stage on a real task; SIGKILL while RL runs; the same command resumes RL from its checkpoint."""
    out = tmp_path / "run"
    command = [sys.executable, str(REPO / "cli.py"), "generate", "--out", str(out), *TINY_RL]
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    rl = out / "tasks" / "libero_goal_00" / "rl"
    deadline = time.time() + 600
    while not list((rl / "checkpoints").glob("step_*")) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    manifest = json.loads((out / "manifest.json").read_text())
    stages = manifest["tasks"]["libero_goal_00"]["stages"]
    assert {s for s, r in stages.items() if r.get("done")} == {"demos", "bc", "bc_eval"}
    time.sleep(3)  # the train process got SIGTERM from the kernel (PR_SET_PDEATHSIG) and is shutting down

    again = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout + again.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    task = manifest["tasks"]["libero_goal_00"]
    assert task["status"] == "done"
    assert set(task["stages"]) == {"demos", "bc", "bc_eval", "rl", "rl_eval", "rollouts", "export"}
    assert task["stages"]["export"]["short"] == "no successful rollouts: nothing to export"
    assert list((rl / "logs").glob("progress-resumed-*.csv")), "RL started over instead of resuming"
    log = (out / "tasks" / "libero_goal_00" / "log.txt").read_text()
    assert log.count("$ cli.py collect --policy scripted") == 1  # finished stages were not run again
    assert json.loads((rl / "summary.json").read_text())["num_timesteps"] >= 800
    report = (out / "report.md").read_text()
    assert "**not reached**" in report and "RL data" not in report
    # a changed setting is refused by name, and nothing is touched
    refused = subprocess.run([*command, "--bc-epochs", "3"], env=_env(), capture_output=True, text=True, timeout=300)
    assert refused.returncode == 2 and "--bc-epochs changed (2 -> 3)" in refused.stderr
    assert json.loads((out / "manifest.json").read_text()) == manifest


# ---------------------------------------------------------------------- --backend ray
def _stage_addresses(log: str) -> set[str]:
    """The --ray-address of every stage command in a task's log.txt."""
    found = set()
    for line in log.splitlines():
        words = line.split()
        if line.startswith("$ cli.py") and "--ray-address" in words:
            found.add(words[words.index("--ray-address") + 1])
    return found


def _listening(address: str) -> bool:
    import socket

    host, _, port = address.rpartition(":")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
        return True
    except OSError:
        return False


def test_ray_backend_passes_its_cluster_to_the_stages_and_sizes_from_its_cpus(tmp_path: Path) -> None:
    """--source scripted --backend ray, no --max-workers: generate starts one local Ray, every stage with env
    workers joins it by address, tasks run (cluster CPUs // envs per task) at a time, and Ray is gone after."""
    out = tmp_path / "run"
    command = [sys.executable, str(REPO / "cli.py"), "generate", "--out", str(out), "--source", "scripted",
               "--episodes", "1", "--max-attempts", "1", "--max-episode-steps", "20", "--no-images",
               "--envs-per-task", "1", "--backend", "ray", "--no-progress"]  # fmt: skip
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stdout + result.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    task = manifest["tasks"]["libero_goal_00"]
    assert task["status"] == "done" and set(task["stages"]) == {"rollouts", "export"}
    assert manifest["parallel_tasks"] == os.cpu_count(), "a local Ray has this machine's CPUs; 1 env per task"
    assert manifest["config"]["backend"] == "ray" and manifest["config"]["max_workers"] is None
    rollouts = task["stages"]["rollouts"]["command"]
    assert rollouts[rollouts.index("--backend") + 1] == "ray"
    (address,) = _stage_addresses((out / "tasks" / "libero_goal_00" / "log.txt").read_text())
    assert not _listening(address), "the Ray generate started is shut down when it ends"
    collection = json.loads((out / "tasks" / "libero_goal_00" / "rollouts" / "collection.json").read_text())
    assert collection["episodes_finished"] == 1


@pytest.mark.slow  # ~3 min: every stage of the RL pipeline, with env workers as Ray actors
def test_rl_pipeline_on_ray(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, str(REPO / "cli.py"), "generate", "--out", str(out), *TINY_RL, "--backend", "ray"]
    result = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=1800)
    assert result.returncode == 0, result.stdout + result.stderr
    task = json.loads((out / "manifest.json").read_text())["tasks"]["libero_goal_00"]
    assert task["status"] == "done"
    assert set(task["stages"]) == {"demos", "bc", "bc_eval", "rl", "rl_eval", "rollouts", "export"}
    for stage in ("demos", "bc_eval", "rl", "rl_eval", "rollouts"):
        assert "--ray-address" in task["stages"][stage]["command"], stage
    assert "--backend" not in task["stages"]["bc"]["command"]  # pretrain has no env workers
    (address,) = _stage_addresses((out / "tasks" / "libero_goal_00" / "log.txt").read_text())
    assert not _listening(address)
    summary = json.loads((out / "tasks" / "libero_goal_00" / "rl" / "summary.json").read_text())
    assert summary["num_timesteps"] >= 800


@pytest.mark.slow  # ~1-2 min: starts Ray and a collect stage, then stops them
def test_ray_backend_shuts_its_ray_down_on_sigterm(tmp_path: Path) -> None:
    out = tmp_path / "run"
    command = [sys.executable, str(REPO / "cli.py"), "generate", "--out", str(out), "--source", "scripted",
               "--episodes", "20", "--no-images", "--envs-per-task", "1", "--backend", "ray", "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(command, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    log = out / "tasks" / "libero_goal_00" / "log.txt"
    deadline = time.time() + 600
    while not (log.exists() and _stage_addresses(log.read_text())) and proc.poll() is None and time.time() < deadline:
        time.sleep(0.5)
    assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
    (address,) = _stage_addresses(log.read_text())
    assert _listening(address)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 143
    assert not _listening(address), "Ray stopped with generate"
    assert json.loads((out / "manifest.json").read_text())["tasks"]["libero_goal_00"]["status"] == "stopped"
