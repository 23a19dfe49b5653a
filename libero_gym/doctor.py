"""``cli.py doctor``: check the set-up one piece at a time and say what to fix."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import os
import subprocess
import sys
import textwrap
from collections.abc import Callable

from libero_gym import libero_config
from libero_gym.errors import InvalidInputError
from libero_gym.registration import all_env_ids

Check = tuple[str, Callable[[], str]]


@dataclasses.dataclass(frozen=True)
class DoctorConfig:
    """Check LIBERO's config, the asset folder, the GL backend and one env step; say what to fix."""

    env_id: str = "LIBERO-Goal-v0"
    """Env to step once."""
    pixels: bool = True
    """Also render one pixel observation (checks the GL backend)."""

# Versions the project is tested with (pyproject.toml pins); a mismatch is a warning.
EXPECTED_VERSIONS = {"robosuite": "1.4.0", "bddl": "1.0.1", "libero": "0.1.1"}


def _packages() -> str:
    found = []
    for name in ("libero", "robosuite", "mujoco", "bddl", "gymnasium", "torch", "stable_baselines3"):
        try:
            version = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            raise RuntimeError(f"{name} is not installed: run `make install` (README, Install)") from None
        expected = EXPECTED_VERSIONS.get(name)
        if expected and version != expected:
            raise RuntimeError(f"{name} {version} installed, {expected} expected: run `make install`")
        found.append(f"{name} {version}")
    mujoco_version = importlib.metadata.version("mujoco")
    if not mujoco_version.startswith("3.3."):
        raise RuntimeError(f"mujoco {mujoco_version}: pin mujoco>=3.3,<3.4 (3.4 changes LIBERO's settling)")
    return ", ".join(found)


def _config() -> str:
    path = libero_config.ensure_libero_config()
    return f"LIBERO config at {path / 'config.yaml'} (LIBERO_CONFIG_PATH)"


def _assets() -> str:
    return f"{libero_config.resolve_assets_path()} (${libero_config.ASSETS_ENV_VAR})"


def _gl() -> str:
    backend = libero_config.select_gl_backend()
    # A broken GL driver can abort the process, so the context is made in a child.
    code = textwrap.dedent(
        """
        import mujoco
        ctx = mujoco.GLContext(64, 64)
        ctx.make_current()
        ctx.free()
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ)
    if result.returncode != 0:
        tail = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise RuntimeError(
            f"MUJOCO_GL={backend} cannot make a context ({tail}); install Mesa's EGL (libegl1) or OSMesa "
            "(libosmesa6) and set MUJOCO_GL=egl or MUJOCO_GL=osmesa"
        )
    return f"MUJOCO_GL={backend} makes a context"


def _step(env_id: str, obs_mode: str) -> Callable[[], str]:
    def check() -> str:
        import gymnasium as gym
        import numpy as np

        import libero_gym  # noqa: F401

        env = gym.make(env_id, obs_mode=obs_mode)
        try:
            obs, info = env.reset(seed=0)
            obs, reward, terminated, truncated, info = env.step(np.zeros(7, dtype=np.float32))
        finally:
            env.close()
        shapes = ", ".join(f"{k}{getattr(v, 'shape', '')}" for k, v in obs.items())
        if obs_mode == "pixels" and int(obs["agentview_image"].max()) == 0:
            raise RuntimeError("rendered image is blank: check the GL backend and the asset folder's textures")
        return f"{env_id} ({obs_mode}) reset and stepped: {shapes}"

    return check


def run_checks(env_id: str = "LIBERO-Goal-v0", pixels: bool = True) -> int:
    """Run every check in order, print a table, return 0 if all passed."""
    from rich.console import Console
    from rich.table import Table

    checks: list[Check] = [
        ("packages", _packages),
        ("LIBERO config", _config),
        ("assets", _assets),
        ("GL backend", _gl),
        ("env step (state)", _step(env_id, "state")),
    ]
    if pixels:
        checks.append(("env step (pixels)", _step(env_id, "pixels")))
    table = Table(title="libero-gym doctor")
    table.add_column("check")
    table.add_column("status")
    table.add_column("details / what to fix")
    failed = False
    for name, check in checks:
        try:
            details = check()
            table.add_row(name, "[green]ok[/green]", details)
        except Exception as error:  # noqa: BLE001 - every failure is reported, none is fatal
            failed = True
            table.add_row(name, "[red]FAIL[/red]", f"{type(error).__name__}: {error}")
    Console(width=200).print(table)
    return 1 if failed else 0


def doctor(config: DoctorConfig) -> int:
    """Run the checks for ``config``; returns 0 if all pass, 1 otherwise.

    Raises:
        InvalidInputError: ``config.env_id`` is not a libero-gym id.
    """
    if config.env_id not in all_env_ids():
        raise InvalidInputError(f"--env-id must be a libero-gym id (see `python cli.py envs`), got {config.env_id!r}")
    return run_checks(env_id=config.env_id, pixels=config.pixels)
