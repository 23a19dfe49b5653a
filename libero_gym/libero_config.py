"""Make LIBERO importable on a headless machine without prompts or downloads.

Importing ``libero.libero`` has three side effects this module neutralises:

1. It calls ``input()`` when ``$LIBERO_CONFIG_PATH/config.yaml`` does not exist.
   :func:`ensure_libero_config` writes that file first (into a folder of ours
   unless the user already points ``LIBERO_CONFIG_PATH`` at a complete config).
2. It resolves meshes and textures through ``libero.libero.get_assets_path()``,
   which looks inside the installed package (the PyPI wheel ships no assets) and
   otherwise downloads them. :func:`import_libero` sets LIBERO's module-level
   cache ``_assets_path_cache`` to the folder chosen by :func:`resolve_assets_path`.
3. robosuite picks its OpenGL backend from ``MUJOCO_GL`` at import time.
   :func:`select_gl_backend` sets it (EGL, else OSMesa) unless the user did.

Everything here is cheap and idempotent; nothing imports MuJoCo or robosuite
except :func:`import_libero`, which is only called inside the process that
builds a simulator.
"""

from __future__ import annotations

import ctypes.util
import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

from libero_gym.errors import AssetsNotFoundError

ASSETS_ENV_VAR = "LIBERO_GYM_ASSETS"
"""Environment variable naming the LIBERO asset folder (meshes, textures, scenes)."""

HOME_ENV_VAR = "LIBERO_GYM_HOME"
"""Environment variable naming where libero-gym keeps its LIBERO config file."""

GL_ENV_VAR = "MUJOCO_GL"
"""MuJoCo/robosuite's own variable for the OpenGL backend: ``egl``, ``osmesa`` or ``glfw``."""

# The sub-folders and one file per family that LIBERO's MJCF files load. If any is
# missing the asset tree is not usable, and robosuite would fail much later with a
# parse error deep inside MuJoCo.
REQUIRED_ASSET_ENTRIES: tuple[str, ...] = (
    "scenes",
    "textures",
    "articulated_objects",
    "stable_hope_objects",
    "stable_scanned_objects",
    "turbosquid_objects",
    "serving_region.xml",
    "scenes/libero_tabletop_base_style.xml",
    "articulated_objects/wooden_cabinet.xml",
)


def _default_home() -> Path:
    return Path(os.environ.get(HOME_ENV_VAR, Path.home() / ".cache" / "libero_gym"))


def libero_package_dir() -> Path:
    """The installed ``libero/libero`` folder, found without importing it."""
    spec = importlib.util.find_spec("libero")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError(
            "The 'libero' package is not installed; install it with "
            "`pip install --no-deps libero==0.1.1` (see README, Install)."
        )
    return Path(spec.origin).parent / "libero"


def resolve_assets_path(assets_path: str | os.PathLike[str] | None = None) -> Path:
    """Return the LIBERO asset folder to use, checked for completeness.

    Order: the ``assets_path`` argument, then ``$LIBERO_GYM_ASSETS``, then an
    ``assets/`` folder inside the installed ``libero`` package (upstream LIBERO
    installs have one; the PyPI wheel does not).

    Raises:
        AssetsNotFoundError: no folder was given and none is installed, or the
            folder lacks the files LIBERO's scenes load.
    """
    if assets_path is None:
        assets_path = os.environ.get(ASSETS_ENV_VAR) or None
    if assets_path is None:
        try:
            installed = libero_package_dir() / "assets"
        except ModuleNotFoundError:
            installed = None
        if installed is not None and installed.is_dir():
            assets_path = installed
    if assets_path is None:
        raise AssetsNotFoundError(
            "No LIBERO asset folder (meshes, textures, scenes) is configured: set "
            f"${ASSETS_ENV_VAR} to a full copy of LIBERO's `libero/libero/assets` tree "
            "or pass assets_path=... to gym.make."
        )
    path = Path(assets_path).expanduser().resolve()
    missing = [entry for entry in REQUIRED_ASSET_ENTRIES if not (path / entry).exists()]
    if missing:
        what = "does not exist" if not path.exists() else f"is incomplete (missing {', '.join(missing)})"
        raise AssetsNotFoundError(
            f"LIBERO asset folder {path} {what}: set ${ASSETS_ENV_VAR} (or assets_path=...) "
            "to a full copy of LIBERO's `libero/libero/assets` tree."
        )
    return path


def ensure_libero_config() -> Path:
    """Make sure ``$LIBERO_CONFIG_PATH/config.yaml`` exists, so LIBERO never prompts.

    If the user set ``LIBERO_CONFIG_PATH`` and a config is there, it is used as is.
    Otherwise a config pointing at the installed package's BDDL and init-state files
    is written under ``$LIBERO_GYM_HOME`` (default ``~/.cache/libero_gym``) and
    ``LIBERO_CONFIG_PATH`` is set to it for this process and its children.

    Returns:
        The folder holding ``config.yaml``.
    """
    user_dir = os.environ.get("LIBERO_CONFIG_PATH")
    if user_dir and (Path(user_dir) / "config.yaml").is_file():
        return Path(user_dir)
    config_dir = Path(user_dir) if user_dir else _default_home() / "libero_config"
    config_file = config_dir / "config.yaml"
    root = libero_package_dir()
    wanted = {
        "benchmark_root": str(root),
        "bddl_files": str(root / "bddl_files"),
        "init_states": str(root / "init_files"),
        "datasets": str(config_dir / "datasets"),
        # LIBERO 0.1.1 does not read this key for assets (see import_libero); kept for
        # tools that do.
        "assets": str(root / "assets"),
    }
    text = "".join(f"{key}: {value}\n" for key, value in wanted.items())
    if not config_file.is_file() or config_file.read_text() != text:
        config_dir.mkdir(parents=True, exist_ok=True)
        # Write then rename, so that parallel workers never read a half-written file.
        tmp = config_file.with_suffix(f".tmp{os.getpid()}")
        tmp.write_text(text)
        os.replace(tmp, config_file)
    os.environ["LIBERO_CONFIG_PATH"] = str(config_dir)
    return config_dir


def prepare_libero_import() -> Path | None:
    """Best-effort :func:`ensure_libero_config`, run by ``import libero_gym``.

    So that ``import libero_gym`` followed by ``from libero.libero import benchmark``
    (or ``libero.libero.envs``) never prompts, even before any env was built. Cheap:
    it finds the installed ``libero`` package without importing it (nor MuJoCo or
    robosuite) and rewrites the config only when it differs. Never raises: without
    LIBERO installed, or where the folder is not writable, it does nothing and
    returns ``None`` (building an env reports the actual problem).
    """
    try:
        return ensure_libero_config()
    except (ModuleNotFoundError, OSError):
        return None


def select_gl_backend() -> str:
    """Choose the headless OpenGL backend unless ``$MUJOCO_GL`` is already set.

    EGL first (hardware where there is a GPU, Mesa's software renderer otherwise),
    then OSMesa. Must run before robosuite is imported, which reads the variable at
    import time. ``PYOPENGL_PLATFORM`` is set to match, as PyOpenGL needs.

    Returns:
        The backend in force.
    """
    backend = os.environ.get(GL_ENV_VAR, "").strip().lower()
    if not backend:
        if ctypes.util.find_library("EGL"):
            backend = "egl"
        elif ctypes.util.find_library("OSMesa"):
            backend = "osmesa"
        else:
            # Nothing headless found: EGL is still the most likely to work (the
            # library may live outside the linker's search path); doctor reports it.
            backend = "egl"
        os.environ[GL_ENV_VAR] = backend
    if backend in ("egl", "osmesa"):
        os.environ.setdefault("PYOPENGL_PLATFORM", backend)
    return backend


def _quiet_robosuite_macros() -> None:
    """Stop robosuite's three "No private macro file found!" warnings at import.

    robosuite imports ``robosuite.macros_private`` if a user made one and warns
    otherwise; its defaults are what LIBERO runs with. Without a user file, an
    empty module stands in for it (same macros, no warnings on every CLI command).
    """
    spec = importlib.util.find_spec("robosuite")
    if spec is None or spec.origin is None or "robosuite.macros_private" in sys.modules:
        return
    if not (Path(spec.origin).parent / "macros_private.py").exists():
        sys.modules["robosuite.macros_private"] = ModuleType("robosuite.macros_private")


def import_libero(assets_path: str | os.PathLike[str] | None = None) -> ModuleType:
    """Import ``libero.libero`` with config, assets and GL backend set up.

    Args:
        assets_path: the LIBERO asset folder; see :func:`resolve_assets_path`.

    Returns:
        The ``libero.libero`` module, its asset lookup pointing at the folder.
    """
    assets = resolve_assets_path(assets_path)
    ensure_libero_config()
    select_gl_backend()
    _quiet_robosuite_macros()
    import libero.libero as libero_pkg

    # LIBERO caches the asset folder in this module global and returns it from
    # get_assets_path() as long as it exists; setting it skips the hub download.
    libero_pkg._assets_path_cache = str(assets)
    return libero_pkg
