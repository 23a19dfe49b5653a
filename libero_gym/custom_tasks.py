"""``LIBERO-Custom-v0``: a task from the user's own BDDL file.

    env = gym.make("LIBERO-Custom-v0", bddl_file="my_task.bddl", obs_mode="pixels")

The file is parsed with LIBERO's own BDDL parser (``libero.libero.envs.bddl_utils``, loaded
from its file: the parser needs only the ``bddl`` package, not the simulator) when the env
is made, so a file LIBERO cannot parse fails at once with one
:class:`~libero_gym.errors.InvalidInputError` line.

Init states: LIBERO's benchmark tasks ship 50 fixed init states; a custom task has none,
so they are sampled as LIBERO's own scripts made them: LIBERO's reset places the objects
in their BDDL regions from numpy's global RNG, so init state ``i`` is the simulator state
(``get_sim_state()``) after a reset with that RNG seeded with ``i``. They are sampled in the
process that first resets the env and cached, keyed by the file's content and their number,
under ``$LIBERO_GYM_HOME/custom_init_states/`` (default ``~/.cache/libero_gym``); later
envs load them from there. Everything else (observation and action spaces, options,
reset, determinism) is that of :class:`libero_gym.env.LiberoEnv`.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import os
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from libero_gym import suites
from libero_gym.atomic_files import atomic_path
from libero_gym.env import LiberoEnv
from libero_gym.env_checks import check_int
from libero_gym.errors import InvalidInputError
from libero_gym.libero_config import HOME_ENV_VAR, libero_package_dir
from libero_gym.libero_reset import seeded_global_numpy
from libero_gym.registration import CUSTOM_MAX_EPISODE_STEPS  # the default step limit

CUSTOM_SUITE = "custom"
"""``Task.suite`` of a custom task (not one of LIBERO's suites)."""

PROBLEM_CLASSES: tuple[str, ...] = (*suites.SCENE_FAMILIES, "libero_coffee_table_manipulation")
"""The ``(:problem ...)`` names LIBERO 0.1.1 builds scenes for (its ``TASK_MAPPING``)."""


@functools.cache
def _bddl_utils() -> ModuleType:
    """LIBERO's ``bddl_utils`` module, loaded from its file (its package ``__init__`` imports the simulator)."""
    path = libero_package_dir() / "envs" / "bddl_utils.py"
    spec = importlib.util.spec_from_file_location("libero_gym._libero_bddl_utils", path)
    if spec is None or spec.loader is None:
        raise ModuleNotFoundError(f"LIBERO's BDDL parser not found at {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def parse_task(bddl_file: str | os.PathLike[str]) -> suites.Task:
    """The :class:`~libero_gym.suites.Task` of a BDDL file, parsed by LIBERO's parser.

    Raises:
        InvalidInputError: no such file, a file LIBERO cannot parse, a problem class LIBERO has
            no scene for, or more objects than libero-gym's object observation holds.
    """
    path = Path(bddl_file).expanduser().resolve()
    if not path.is_file():
        raise InvalidInputError(f"bddl_file must be an existing BDDL file, got {str(bddl_file)!r}")
    try:
        parsed = _bddl_utils().robosuite_parse_problem(str(path))
        if not isinstance(parsed, dict):
            raise ValueError("no (define (problem ...)) form")
        problem = str(parsed["problem_name"]).lower()
        language = " ".join(parsed["language_instruction"])
        goal = tuple(sorted({str(clause[0]).lower() for clause in parsed["goal_state"]}))
        objects = len(parsed["objects"])
    except Exception as error:  # noqa: BLE001  (the parser raises anything from IndexError to bare Exception)
        detail = str(error).strip().splitlines()[0] if str(error).strip() else ""
        raise InvalidInputError(
            f"LIBERO cannot parse BDDL file {path.name}: {type(error).__name__}{': ' + detail if detail else ''}"
        ) from None
    if problem not in PROBLEM_CLASSES:
        raise InvalidInputError(
            f"BDDL file {path.name}: problem must be one of {list(PROBLEM_CLASSES)}, got {problem!r}"
        )
    if objects > suites.MAX_OBJECTS:
        raise InvalidInputError(
            f"BDDL file {path.name} has {objects} objects; the object observation holds at most {suites.MAX_OBJECTS}"
        )
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:16]
    return suites.Task(
        suite=CUSTOM_SUITE, index=0, name=path.stem, language=language, problem_folder=str(path.parent),
        bddl_file=path.name, init_states_file=f"{path.stem}-{digest}", problem_name=problem,
        goal_predicates=goal, num_objects=objects,
    )


def init_states_cache(task: suites.Task, count: int) -> Path:
    """Where the ``count`` sampled init states of a custom task are cached."""
    home = Path(os.environ.get(HOME_ENV_VAR, Path.home() / ".cache" / "libero_gym"))
    return home / "custom_init_states" / f"{task.init_states_file}-n{count}.npy"


def sample_init_states(bddl_path: str, count: int) -> np.ndarray:
    """(count, S) float64: the simulator state after LIBERO's reset with numpy's global RNG seeded 0 .. count-1.

    A simulator without cameras of its own is built for this (in the calling process) and closed.
    """
    from libero.libero.envs.env_wrapper import ControlEnv

    env = ControlEnv(bddl_file_name=bddl_path, use_camera_obs=False, has_offscreen_renderer=False,
                     ignore_done=True, hard_reset=False)
    try:
        states = []
        for seed in range(count):
            with seeded_global_numpy(seed):
                env.reset()
            states.append(np.asarray(env.get_sim_state(), dtype=np.float64).copy())
        return np.stack(states)
    finally:
        env.close()


class CustomLiberoEnv(LiberoEnv):
    """:class:`~libero_gym.env.LiberoEnv` on a task from a BDDL file (module docstring).

    Args:
        bddl_file: path of the BDDL file.
        num_init_states: init states to sample (and to draw from at reset).
        **kwargs: every other :class:`~libero_gym.env.LiberoEnv` argument except ``suite`` and ``task_id``.
    """

    def __init__(self, bddl_file: str | os.PathLike[str], num_init_states: int = suites.NUM_INIT_STATES,
                 **kwargs: Any) -> None:
        check_int("num_init_states", num_init_states, 1, 10_000)
        for name in ("suite", "task_id"):
            if name in kwargs:
                raise InvalidInputError(f"LIBERO-Custom-v0 takes its task from bddl_file; {name} is not an argument")
        self.custom_task = parse_task(bddl_file)
        self.num_init_states = num_init_states
        super().__init__(**kwargs)

    def _catalogue(self, suite: str, task_id: int | Sequence[int] | str) -> tuple[str, tuple[int, ...], int, int]:
        return CUSTOM_SUITE, (0,), 1, CUSTOM_MAX_EPISODE_STEPS

    def _get_task(self, task_id: int) -> suites.Task:
        return self.custom_task

    def _bddl_path(self, task: suites.Task) -> str:
        return os.path.join(task.problem_folder, task.bddl_file)

    def _read_init_states(self, task: suites.Task) -> np.ndarray:
        cache = init_states_cache(task, self.num_init_states)
        if cache.is_file():
            return np.load(cache)
        from libero_gym.libero_config import import_libero

        import_libero(self.assets_path)
        states = sample_init_states(self._bddl_path(task), self.num_init_states)
        with atomic_path(cache) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, states)
        return states
