"""Round trip on a real LIBERO task: collect, export, read back, replay."""

from __future__ import annotations

import json

import gymnasium as gym
import numpy as np

import libero_gym  # noqa: F401  (registers the ids)
from libero_gym.data.collect import finished_summaries, shard_path
from libero_gym.data.dataset import read_dataset, validate_dataset
from libero_gym.data.replay import replay_episode, set_body_poses
from tests.libero_gym.data.conftest import ENV_ID, EPISODES, IMAGE_SIZE, SETTLE_STEPS, STEPS, TASK_ID


def test_resume_ends_with_exactly_the_planned_episodes(collected) -> None:
    assert 1 <= collected.first_run_finished < EPISODES + 1
    summaries = finished_summaries(collected.out)
    assert sorted(summaries) == list(range(EPISODES))
    assert [summaries[i]["seed"] for i in range(EPISODES)] == [7, 8, 9]
    assert collected.result.kept == list(range(EPISODES))
    assert collected.result.dropped == 0
    assert not list((collected.out / "episodes").glob(".*tmp*")), "no temporaries left"


def test_export_reads_back_identical_arrays(collected) -> None:
    (path,) = collected.export.files
    validate_dataset(path)
    data = read_dataset(path)
    assert data.task is not None and (data.task.suite, data.task.index) == ("libero_goal", TASK_ID)
    assert data.language_instruction == "open the middle drawer of the cabinet"
    assert data.provenance["episode_indices"] == list(range(EPISODES))
    assert len(data.episodes) == EPISODES
    for index, episode in enumerate(data.episodes):
        (shard,) = read_dataset(shard_path(collected.out, index)).episodes
        for key in ("actions", "states", "robot_states", "rewards", "dones", "init_state"):
            np.testing.assert_array_equal(getattr(episode, key), getattr(shard, key), err_msg=key)
        assert set(episode.obs) == set(shard.obs)
        for key in episode.obs:
            np.testing.assert_array_equal(episode.obs[key], shard.obs[key], err_msg=key)
        assert episode.model_file == shard.model_file
        assert episode.attrs == shard.attrs
        assert episode.num_samples == SETTLE_STEPS + STEPS and episode.settle_steps == SETTLE_STEPS
        assert episode.obs["agentview_rgb"].shape == (SETTLE_STEPS + STEPS, IMAGE_SIZE, IMAGE_SIZE, 3)
        # Proprio fields are consistent with each other.
        np.testing.assert_array_equal(episode.obs["ee_pos"], episode.robot_states[:, 2:5])
        np.testing.assert_array_equal(episode.obs["gripper_states"], episode.robot_states[:, :2])
        np.testing.assert_array_equal(episode.obs["ee_states"][:, :3], episode.obs["ee_pos"])
        # Images differ over time (the arm moves), so they are real renders.
        assert not np.array_equal(episode.obs["eye_in_hand_rgb"][0], episode.obs["eye_in_hand_rgb"][-1])


def test_replaying_actions_reproduces_states_and_success(collected) -> None:
    (path,) = collected.export.files
    data = read_dataset(path, images=False)
    env = gym.make(ENV_ID, task_id=TASK_ID, max_episode_steps=STEPS)  # a fresh env, state mode
    try:
        for episode in data.episodes:
            result = replay_episode(env, episode)
            np.testing.assert_array_equal(result.states[0], episode.init_state)
            np.testing.assert_array_equal(result.states, episode.states)
            np.testing.assert_array_equal(result.rewards, episode.rewards.astype(np.float64))
            assert result.success == episode.success
    finally:
        env.close()


def test_images_are_stored_as_libero_renders_them(collected) -> None:
    """Stored frames equal a pixels env's view of the stored state, rotated back (LIBERO: unrotated)."""
    (path,) = collected.export.files
    episode = read_dataset(path).episodes[-1]
    env = gym.make(ENV_ID, task_id=TASK_ID, obs_mode="pixels", image_size=IMAGE_SIZE, settle_steps=0)
    try:
        env.reset(options={"init_state_id": int(episode.attrs["init_state_id"])})
        set_body_poses(env.unwrapped.sim, json.loads(episode.attrs["body_poses"]))  # the episode's fixtures
        for t in (0, SETTLE_STEPS, SETTLE_STEPS + STEPS - 1):
            obs = env.unwrapped.set_sim_state(episode.states[t])
            assert env.unwrapped.rotate_images
            np.testing.assert_array_equal(episode.obs["agentview_rgb"][t], obs["agentview_image"][::-1, ::-1])
            np.testing.assert_array_equal(episode.obs["eye_in_hand_rgb"][t], obs["eye_in_hand_image"][::-1, ::-1])
    finally:
        env.close()


def test_two_tasks_export_one_file_each(tmp_path) -> None:
    import json as json_

    from libero_gym.data.collect import CollectPlan, run_collection
    from libero_gym.data.export import export_collection
    from libero_gym.data.policies import PolicySpec

    out = tmp_path / "two_tasks"
    plan = CollectPlan(
        env_id=ENV_ID, task_ids=(0, 1), out_dir=str(out), policy=PolicySpec("random"), episodes=4,
        until_successes=False, keep="all", image_size=IMAGE_SIZE, images=False, max_episode_steps=8, seed=0,
        max_episodes=4, provenance={"agent": "random"},
    )
    result = run_collection(plan, num_workers=2, progress=False)
    assert result.kept == [0, 1, 2, 3]
    exported = export_collection(out)
    names = sorted(path.name for path in exported.files)
    assert names == ["open_the_middle_drawer_of_the_cabinet_demo.hdf5", "put_the_bowl_on_the_stove_demo.hdf5"]
    manifest = json_.loads(exported.manifest.read_text())
    assert manifest["num_demos"] == 4 and manifest["total_steps"] == 32  # the policy's steps (settle steps not counted)
    by_task = {entry["task_id"]: entry["episode_indices"] for entry in manifest["files"]}
    assert by_task == {0: [0, 2], 1: [1, 3]}  # episode i plays task_id[i % 2]
    for path in exported.files:
        data = read_dataset(path, images=False)
        assert data.task is not None and data.task.name in path.name
        assert [e.attrs["episode_index"] for e in data.episodes] == by_task[data.task.index]


def test_env_observations_regenerated_from_states(collected) -> None:
    from libero_gym.data.replay import env_observations
    from libero_gym.env import PROPRIO_SLICES

    (path,) = collected.export.files
    episode = read_dataset(path, images=False).episodes[0]
    env = gym.make(ENV_ID, task_id=TASK_ID, max_episode_steps=STEPS)
    try:
        obs = env_observations(env, episode)
    finally:
        env.close()
    assert set(obs) == {"proprio", "object", "task_index"}
    assert obs["proprio"].shape == (SETTLE_STEPS + STEPS, 39) and obs["object"].shape[0] == SETTLE_STEPS + STEPS
    # Equal up to one 2 ms physics substep of motion (robosuite's step observation
    # lags the integrated state by one substep; restoring a state runs mj_forward).
    np.testing.assert_allclose(obs["proprio"][0, PROPRIO_SLICES["eef_pos"]], episode.obs["ee_pos"][0], atol=1e-4)
    for name, field in (("eef_pos", "ee_pos"), ("gripper_qpos", "gripper_states"), ("joint_pos", "joint_states")):
        np.testing.assert_allclose(obs["proprio"][:, PROPRIO_SLICES[name]], episode.obs[field], atol=5e-3)
    assert np.all(obs["task_index"] == TASK_ID)
