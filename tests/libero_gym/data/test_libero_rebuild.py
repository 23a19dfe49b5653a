"""Our exports rebuild with LIBERO's own tooling, on this machine and on another one.

A small real export (scripted expert, LIBERO-Goal task 0, state only) is replayed:

* the way LIBERO's ``scripts/create_dataset.py`` does, in a fresh process, from
  the file alone (``scripts/libero_replay_check.py``): ``TASK_MAPPING[problem_name](**env_kwargs)``,
  ``reset_from_xml_string(postprocess_model_xml(model_file))``, ``states[0]``,
  robosuite's own ``env.step``; every demo succeeds again, bit for bit (the demos
  record the reset's settle steps, so the rebuild starts where the recording did);
* with our exact replay (``libero_gym.data.replay``): bit-identical states;
* both again on a copy whose paths point into a producing virtual environment that
  no longer exists (``/old/venv/...``), as a file moved to another machine.

The ``model_file`` reload gives the live model's masses and inertias exactly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import h5py
import numpy as np
import pytest

import libero_gym  # noqa: F401  (registers the ids)
from libero_gym import suites
from libero_gym.data import dataset as ds
from libero_gym.data.replay import env_observations, replay_episode, reset_unsettled, restore_scene, settle_step
from libero_gym.env import DEFAULT_SETTLE_STEPS, SETTLE_ACTION

REPO = Path(__file__).resolve().parents[3]
SCRIPT = REPO / "scripts" / "libero_replay_check.py"
ENV_ID = "LIBERO-Goal-v0"
TASK_ID = 0
EPISODES = 2
OLD_VENV_SITE = "/old/venv/lib/python3.11/site-packages"
"""Where the moved copy claims its producing venv's site-packages were."""
MODEL_FIELDS = (
    "body_mass", "body_inertia", "body_pos", "body_quat", "geom_pos", "geom_quat", "geom_size",
    "geom_friction", "geom_solref", "geom_solimp", "dof_armature", "dof_damping", "dof_frictionloss",
    "jnt_range", "jnt_stiffness", "actuator_gainprm", "actuator_biasprm",
)
"""Compiled quantities the dynamics depend on, compared bit for bit after a reload."""


@pytest.fixture(scope="module")
def export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2 successful scripted demos of LIBERO-Goal task 0, no images, exported."""
    from libero_gym.data.collect import CollectPlan, run_collection
    from libero_gym.data.export import export_collection
    from libero_gym.data.policies import PolicySpec
    from libero_gym.data.provenance import provenance

    out = tmp_path_factory.mktemp("rebuild")
    plan = CollectPlan(
        env_id=ENV_ID, task_ids=(TASK_ID,), out_dir=str(out), policy=PolicySpec("scripted"), episodes=EPISODES,
        until_successes=True, keep="success", image_size=128, images=False, max_episode_steps=None, seed=0,
        max_episodes=3 * EPISODES,
        provenance=provenance(agent="scripted", checkpoint=None, seed=0, env_id=ENV_ID, task_ids=[TASK_ID]),
    )
    run_collection(plan, num_workers=1, progress=False)
    (path,) = export_collection(out).files
    return path


@pytest.fixture(scope="module")
def moved(export: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy whose recorded paths point into a producing venv that no longer exists.

    BDDL paths as an absolute path into ``/old/venv/...`` (as older exports and
    LIBERO's own files record them), robosuite's meshes in ``model_file`` under
    ``/old/venv/...``, and no ``libero_gym`` provenance (the task must come from the
    BDDL path).
    """
    import robosuite

    site = str(Path(robosuite.__file__).resolve().parents[1])
    copy = tmp_path_factory.mktemp("moved") / export.name
    shutil.copy(export, copy)
    with h5py.File(copy, "r+") as file:
        data = file["data"]
        old_bddl = f"{OLD_VENV_SITE}/{data.attrs['bddl_file_name']}"
        data.attrs["bddl_file_name"] = old_bddl
        env_args = json.loads(data.attrs["env_args"])
        env_args["bddl_file"] = env_args["env_kwargs"]["bddl_file_name"] = old_bddl
        data.attrs["env_args"] = json.dumps(env_args)
        del data.attrs[ds.PROVENANCE_ATTR]
        for name in ds.demo_keys(data):
            model_file = data[name].attrs["model_file"]
            assert site + "/robosuite/" in model_file
            data[name].attrs["model_file"] = model_file.replace(site + "/", OLD_VENV_SITE + "/")
    assert not Path(old_bddl).exists()
    return copy


def _libero_replay(path: Path, tmp_path: Path, *extra: str, cwd: Path) -> dict[str, Any]:
    """Run scripts/libero_replay_check.py in a fresh process; its JSON report."""
    report = tmp_path / f"{path.stem}-{len(extra)}.json"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), str(path), "--json", str(report), *extra],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(report.read_text())


def _libero_root() -> Path:
    """The folder LIBERO's scripts run from (holds ``libero/libero/bddl_files``)."""
    from libero_gym.libero_config import libero_package_dir

    return libero_package_dir().parents[1]


def test_attrs_hold_what_libero_rebuilds_from(export: Path) -> None:
    with h5py.File(export, "r") as file:
        data = file["data"]
        env_args = json.loads(data.attrs["env_args"])
        kwargs = env_args["env_kwargs"]
        assert "controller" not in kwargs
        assert kwargs["controller_configs"]["type"] == "OSC_POSE"
        assert data.attrs["bddl_file_name"] == kwargs["bddl_file_name"] == env_args["bddl_file"]
        assert data.attrs["bddl_file_name"].startswith("libero/libero/bddl_files/libero_goal/")
        assert (_libero_root() / data.attrs["bddl_file_name"]).is_file()
        assert str(Path(sys.prefix)) not in data.attrs["env_args"]  # nothing of this venv
        assert data.attrs["env_name"] == env_args["env_name"] == "Libero_Tabletop_Manipulation"
        for name in ds.demo_keys(data):
            assert 'inertiagrouprange="0 0"' in data[name].attrs["model_file"]


def test_libero_style_rebuild_succeeds_in_a_fresh_process(export: Path, tmp_path: Path) -> None:
    report = _libero_replay(export, tmp_path, cwd=_libero_root())
    demos = report["demos"]
    assert len(demos) == EPISODES
    for demo in demos:
        assert not demo["bddl_relocated"], "the recorded path resolves from LIBERO's root as is"
        assert demo["robomimic_class_matches"]
        assert demo["recorded_success"] is True
        assert demo["success"], demo
    assert report["summary"]["success_rate"] == 1.0
    # Nothing of robosuite's Python-side state is missing: the replay is the recording.
    for demo in demos:
        assert demo["settle_steps"] == DEFAULT_SETTLE_STEPS
        assert max(demo["step_max_error"]) == 0.0, max(demo["step_max_error"])


def test_demos_start_at_libero_init_state_with_the_settle_steps(export: Path) -> None:
    """states[0] is LIBERO's init state, then the reset's settle steps; the policy's part
    starts exactly where a plain ``env.reset`` leaves the env, and readers skip the rest."""
    from agents.configs import PretrainConfig
    from agents.pretrain import load_demos

    data = ds.read_dataset(export, images=False)
    env = gym.make(ENV_ID, task_id=TASK_ID)
    try:
        for episode in data.episodes:
            k = episode.settle_steps
            assert k == DEFAULT_SETTLE_STEPS and episode.policy_steps == slice(k, None)
            init_state = env.unwrapped.init_states()[int(episode.attrs["init_state_id"])]
            np.testing.assert_array_equal(episode.states[0], init_state)
            np.testing.assert_array_equal(episode.init_state, init_state)
            np.testing.assert_array_equal(episode.actions[:k], np.tile(SETTLE_ACTION, (k, 1)))
            assert not episode.rewards[:k].any() and not episode.dones[:k].any()
            # A plain reset of the episode's scene: the state the policy started from,
            # and the observation it saw, whether the reset settles or its caller does.
            options = {key: int(episode.attrs[key]) for key in ("init_state_id", "layout_seed")}
            obs, _ = env.reset(options=options)
            np.testing.assert_array_equal(env.unwrapped.get_sim_state(), episode.states[k])
            unsettled, _ = reset_unsettled(env, options=options)
            np.testing.assert_array_equal(env.unwrapped.get_sim_state(), episode.states[0])
            for _ in range(k):
                unsettled = settle_step(env)
            np.testing.assert_array_equal(env.unwrapped.get_sim_state(), episode.states[k])
            for key in obs:
                np.testing.assert_array_equal(unsettled[key], obs[key], err_msg=key)
        frames = env_observations(env, data.episodes[0])
        assert frames["proprio"].shape[0] == data.episodes[0].num_samples
    finally:
        env.close()
    demos = load_demos(PretrainConfig(dataset=(export,), run_dir=export.parent / "bc"), horizon=4)
    policy_steps = sum(e.num_samples - e.settle_steps for e in data.episodes)
    assert demos.chunks.shape == (policy_steps, 4, 7) and demos.observations["proprio"].shape[0] == policy_steps


def test_model_file_reload_gives_the_live_model(export: Path) -> None:
    import mujoco

    from libero_gym.libero_config import import_libero

    import_libero()  # LIBERO's config first, or importing it prompts
    import libero.libero.utils.utils as libero_utils

    data = ds.read_dataset(export, images=False)
    env = gym.make(ENV_ID, task_id=TASK_ID)
    try:
        for episode in data.episodes:
            restore_scene(env, episode)  # the live model of the episode's scene
            live = env.unwrapped.sim.model._model
            reloaded = mujoco.MjModel.from_xml_string(libero_utils.postprocess_model_xml(episode.model_file, {}))
            for field in MODEL_FIELDS:
                np.testing.assert_array_equal(getattr(reloaded, field), getattr(live, field), err_msg=field)
            assert reloaded.opt.timestep == live.opt.timestep
            # What MuJoCo 3.3's own XML export gives (the old model_file): visual geoms weigh in.
            saved = mujoco.MjModel.from_xml_string(env.unwrapped.sim.model.get_xml())
            assert saved.body_mass.sum() > live.body_mass.sum() + 10.0
    finally:
        env.close()


def test_our_replay_stays_exact(export: Path, moved: Path) -> None:
    env = gym.make(ENV_ID, task_id=TASK_ID)
    try:
        for path in (export, moved):
            data = ds.read_dataset(path, images=False)
            assert data.task == suites.get_task("libero_goal", TASK_ID)
            for episode in data.episodes:
                result = replay_episode(env, episode)
                np.testing.assert_array_equal(result.states, episode.states)
                assert result.success and episode.success
    finally:
        env.close()


def test_moved_file_rebuilds_libero_style_bit_exactly(moved: Path, tmp_path: Path) -> None:
    """From another folder, with stale venv paths, LIBERO's plain way: bit-identical."""
    report = _libero_replay(moved, tmp_path, cwd=tmp_path)
    for demo in report["demos"]:
        assert demo["bddl_relocated"]
        assert demo["success"], demo
        assert max(demo["step_max_error"]) == 0.0, max(demo["step_max_error"])


def test_resolve_bddl_file_relocates_stale_paths() -> None:
    task = suites.get_task("libero_goal", TASK_ID)
    installed = ds.bddl_path(task)
    for recorded in (
        ds.portable_bddl_path(task),
        f"{OLD_VENV_SITE}/libero/libero/bddl_files/libero_goal/{task.bddl_file}",
        f"/home/someone/LIBERO/libero/libero/bddl_files/libero_goal/{task.bddl_file}",
    ):
        resolved = ds.resolve_bddl_file(recorded)
        assert resolved is not None and resolved.samefile(installed), recorded
        assert ds.resolve_task({}, recorded) == task
    assert ds.resolve_bddl_file("/old/venv/nothing.bddl") is None
