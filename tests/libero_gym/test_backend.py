"""``--backend {local,ray}`` and ``--ray-address``: one place for both flags, and bad values are one line and exit 2.

No simulator and no Ray cluster here: an unreachable address is refused by a TCP probe before
anything is written, a bad backend by the parser; the start timeout runs in a fresh interpreter.
"""

from __future__ import annotations

import dataclasses
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import cli
from agents.configs import EvalConfig, TrainConfig
from agents.pipeline import GenerateConfig
from libero_gym.backend import BackendConfig, probe_address
from libero_gym.data.commands import CollectConfig
from libero_gym.errors import InvalidInputError

COMMANDS = {
    "train": ["train"],
    "eval": ["eval", "--checkpoint", "{tmp}/no_checkpoint"],
    "collect": ["collect", "--out", "{tmp}/out"],
    "generate": ["generate", "--out", "{tmp}/out", "--no-progress"],
}
"""Each command with env workers, with its required arguments (``train`` writes under runs/: given --run-dir)."""


def _free_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_flags_live_in_one_place() -> None:
    for config_cls in (TrainConfig, EvalConfig, CollectConfig, GenerateConfig):
        assert issubclass(config_cls, BackendConfig)
        names = [field.name for field in dataclasses.fields(config_cls)]
        assert names.count("backend") == 1 and names.count("ray_address") == 1
    ray = CollectConfig(out="x", backend="ray", ray_address="head:6379")
    assert ray.vectorization_mode("async") == "ray"
    assert ray.ray_flags() == ["--backend", "ray", "--ray-address", "head:6379"]
    assert ray.ray_flags("10.0.0.1:6379")[-1] == "10.0.0.1:6379"
    local = CollectConfig(out="x")
    assert local.vectorization_mode("sync") == "sync" and local.ray_flags() == []
    with pytest.raises(InvalidInputError, match=r"backend must be one of \['local', 'ray'\], got 'cloud'"):
        CollectConfig(out="x", backend="cloud").check_backend()  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="--ray-address needs --backend ray"):
        TrainConfig(ray_address="head:6379").validate()
    with pytest.raises(InvalidInputError, match="auto or HOST:PORT"):
        probe_address("head")


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_bad_backend_or_unreachable_address_is_one_line_exit_2(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [a.replace("{tmp}", str(tmp_path)) for a in COMMANDS[command]]
    if command == "train":
        argv += ["--run-dir", str(tmp_path / "out")]
    assert cli.main([*argv, "--backend", "cloud"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--backend" in err and "'local', 'ray'" in err, err

    address = f"127.0.0.1:{_free_port()}"
    assert cli.main([*argv, "--backend", "ray", "--ray-address", address]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"error: no Ray cluster at --ray-address {address}: Connection refused", err
    assert not (tmp_path / "out").exists(), "nothing written"


def test_a_ray_start_timeout_is_one_line() -> None:
    """A local Ray that does not come up within the start timeout: an error that names it, no hang."""
    code = (
        "import libero_gym.backend as b\n"
        "b.RAY_START_TIMEOUT_S = 0.01\n"
        "from libero_gym.errors import LiberoGymError\n"
        "try:\n"
        "    b.start_or_connect(None, num_cpus=1)\n"
        "except LiberoGymError as error:\n"
        "    print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "could not start a local Ray within 0 s (machine overloaded?)"
