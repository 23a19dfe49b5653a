"""``LIBERO-Custom-v0``: a task from a BDDL file, its sampled and cached init states, parse errors."""

from __future__ import annotations

import shutil
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

import libero_gym  # noqa: F401
from libero_gym import custom_tasks
from libero_gym.errors import InvalidInputError
from libero_gym.libero_config import libero_package_dir

SOURCE = "libero_goal/put_the_bowl_on_the_plate.bddl"


@pytest.fixture
def bddl_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A user's BDDL file (a copy of a LIBERO one, under another name) and an empty libero-gym home."""
    monkeypatch.setenv("LIBERO_GYM_HOME", str(tmp_path / "home"))
    path = tmp_path / "my_bowl_task.bddl"
    shutil.copy(libero_package_dir() / "bddl_files" / SOURCE, path)
    return path


def test_custom_task_samples_caches_and_restores_init_states(bddl_file: Path) -> None:
    env = gym.make("LIBERO-Custom-v0", bddl_file=str(bddl_file), num_init_states=3, settle_steps=0)
    try:
        task = env.unwrapped.task
        assert (task.language, task.problem_name, task.goal_predicates) == (
            "put the bowl on the plate", "libero_tabletop_manipulation", ("on",))
        assert env.spec.max_episode_steps == custom_tasks.CUSTOM_MAX_EPISODE_STEPS
        cache = custom_tasks.init_states_cache(task, 3)
        assert not cache.exists()
        obs, info = env.reset(seed=0, options={"init_state_id": 2})
        assert env.observation_space.contains(obs) and info["language_instruction"] == task.language
        states = np.load(cache)  # sampled at the first reset, cached
        assert states.shape[0] == 3 and not np.array_equal(states[0], states[1])  # seeds place objects apart
        np.testing.assert_array_equal(env.unwrapped.get_sim_state(), states[2])  # no settle steps: the init state
        with pytest.raises(InvalidInputError, match=r"init_state_id'\] must be an int in \[0, 2\]"):
            env.reset(options={"init_state_id": 3})
    finally:
        env.close()
    again = gym.make("LIBERO-Custom-v0", bddl_file=str(bddl_file), num_init_states=3)
    try:
        np.testing.assert_array_equal(again.unwrapped.init_states(), states)  # read back from the cache
    finally:
        again.close()


@pytest.mark.parametrize(
    "text,match",
    [
        ("(define (problem LIBERO_Tabletop_Manipulation) (:objects bowl - akita_black_bowl",
         "Missing close parenthesis"),
        ("(not a problem)", "LIBERO cannot parse BDDL file bad.bddl"),
    ],
)
def test_unparseable_bddl_is_one_line_error(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.bddl"
    path.write_text(text)
    with pytest.raises(InvalidInputError, match=match) as error:
        gym.make("LIBERO-Custom-v0", bddl_file=str(path))
    assert "\n" not in str(error.value)


def test_other_bddl_errors(tmp_path: Path, bddl_file: Path) -> None:
    with pytest.raises(InvalidInputError, match="must be an existing BDDL file"):
        gym.make("LIBERO-Custom-v0", bddl_file=str(tmp_path / "missing.bddl"))
    other = tmp_path / "other.bddl"
    other.write_text(bddl_file.read_text().replace("LIBERO_Tabletop_Manipulation", "My_Own_Scene"))
    with pytest.raises(InvalidInputError, match=r"problem must be one of \['libero_tabletop_manipulation'"):
        gym.make("LIBERO-Custom-v0", bddl_file=str(other))
    with pytest.raises(InvalidInputError, match="task_id is not an argument"):
        gym.make("LIBERO-Custom-v0", bddl_file=str(bddl_file), task_id=2)
