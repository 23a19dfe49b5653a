"""Camera options on the real simulator: cameras, metric depth, point cloud, segmentation."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

import libero_gym  # noqa: F401
from libero_gym import camera_channels, suites
from libero_gym.errors import InvalidInputError
from libero_gym.vector import make_vec

TASK = "LIBERO-Goal-Task1-v0"
"""A table scene with a bowl, cream cheese, a wine bottle, a plate, a cabinet, a stove and a wine rack."""
SIZE = 48
ALL = dict(cameras=("agentview", "robot0_eye_in_hand", "frontview"), depth=True, point_cloud=256, segmentation=True)


def _actions(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-1, 1, (n, 7)).astype(np.float32)


def _project(env: gym.Env, camera: str, point: np.ndarray) -> tuple[int, int, float]:
    """(row, column, planar depth) of a world point in a camera's upright image (rotate_images=True)."""
    u = env.unwrapped
    model, data = u.sim.model, u.sim.data
    cam = model.camera_name2id(camera)
    local = data.cam_xmat[cam].reshape(3, 3).T @ (point - data.cam_xpos[cam])  # camera frame, looks along -z
    depth = -local[2]
    focal = 0.5 * SIZE / np.tan(np.deg2rad(model.cam_fovy[cam]) / 2)
    column = int(np.floor(local[0] / depth * focal + SIZE / 2))
    row_from_bottom = int(np.floor(local[1] / depth * focal + SIZE / 2))
    # Upright images are MuJoCo's buffer (row 0 at the bottom) rotated by 180 degrees.
    return SIZE - 1 - row_from_bottom, SIZE - 1 - column, depth


@pytest.fixture(scope="module")
def env_pair():
    """An env with every camera option and one with the defaults, same seed, after 3 steps."""
    full = gym.make(TASK, obs_mode="pixels", image_size=SIZE, **ALL)
    plain = gym.make(TASK, obs_mode="pixels", image_size=SIZE)
    obs_full, info = full.reset(seed=3)
    obs_plain, _ = plain.reset(seed=3)
    for action in _actions(3):
        obs_full, *_ = full.step(action)
        obs_plain, *_ = plain.step(action)
    yield full, plain, obs_full, obs_plain, info
    full.close()
    plain.close()


def test_options_add_channels_and_leave_images_and_physics_alone(env_pair) -> None:
    full, plain, obs, obs_plain, _ = env_pair
    assert full.observation_space.contains(obs)
    expected = {"proprio", "task_index", "point_cloud"} | {
        f"{stem}_{kind}"
        for stem in ("agentview", "eye_in_hand", "frontview")
        for kind in ("image", "depth", "segmentation")
    }
    assert set(obs) == expected == set(full.observation_space.spaces)
    for key in ("agentview_image", "eye_in_hand_image", "proprio"):
        np.testing.assert_array_equal(obs[key], obs_plain[key])
    np.testing.assert_array_equal(full.unwrapped.get_sim_state(), plain.unwrapped.get_sim_state())
    assert obs["agentview_depth"].dtype == np.float32 and obs["point_cloud"].shape == (256, 3)


def test_depth_is_metric_at_a_known_object(env_pair) -> None:
    """The depth at the pixel where the plate's centre projects is the camera-to-plate distance (m)."""
    full, *_ = env_pair
    _, _, obs, _, _ = env_pair
    u = full.unwrapped
    plate = np.array(u.sim.data.body_xpos[u.sim.model.body_name2id(u.libero_env.env.objects_dict["plate_1"].root_body)])
    # A flat plate (~2 cm tall): the surface seen at its centre's pixel lies within a few cm of the
    # body origin; more from the low front camera, which sees it at a grazing angle.
    for camera, tolerance in (("agentview", 0.03), ("frontview", 0.06)):
        row, column, depth = _project(full, camera, plate)
        assert abs(float(obs[f"{camera}_depth"][row, column, 0]) - depth) < tolerance, (camera, row, column)


def test_segmentation_ids_name_the_objects_in_view(env_pair) -> None:
    full, _, obs, _, info = env_pair
    table = info["segmentation_ids"]
    assert table["background"] == 0 and table["robot"] == 1
    assert {"akita_black_bowl_1", "plate_1", "wine_bottle_1", "flat_stove_1"} <= set(table)
    u = full.unwrapped
    plate = np.array(u.sim.data.body_xpos[u.sim.model.body_name2id(u.libero_env.env.objects_dict["plate_1"].root_body)])
    row, column, _ = _project(full, "agentview", plate)
    assert obs["agentview_segmentation"][row, column, 0] == table["plate_1"]
    seen = set(np.unique(obs["agentview_segmentation"]).tolist())
    assert {0, 1, table["plate_1"], table["akita_black_bowl_1"]} <= seen and seen <= set(table.values())


def test_point_cloud_in_robot_base_frame(env_pair) -> None:
    """The gripper, seen by the agentview camera, has cloud points next to it (base-frame coordinates)."""
    full, _, obs, _, _ = env_pair
    u = full.unwrapped
    data, model = u.sim.data, u.sim.model
    base = model.body_name2id(camera_channels.BASE_BODY)
    grip = u.libero_env.env.robots[0].controller.eef_name
    ee_world = data.site_xpos[model.site_name2id(grip)]
    ee_base = data.xmat[base].reshape(3, 3).T @ (ee_world - data.xpos[base])
    cloud = obs["point_cloud"]
    assert np.min(np.linalg.norm(cloud - ee_base, axis=1)) < 0.15
    # Farthest-point sampling spreads the points: no two the same.
    assert len(np.unique(cloud, axis=0)) == len(cloud)


def test_same_seed_same_depth_point_cloud_and_masks() -> None:
    kwargs = dict(obs_mode="state", image_size=32, cameras=("agentview",), depth=True, point_cloud=128,
                  segmentation=True)
    envs = [gym.make(TASK, **kwargs) for _ in range(2)]
    try:
        first = [env.reset(seed=5)[0] for env in envs]
        for action in _actions(2, seed=1):
            pair = [env.step(action)[0] for env in envs]
        for a, b in (first, pair):
            assert "agentview_image" not in a  # state mode: no RGB, only the asked-for channels
            for key in ("agentview_depth", "agentview_segmentation", "point_cloud", "object"):
                np.testing.assert_array_equal(a[key], b[key])
        again = envs[0].reset(seed=5)[0]
        for key in ("agentview_depth", "point_cloud"):
            np.testing.assert_array_equal(again[key], first[0][key])
    finally:
        for env in envs:
            env.close()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"cameras": ("agentview", "topview")}, r"cameras must be distinct names among \['agentview', .*'paperview'\]"),
        ({"cameras": ()}, "cameras must be"),
        ({"cameras": ("paperview",)}, r"not in LIBERO's table scenes; valid: \['agentview'"),
        ({"point_cloud": -1}, r"point_cloud must be None or an int"),
        ({"point_cloud": True}, r"point_cloud must be None or an int"),
        ({"depth": "yes"}, "depth must be True or False"),
    ],
)
def test_bad_camera_options(kwargs: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        gym.make(TASK, **kwargs)


@pytest.mark.slow
def test_scene_camera_table_matches_the_models() -> None:
    """Every camera :func:`scene_cameras` promises is in each scene family's model (state mode: no renderer)."""
    families: dict[str, suites.Task] = {}
    for task in suites.TASKS:
        families.setdefault(task.scene_family, task)
    for family, task in families.items():
        env = gym.make(task.env_id)
        try:
            env.reset(seed=0)
            model = env.unwrapped.sim.model
            names = {model.camera_id2name(i) for i in range(model.ncam)}
            assert set(camera_channels.scene_cameras(family)) <= names, (family, names)
            assert set(camera_channels.LIBERO_CAMERAS) - set(camera_channels.scene_cameras(family)) <= (
                set(camera_channels.LIBERO_CAMERAS) - names
            )
        finally:
            env.close()


@pytest.mark.slow
def test_channels_equal_in_sync_and_async_vector_envs() -> None:
    """Depth, masks and point clouds do not depend on the process layout."""
    kwargs = dict(num_envs=2, task_id=[0, 46], task_per_worker=True, obs_mode="pixels", image_size=32,
                  cameras=("agentview",), depth=True, point_cloud=64, segmentation=True)
    sync = make_vec("LIBERO-90-v0", vectorization_mode="sync", **kwargs)
    both = make_vec("LIBERO-90-v0", vectorization_mode="async", **kwargs)
    try:
        a, _ = sync.reset(seed=2)
        b, _ = both.reset(seed=2)
        for action in _actions(2):
            a, *_ = sync.step(np.stack([action] * 2))
            b, *_ = both.step(np.stack([action] * 2))
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    finally:
        sync.close()
        both.close()


@pytest.mark.slow
def test_channels_in_chunks_and_hard_resets() -> None:
    """A chunk's last observation equals that of single steps; the channels survive LIBERO's rebuild."""
    kwargs = dict(obs_mode="state", image_size=32, cameras=("agentview",), depth=True, point_cloud=64,
                  segmentation=True)
    chunked = gym.make(TASK, chunk_size=4, reset_mode="hard", **kwargs)
    single = gym.make(TASK, **kwargs)
    try:
        for seed in (1, 2):  # the second reset rebuilds the model in hard mode
            chunked.reset(seed=seed)
            single.reset(seed=seed)
            actions = _actions(4, seed=seed)
            a, *_ = chunked.step(actions)
            for action in actions:
                b, *_ = single.step(action)
            for key in ("agentview_depth", "agentview_segmentation", "point_cloud"):
                np.testing.assert_array_equal(a[key], b[key])
    finally:
        chunked.close()
        single.close()


@pytest.mark.slow  # gymnasium's checker resets and renders many times
@pytest.mark.filterwarnings("ignore::UserWarning")  # unbounded Box bounds of depth, point cloud, state
def test_check_env_with_every_option() -> None:
    """Gymnasium's env checker (spaces, seeding, determinism of reset) with all options and absolute control."""
    from gymnasium.utils.env_checker import check_env

    env = gym.make(TASK, obs_mode="both", image_size=16, cameras=("agentview",), depth=True, point_cloud=32,
                   segmentation=True, control_mode="absolute", settle_steps=2)
    try:
        check_env(env.unwrapped, skip_render_check=True)
    finally:
        env.close()
