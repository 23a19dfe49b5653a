"""Shared test set-up: LIBERO asset folder, GL backend, the `slow` marker."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
# Tests and CI use the asset tree that sits beside the checkout (README, Install).
os.environ.setdefault("LIBERO_GYM_ASSETS", str((REPO.parent / "shared" / "libero_assets").resolve()))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])
os.environ.setdefault("LIBERO_GYM_HOME", str(REPO / ".cache" / "libero_gym"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--runslow", action="store_true", default=False, help="run tests marked slow")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--runslow") or os.environ.get("LIBERO_GYM_SLOW") == "1":
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow or LIBERO_GYM_SLOW=1 (make test-slow)")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def suites_where_default(*default: str) -> list[Any]:
    """Every suite as a parameter; those not named in ``default`` are marked slow.

    The per-suite equality tests against raw LIBERO cost 15-35 s each: the default run checks each suite in
    one of them (the other suites run with --runslow), the slow run checks all five in each.
    """
    from libero_gym import suites

    unknown = set(default) - set(suites.SUITES)
    assert not unknown, f"not suites: {sorted(unknown)}"
    return [pytest.param(name, marks=[] if name in default else [pytest.mark.slow]) for name in suites.SUITES]


@pytest.fixture(scope="module")
def local_ray() -> Any:
    """One local Ray for the using module (2 logical CPUs, as this project's CI machines); its workers inherit
    PYTHONPATH, set to this checkout so that they import it and the test policies under tests/."""
    from libero_gym.backend import shutdown, start_or_connect

    path = os.environ.get("PYTHONPATH", "")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), path) if p)
    start_or_connect(None, num_cpus=2)
    yield
    shutdown()
    os.environ["PYTHONPATH"] = path


def assert_runs_cleanly(code: str) -> None:
    """Run ``code`` in a fresh interpreter: exit 0, prints ``done`` last, no EGL error or traceback at exit."""
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("done")
    for marker in ("EGL", "Traceback", "Exception ignored"):
        assert marker not in result.stderr, result.stderr[-2000:]
