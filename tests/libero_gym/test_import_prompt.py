"""``import libero_gym`` is enough for LIBERO's own modules to import without a prompt.

LIBERO's ``libero/libero/__init__.py`` calls ``input()`` when its config file is
missing; without a terminal that is an ``EOFError``. Each case runs in a fresh
interpreter with a fresh ``HOME`` and ``LIBERO_GYM_HOME``, no ``LIBERO_CONFIG_PATH``
and no stdin, before any env was built.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("mujoco", "robosuite", "libero", "torch")


def _run(code: str, home: Path, **extra_env: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != "LIBERO_CONFIG_PATH"}
    env.update(HOME=str(home), LIBERO_GYM_HOME=str(home / "libero_gym"), PYTHONPATH=str(REPO), **extra_env)
    return subprocess.run([sys.executable, "-c", code], cwd=home, env=env, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize(
    "statement",
    [
        "from libero.libero import benchmark; print(benchmark.get_benchmark_dict()['libero_goal']().n_tasks)",
        "import libero.libero.envs; print('envs')",
    ],
    ids=["benchmark", "envs"],
)
def test_libero_imports_after_libero_gym_without_prompt(tmp_path: Path, statement: str) -> None:
    code = (
        "import sys, libero_gym\n"
        f"assert not [m for m in {HEAVY!r} if m in sys.modules], 'import libero_gym is not light'\n"
        f"{statement}\n"
    )
    result = _run(code, tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "EOFError" not in result.stderr and "Do you want" not in result.stdout
    config = tmp_path / "libero_gym" / "libero_config" / "config.yaml"
    assert config.is_file(), "libero_gym did not write LIBERO's config under LIBERO_GYM_HOME"
    assert "bddl_files:" in config.read_text()
    assert not (tmp_path / ".libero").exists(), "LIBERO wrote its default ~/.libero"


def test_a_complete_user_config_is_kept(tmp_path: Path) -> None:
    """A LIBERO_CONFIG_PATH that holds a config is used as is (not rewritten, nothing else written)."""
    user = tmp_path / "my_libero"
    user.mkdir()
    result = _run("import libero_gym, libero.libero as l; print(l.get_libero_path('datasets'))", tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    text = (tmp_path / "libero_gym" / "libero_config" / "config.yaml").read_text().replace(
        result.stdout.strip(), str(tmp_path / "my_datasets")
    )
    (user / "config.yaml").write_text(text)
    (tmp_path / "libero_gym").rename(tmp_path / "first_home")

    result = _run("import libero_gym, libero.libero as l; print(l.get_libero_path('datasets'))", tmp_path,
                  LIBERO_CONFIG_PATH=str(user))
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == str(tmp_path / "my_datasets")
    assert (user / "config.yaml").read_text() == text
    assert not (tmp_path / "libero_gym").exists()
