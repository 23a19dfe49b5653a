"""Depth, point-cloud and segmentation math (libero_gym.sensors), without the simulator."""

from __future__ import annotations

import types

import numpy as np
import pytest

from libero_gym import sensors


def _reference_fps(points: np.ndarray, n: int) -> list[int]:
    """Farthest-point sampling written out plainly: start at 0, take the farthest from the chosen set."""
    chosen = [0]
    while len(chosen) < n:
        distances = [min(float(np.sum((p - points[c]) ** 2)) for c in chosen) for p in points]
        chosen.append(int(np.argmax(distances)))
    return chosen


def test_depth_to_metres_matches_robosuite() -> None:
    from robosuite.utils.camera_utils import get_real_depth_map

    extent, znear, zfar = 10.6, 0.001, 50.0
    near, far = sensors.depth_extents(extent, znear, zfar)
    assert (near, far) == pytest.approx((0.0106, 530.0))
    depth = np.random.default_rng(0).uniform(0.9, 1.0, (8, 8, 1)).astype(np.float32)
    sim = types.SimpleNamespace(
        model=types.SimpleNamespace(stat=types.SimpleNamespace(extent=extent),
                                    vis=types.SimpleNamespace(map=types.SimpleNamespace(znear=znear, zfar=zfar)))
    )
    # robosuite computes in the input's precision; ours in float64 (a float32 buffer loses up to
    # ~1e-4 relative this way), so the reference gets the same buffer as float64.
    expected = get_real_depth_map(sim, depth.astype(np.float64))
    actual = sensors.depth_to_metres(depth, near, far)
    assert actual.dtype == np.float32 and actual.shape == depth.shape
    np.testing.assert_allclose(actual, expected, rtol=1e-6)
    np.testing.assert_allclose(sensors.depth_to_metres(np.array([0.0, 1.0]), near, far), [near, far], rtol=1e-6)


def test_depth_to_metres_rejects_unnormalised_depth() -> None:
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        sensors.depth_to_metres(np.array([0.5, 1.5]), 0.01, 5.0)
    with pytest.raises(ValueError, match="near < far"):
        sensors.depth_to_metres(np.array([0.5]), 5.0, 0.01)


def test_camera_points_back_project_a_known_point() -> None:
    """A point placed in front of a turned camera comes back from the pixel it projects to."""
    height = width = 65  # odd: the centre pixel's ray is the optical axis
    fovy = 45.0
    # Camera at (1, 2, 3) looking along world +x: its -z axis is world +x, its +y axis world +z.
    cam_mat = np.array([[0.0, 0.0, -1.0], [-1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])  # columns: camera x, y, z in world
    cam_pos = np.array([1.0, 2.0, 3.0])
    depth = np.full((height, width, 1), 2.5)
    points = sensors.camera_points(depth, fovy, cam_pos, cam_mat).reshape(height, width, 3)
    np.testing.assert_allclose(points[32, 32], [3.5, 2.0, 3.0], atol=1e-12)  # straight ahead, 2.5 m
    # Row 0 is the bottom of the image: lower world z; column 0 is the camera's left: world +y.
    assert points[0, 32, 2] < 3.0 < points[-1, 32, 2]
    assert points[32, 0, 1] > 2.0 > points[32, -1, 1]
    # The top row's ray makes half the field of view with the axis (up to half a pixel).
    focal = 0.5 * height / np.tan(np.deg2rad(fovy) / 2)
    np.testing.assert_allclose(points[-1, 32, 2] - 3.0, 2.5 * (32.0 / focal), rtol=1e-12)


def test_to_frame_inverts_the_frame_pose() -> None:
    rng = np.random.default_rng(1)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    pos = rng.normal(size=3)
    local = rng.normal(size=(10, 3))
    world = local @ q.T + pos
    np.testing.assert_allclose(sensors.to_frame(world, pos, q), local, atol=1e-12)


def test_farthest_point_sampling_matches_reference_and_is_deterministic() -> None:
    points = np.random.default_rng(2).normal(size=(200, 3))
    indices = sensors.farthest_point_sampling(points, 25)
    assert indices.tolist() == _reference_fps(points, 25)
    np.testing.assert_array_equal(indices, sensors.farthest_point_sampling(points.copy(), 25))
    assert len(set(indices.tolist())) == 25


def test_farthest_point_sampling_picks_cube_corners_first() -> None:
    corners = np.array([[x, y, z] for x in (0, 1) for y in (0, 1) for z in (0, 1)], dtype=float)
    inside = np.random.default_rng(3).uniform(0.2, 0.8, (500, 3))
    points = np.concatenate([corners, inside])
    assert set(sensors.farthest_point_sampling(points, 8).tolist()) == set(range(8))


def test_farthest_point_sampling_with_too_few_points_repeats() -> None:
    points = np.arange(9.0).reshape(3, 3)
    assert sensors.farthest_point_sampling(points, 7).tolist() == [0, 1, 2, 0, 1, 2, 0]
    with pytest.raises(ValueError):
        sensors.farthest_point_sampling(np.zeros((0, 3)), 4)


def test_fused_point_cloud_drops_far_pixels_and_uses_base_frame() -> None:
    far = 10.0
    depth = np.full((4, 4, 1), far, dtype=np.float32)
    depth[1, 2, 0] = 2.0  # one real surface pixel
    cam_mat, cam_pos = np.eye(3), np.array([0.0, 0.0, 5.0])  # looking down world -z
    cloud = sensors.fused_point_cloud([(depth, 90.0, cam_pos, cam_mat)], np.array([0.0, 0.0, 1.0]), np.eye(3), far, 3)
    assert cloud.shape == (3, 3) and cloud.dtype == np.float32
    np.testing.assert_allclose(cloud[:, 2], 2.0)  # z = 5 - 2 in the world, 3 - 1 above the base
    assert np.all(cloud == cloud[0])  # the single point, repeated


def test_geom_instances_follow_the_body_tree() -> None:
    # world(0) -> robot_base(1) -> hand(2); world -> bowl(3) -> bowl_inner(4); world -> table(5)
    names = ["world", "robot0_base", "robot0_hand", "bowl_main", "bowl_inner", "table"]
    parents = np.array([0, 0, 1, 0, 3, 0])
    geom_bodies = np.array([0, 2, 4, 5, 3])
    ids = sensors.geom_instances(geom_bodies, parents, names, {"robot0_base": 1, "bowl_main": 2})
    assert ids.tolist() == [0, 1, 2, 0, 2]


def test_decode_segmentation() -> None:
    colours = np.zeros((2, 3, 3), dtype=np.uint8)
    colours[0, 0] = (1, 0, 0)  # scene geom 0
    colours[0, 1] = (0, 1, 0)  # scene geom 255 (colour 256): past the table -> background
    colours[1, 2] = (3, 0, 0)  # scene geom 2
    table = np.array([0, 5, 0, 7])
    mask = sensors.decode_segmentation(colours, table)
    assert mask.shape == (2, 3, 1) and mask.dtype == np.uint8
    assert mask[..., 0].tolist() == [[5, 0, 0], [0, 0, 7]]
