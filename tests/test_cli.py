"""Bad command-line input: one line on stderr, exit code 2, no traceback, nothing written.

Table-driven across the subcommands. Each case runs ``cli.main(argv)`` in process
from the repository root (what ``python cli.py`` and the ``libero-gym`` script call),
stderr captured; two cases also run as real processes, ``python cli.py ...`` and the
installed ``libero-gym`` script, as a user would. ``{out}`` is a fresh path that must
still not exist afterwards; ``{fx}`` holds the bad inputs (a HDF5 file that is not
LIBERO's layout, a text file named .hdf5, a checkpoint of another agent, a corrupt
checkpoint, an empty folder), which must be unchanged.

A case the commands do not handle yet can be marked ``xfail(strict=True)`` with
its cause (the fourth column), so that fixing it turns the suite red until the mark
is removed; none is marked now.

In process (the parser only, no simulator): each spelling of ``--agent`` and the
config it parses into, its ``--help``, and each way a ``generate --config`` file can
be wrong.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from agents.configs import PretrainConfig, TrainConfig

REPO = Path(__file__).resolve().parents[1]
TIMEOUT_S = 60
"""A user error must be reported before any real work starts; past this, the command is working, not refusing."""
NOISE = re.compile(r"^\[robosuite WARNING\]")
"""robosuite prints three macro-file warnings at import; library noise, not the CLI's message."""
ANSI = re.compile(r"\x1b\[[0-9;]*m")

# (id, argv, substring the one-line message must contain, xfail reason or None)
CASES: list[tuple[str, list[str], str, str | None]] = [
    # envs / doctor / agents / no subcommand
    ("envs-unknown-suite", ["envs", "--suite", "nope"], "suite must be one of", None),
    ("envs-unknown-option", ["envs", "--bogus"], "--bogus", None),
    ("unknown-subcommand", ["nope-command"], "nope-command", None),
    ("doctor-unknown-env", ["doctor", "--env-id", "LIBERO-Nope-v0", "--no-pixels"], "LIBERO-Nope", None),
    ("agents-unknown-option", ["agents", "--verbose"], "--verbose", None),
    # train
    ("train-unknown-agent", ["train", "--agent", "nope", "--run-dir", "{out}"],
     "agent must be one of ['diffusion-ppo', 'gaussian-ppo'] or a 'module:Class' path", None),
    ("train-unknown-agent-field", ["train", "--agent", "diffusion-ppo", "--agent.n-chunkz", "3", "--run-dir", "{out}"],
     "--agent.n-chunkz", None),
    ("train-unknown-sb3-agent", ["train", "--agent", "nope:Nope", "--run-dir", "{out}"],
     "cannot import module 'nope'", None),
    ("train-unknown-env", ["train", "--env", "LIBERO-Nope-v0", "--run-dir", "{out}"], "LIBERO-Nope", None),
    ("train-task-out-of-range", ["train", "--task-id", "99", "--run-dir", "{out}"], "task_id for libero_goal", None),
    ("train-bad-obs-mode", ["train", "--obs-mode", "rgb", "--run-dir", "{out}"], "--obs-mode", None),
    ("train-wrong-type", ["train", "--num-envs", "two", "--run-dir", "{out}"], "--num-envs", None),
    ("train-negative-steps", ["train", "--total-timesteps", "-5", "--run-dir", "{out}"],
     "total_timesteps must be >= 1", None),
    ("train-other-agents-checkpoint", ["train", "--init-from", "{fx}/sac_ck", "--run-dir", "{out}"],
     "is for agent 'sac'", None),
    ("train-corrupt-checkpoint", ["train", "--init-from", "{fx}/corrupt_ck", "--run-dir", "{out}"],
     "not valid JSON", None),
    # eval
    ("eval-not-a-checkpoint", ["eval", "--checkpoint", "{fx}/empty_dir", "--json-out", "{out}"],
     "neither a checkpoint", None),
    ("eval-corrupt-checkpoint", ["eval", "--checkpoint", "{fx}/corrupt_ck", "--json-out", "{out}"],
     "not valid JSON", None),
    ("eval-zero-episodes", ["eval", "--checkpoint", "{fx}/sac_ck", "--episodes", "0", "--json-out", "{out}"],
     "episodes and num_envs must be >= 1", None),
    # pretrain
    ("pretrain-missing-dataset", ["pretrain", "--dataset", "{fx}/missing.hdf5", "--run-dir", "{out}"],
     "does not exist", None),
    ("pretrain-not-libero-layout", ["pretrain", "--dataset", "{fx}/not_libero.hdf5", "--run-dir", "{out}"],
     "not a LIBERO dataset", None),
    ("pretrain-not-hdf5", ["pretrain", "--dataset", "{fx}/text.hdf5", "--run-dir", "{out}"],
     "not an HDF5 file", None),
    ("pretrain-agent-without-bc", ["pretrain", "--dataset", "{fx}/not_libero.hdf5", "--run-dir", "{out}",
                                   "--agent", "stable_baselines3:SAC"],
     "can be behaviour-cloned (one of ['gaussian-ppo', 'diffusion-ppo'])", None),
    # student
    ("student-missing-dataset", ["student", "--dataset", "{fx}/missing.hdf5", "--run-dir", "{out}"], "does not exist", None),
    ("student-not-libero-layout", ["student", "--dataset", "{fx}/not_libero.hdf5", "--run-dir", "{out}"],
     "not a LIBERO dataset", None),
    ("student-unknown-head", ["student", "--dataset", "{fx}/not_libero.hdf5", "--run-dir", "{out}", "--head", "mlp"],
     "--head", None),
    ("student-zero-episodes", ["student", "--dataset", "{fx}/not_libero.hdf5", "--run-dir", "{out}",
                               "--episodes-per-task", "0"], "episodes_per_task must be >= 1", None),
    ("eval-all-and-indices", ["eval", "--checkpoint", "{fx}/sac_ck", "--task-id", "all", "3", "--json-out", "{out}"],
     "indices or all alone", None),
    # collect
    ("collect-single-task-id-other-task", ["collect", "--out", "{out}", "--env", "LIBERO-Goal-Task3-v0",
                                           "--task-id", "5"], "single-task id", None),
    ("collect-unknown-policy", ["collect", "--out", "{out}", "--policy", "nope"], "policy must be one of", None),
    ("collect-negative-episodes", ["collect", "--out", "{out}", "--episodes", "-1"], "episodes must be >= 1", None),
    ("collect-tiny-images", ["collect", "--out", "{out}", "--image-size", "8"], "image_size must be in", None),
    ("collect-max-below-episodes", ["collect", "--out", "{out}", "--episodes", "5", "--max-episodes", "2"],
     "max_episodes must be >=", None),
    ("collect-corrupt-checkpoint", ["collect", "--out", "{out}", "--policy", "checkpoint", "--checkpoint",
                                    "{fx}/corrupt_ck", "--episodes", "1", "--max-episode-steps", "5", "--no-images",
                                    "--no-progress"], "not valid JSON", None),
    # generate
    ("generate-unknown-env", ["generate", "--out", "{out}", "--env", "LIBERO-Nope-v0"], "env must be one of", None),
    # --backend / --ray-address (every command with env workers: tests/libero_gym/test_backend.py)
    ("collect-unknown-backend", ["collect", "--out", "{out}", "--backend", "cloud"], "--backend", None),
    ("train-ray-address-without-ray", ["train", "--ray-address", "127.0.0.1:9", "--run-dir", "{out}"],
     "--ray-address needs --backend ray", None),
    ("generate-unreachable-ray", ["generate", "--out", "{out}", "--backend", "ray", "--ray-address", "127.0.0.1:9"],
     "no Ray cluster at --ray-address 127.0.0.1:9", None),
    # export / stats
    ("export-not-a-collection", ["export", "{fx}/empty_dir", "--out", "{out}"], "no collected episodes", None),
    ("export-bad-compression", ["export", "{fx}/empty_dir", "--out", "{out}", "--compression", "zip"],
     "--compression", None),
    ("stats-not-libero-layout", ["stats", "{fx}/not_libero.hdf5", "--plots", "{out}"], "not a LIBERO dataset", None),
    ("stats-not-hdf5", ["stats", "{fx}/text.hdf5", "--plots", "{out}"], "not an HDF5 file", None),
    ("stats-folder-without-files", ["stats", "{fx}/empty_dir", "--plots", "{out}"], "without *.hdf5 files", None),
]


@pytest.fixture(scope="module")
def bad_inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ``{fx}`` folder of bad inputs."""
    import h5py
    import torch

    fx = tmp_path_factory.mktemp("bad_inputs")
    with h5py.File(fx / "not_libero.hdf5", "w") as handle:
        handle.create_dataset("foo", data=[1, 2, 3])
    (fx / "text.hdf5").write_text("not an HDF5 file\n")
    (fx / "empty_dir").mkdir()
    # A well-formed checkpoint of another agent (SB3's SAC): valid agent.json and params.pt.
    buffer = io.BytesIO()
    torch.save({"params": {}, "variables": {}, "rng": {}}, buffer)
    blob = buffer.getvalue()
    meta = {
        "format_version": 1, "agent": "sac", "class_path": "stable_baselines3:SAC", "config": {},
        "env": {"env_id": "LIBERO-Goal-v0", "task_ids": [0], "obs_mode": "state"},
        "observation_space": {}, "action_space": {}, "num_timesteps": 0,
        "params_bytes": len(blob), "params_sha256": hashlib.sha256(blob).hexdigest(),
    }
    (fx / "sac_ck").mkdir()
    (fx / "sac_ck" / "agent.json").write_text(json.dumps(meta))
    (fx / "sac_ck" / "params.pt").write_bytes(blob)
    (fx / "corrupt_ck").mkdir()
    (fx / "corrupt_ck" / "agent.json").write_text("{not json")
    (fx / "corrupt_ck" / "params.pt").write_bytes(b"\x00" * 8)
    return fx


def _snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """path -> (size, mtime_ns) of every file under ``roots`` (what a command could have written)."""
    files: dict[str, tuple[int, int]] = {}
    for root in roots:
        if root.is_file():
            files[str(root)] = (root.stat().st_size, root.stat().st_mtime_ns)
        elif root.is_dir():
            for path in root.rglob("*"):
                stat = path.stat()
                files[str(path)] = (stat.st_size if path.is_file() else -1, stat.st_mtime_ns)
    return files


def _run(argv: list[str]) -> tuple[int, str]:
    """Run ``argv`` as a process, ``python cli.py argv`` from the repo root or the installed ``libero-gym``
    script when ``argv[0]`` is that script; return (exit code, stderr). Kills it past TIMEOUT_S."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "200"}
    command = argv if Path(argv[0]).name == "libero-gym" else [sys.executable, "cli.py", *argv]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdin=subprocess.DEVNULL,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # its own process group: the command and its workers
        proc.communicate()
        pytest.fail(f"still running after {TIMEOUT_S} s: the command started real work instead of refusing")
    return proc.returncode, err


def _run_in_process(argv: list[str], capsys: pytest.CaptureFixture[str],
                    monkeypatch: pytest.MonkeyPatch) -> tuple[int, str]:
    """``cli.main(argv)`` from the repo root, as ``python cli.py argv`` runs it; return (exit code, stderr).
    An exception that escapes ``main`` (a traceback for the user) fails the test."""
    import cli

    monkeypatch.chdir(REPO)
    monkeypatch.setenv("COLUMNS", "200")
    capsys.readouterr()
    code = cli.main(argv)
    return code, capsys.readouterr().err


def _check_refusal(argv: list[str], message: str, bad_inputs: Path, tmp_path: Path,
                   run: Callable[[list[str]], tuple[int, str]]) -> None:
    """``run(argv)`` refuses with one line on stderr containing ``message``, exit code 2, nothing written."""
    out = tmp_path / "out"
    args = [a.replace("{out}", str(out)).replace("{fx}", str(bad_inputs)) for a in argv]
    watched = (bad_inputs, REPO / "runs", REPO / "stats_plots")  # train's and stats' default outputs
    before = _snapshot(*watched)

    code, err = run(args)

    assert "Traceback" not in err, err
    lines = [line for line in ANSI.sub("", err).splitlines() if line.strip() and not NOISE.match(line)]
    assert len(lines) == 1, f"stderr is not one line: {lines}"
    assert lines[0].startswith("error:") and message in lines[0], lines[0]
    assert code == 2, f"exit code {code}: {lines[0]}"
    assert not out.exists(), f"{out} was written"
    assert _snapshot(*watched) == before, "files changed"


@pytest.mark.timeout(TIMEOUT_S)  # past this, the command started real work instead of refusing
@pytest.mark.parametrize(
    ("argv", "message"),
    [pytest.param(argv, message, id=case_id, marks=[pytest.mark.xfail(strict=True, reason=reason)] if reason else [])
     for case_id, argv, message, reason in CASES],
)
def test_bad_input_is_one_line_exit_2_nothing_written(argv: list[str], message: str, bad_inputs: Path,
                                                      tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _check_refusal(argv, message, bad_inputs, tmp_path, lambda args: _run_in_process(args, capsys, monkeypatch))


SCRIPT = Path(sys.executable).with_name("libero-gym")
"""The console script ``pip install`` puts beside the interpreter (``make install`` does)."""


@pytest.mark.parametrize(
    ("script", "case_id"),
    [("cli.py", "envs-unknown-suite"),  # a parse error (tyro), before any command runs
     ("libero-gym", "pretrain-not-hdf5")],  # an error the command's function raises, after parsing
)
def test_bad_input_as_a_process(script: str, case_id: str, bad_inputs: Path, tmp_path: Path) -> None:
    """The same refusal from a real process: ``python cli.py`` and the installed script (their exit code is
    ``main``'s return value; stderr holds only the one line, robosuite's import noise aside)."""
    if script == "libero-gym" and not SCRIPT.exists():
        pytest.skip(f"no installed console script at {SCRIPT} (make install puts it there)")
    (argv, message) = next((argv, message) for id_, argv, message, _ in CASES if id_ == case_id)
    prefix = [str(SCRIPT)] if script == "libero-gym" else []
    _check_refusal(argv, message, bad_inputs, tmp_path, lambda args: _run([*prefix, *args]))


def test_cases_cover_every_subcommand() -> None:
    import cli

    covered = {argv[0] for _, argv, _, _ in CASES}
    assert set(cli.COMMANDS) <= covered, set(cli.COMMANDS) - covered
    assert len(CASES) >= 20


def test_console_script_is_the_cli() -> None:
    """pyproject installs ``libero-gym`` as ``cli:main`` (cli.py packaged as a top-level module)."""
    import importlib
    import tomllib

    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    target = project["project"]["scripts"]["libero-gym"]
    assert "cli" in project["tool"]["setuptools"]["py-modules"]
    module, _, attr = target.partition(":")
    main = getattr(importlib.import_module(module), attr)
    with pytest.raises(SystemExit) as exit_:  # what the installed script runs, with argv from the command line
        main(["envs", "--help"])
    assert exit_.value.code == 0
    assert main(["envs", "--suite", "nope"]) == 2


# ---------------------------------------------------------------------- --agent NAME (in process: the parser only)
AGENT_FORMS: list[tuple[str, list[str], type, str, dict[str, Any]]] = [
    # (id, argv, command config, agent config class name, agent fields the flags set)
    ("train-diffusion", ["train", "--agent", "diffusion-ppo", "--agent.actor-lr", "1e-5", "--env", "LIBERO-Goal-v0"],
     TrainConfig, "DiffusionPPOConfig", {"actor_lr": 1e-5}),
    ("train-gaussian-flags-first", ["train", "--agent.n-steps", "8", "--env", "LIBERO-Goal-v0", "--agent=gaussian-ppo"],
     TrainConfig, "GaussianPPOConfig", {"n_steps": 8}),
    ("train-sb3-class", ["train", "--agent", "stable_baselines3:PPO", "--agent.kwargs", '{"n_steps": 8}'],
     TrainConfig, "SB3AgentConfig", {"class_path": "stable_baselines3:PPO", "kwargs": '{"n_steps": 8}'}),
    ("train-builtin-by-class", ["train", "--agent", "agents.diffusion_ppo:DiffusionPPO"],
     TrainConfig, "DiffusionPPOConfig", {}),
    ("train-default", ["train"], TrainConfig, "GaussianPPOConfig", {}),
    ("train-earlier-spelling", ["train", "agent:diffusion-ppo", "--agent.actor-lr", "1e-5"],
     TrainConfig, "DiffusionPPOConfig", {"actor_lr": 1e-5}),
    ("pretrain-gaussian", ["pretrain", "--dataset", "d.hdf5", "--run-dir", "r", "--agent", "gaussian-ppo",
                           "--agent.net-arch", "32", "32"],
     PretrainConfig, "GaussianPPOConfig", {"net_arch": (32, 32)}),
    ("pretrain-default", ["pretrain", "--dataset", "d.hdf5", "--run-dir", "r", "--agent.policy.horizon-steps", "8"],
     PretrainConfig, "DiffusionPPOConfig", {"chunk_size": 8}),
]


@pytest.mark.parametrize(("argv", "command", "agent", "fields"), [case[1:] for case in AGENT_FORMS],
                         ids=[case[0] for case in AGENT_FORMS])
def test_agent_flag_selects_the_config(argv: list[str], command: type, agent: str, fields: dict[str, Any]) -> None:
    import cli

    config = cli._parse(argv)
    assert type(config) is command and type(config.agent).__name__ == agent
    assert {name: getattr(config.agent, name) for name in fields} == fields


@pytest.mark.parametrize("argv", [["train", "--agent", "nope"], ["pretrain", "--dataset", "d", "--run-dir", "r",
                                                                 "--agent=nope"], ["train", "--agent"]])
def test_unknown_agent_is_one_line_listing_the_agents(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    import cli

    assert cli.main(argv) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error:") and "['diffusion-ppo', 'gaussian-ppo']" in line and "module:Class" in line


def _help(argv: list[str], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> str:
    import cli

    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit) as exit_:
        cli.main([*argv, "--help"])
    assert exit_.value.code == 0
    captured = capsys.readouterr()
    return ANSI.sub("", captured.out + captured.err)


@pytest.mark.parametrize("command", ["train", "pretrain"])
def test_help_lists_the_agents_fields(command: str, capsys: pytest.CaptureFixture[str],
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """`COMMAND --agent diffusion-ppo --help` shows the agent's and its policy's fields with their docstrings;
    `COMMAND --help` lists the agents."""
    text = _help([command, "--agent", "diffusion-ppo"], capsys, monkeypatch)
    for flag, doc in [("--agent.actor-lr", "Adam learning rate of the fine-tuned denoiser"),
                      ("--agent.policy.horizon-steps", "Ta, actions per chunk"),
                      ("--agent.policy.encoder.state-dims", "Hidden sizes of the state MLP")]:
        assert flag in text and doc in text, flag
    assert "--agent.net-arch" in _help([command, "--agent", "gaussian-ppo"], capsys, monkeypatch)
    text = _help([command], capsys, monkeypatch)
    assert all(name in text for name in ("--agent NAME", "gaussian-ppo", "diffusion-ppo", "module:Class")), text
    assert "agent:" not in text


# ---------------------------------------------------------------------- generate --config FILE
CONFIG_FILE_ERRORS: list[tuple[str, str, str | None, str]] = [
    # (id, file name, its text (None: no file), what the one line says besides the file)
    ("yaml-syntax", "g.yaml", "out: x\nrl_steps: [5000\nepisodes: 3\n", "not valid YAML at line 3, column 9"),
    ("yaml-mapping-value", "g.yml", "out: x\nseed: a: b\n", "not valid YAML at line 2, column 8"),
    ("json-syntax", "g.json", '{"out": "x",\n "episodes": }\n', "not valid JSON at line 2, column 14"),
    ("missing-file", "missing.yaml", None, "cannot read it"),
    ("not-utf8", "g.yaml", "\udcff", "cannot read it"),
    ("not-a-mapping", "g.yaml", "- out\n- x\n", "must hold a mapping of settings (name: value), got a list"),
    ("empty", "g.yaml", "", "got an empty file"),
    ("unknown-field", "g.yaml", "out: x\nepisodez: 3\n", "unknown settings ['episodez']; valid: ['agent',"),
    ("wrong-type", "g.yaml", "out: x\nepisodes: ten\n", "episodes must be an integer, got 'ten'"),
    ("wrong-type-bool", "g.json", '{"images": "yes"}', "images must be true or false, got 'yes'"),
    ("wrong-choice", "g.yaml", "formats: [hdf5, parquet]\n",
     "formats must be a list (each item one of ['hdf5', 'lerobot', 'rlds'])"),
    ("nested-value", "g.yaml", "seed: {a: 1}\n", "seed must be an integer, got {'a': 1}"),
]


@pytest.mark.parametrize(("name", "text", "message"), [case[1:] for case in CONFIG_FILE_ERRORS],
                         ids=[case[0] for case in CONFIG_FILE_ERRORS])
def test_config_file_error_is_one_line_naming_the_file(name: str, text: str | None, message: str, tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import cli

    path = tmp_path / name
    if text is not None:
        path.write_bytes(text.encode("utf-8", "surrogateescape"))
    out = tmp_path / "out"
    assert cli.main(["generate", "--out", str(out), "--config", str(path)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith(f"error: --config {path}: ") and message in line, line
    assert not out.exists()
