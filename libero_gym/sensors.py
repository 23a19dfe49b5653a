"""Depth, point-cloud and segmentation math for camera observations (numpy only).

No simulator here: these functions take the arrays MuJoCo renders and the poses it
computes, so they are unit-tested without one. :mod:`libero_gym.camera_channels`
wires them into the env.

Shape legend:
    H, W   image height and width (pixels)
    P      points before sampling (at most C * H * W for C cameras)
    N      points after farthest-point sampling
    G      geoms of the model; B bodies of the model; K scene geoms of one render

Conventions:
    MuJoCo's offscreen buffers (and robosuite's camera observables, whose
    ``IMAGE_CONVENTION`` is ``"opengl"``) put row 0 at the *bottom* of the image.
    MuJoCo cameras look along their frame's -z axis, with +y up and +x right.
    The depth buffer holds the *planar* depth (distance along the optical axis),
    normalised non-linearly into [0, 1] between the near and far clipping planes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np


def depth_extents(extent: float, znear: float, zfar: float) -> tuple[float, float]:
    """Near and far clipping distances in metres, as robosuite's ``get_real_depth_map`` computes them.

    Args:
        extent: ``model.stat.extent`` (m), the model's spatial extent.
        znear: ``model.vis.map.znear``, near plane as a fraction of ``extent``.
        zfar: ``model.vis.map.zfar``, far plane as a fraction of ``extent``.
    """
    return float(znear * extent), float(zfar * extent)


def depth_to_metres(depth: np.ndarray, near: float, far: float) -> np.ndarray:
    """MuJoCo's normalised depth buffer to metric planar depth, float32.

    The formula of robosuite's ``camera_utils.get_real_depth_map`` (itself dm_control's):
    ``near / (1 - d * (1 - near / far))``, computed in float64: d = 0 is the near plane,
    d = 1 the far plane.

    Args:
        depth: (..., ) normalised depth in [0, 1], any shape (e.g. (H, W, 1)).
        near: near clipping distance (m), see :func:`depth_extents`.
        far: far clipping distance (m).

    Returns:
        Array of ``depth``'s shape, metres, float32.

    Raises:
        ValueError: values outside [0, 1] (not a normalised depth buffer) or ``near >= far``.
    """
    d = np.asarray(depth, dtype=np.float64)
    if not 0.0 < near < far:
        raise ValueError(f"need 0 < near < far, got near={near}, far={far}")
    if d.size and (d.min() < 0.0 or d.max() > 1.0):
        raise ValueError(f"normalised depth must lie in [0, 1], got [{d.min()}, {d.max()}]")
    return (near / (1.0 - d * (1.0 - near / far))).astype(np.float32)


def camera_points(depth_m: np.ndarray, fovy_deg: float, cam_pos: np.ndarray, cam_mat: np.ndarray) -> np.ndarray:
    """Back-project a metric depth image (OpenGL row order) to world-frame points.

    A pinhole camera with MuJoCo's vertical field of view ``fovy`` and square pixels:
    focal length ``f = H / (2 tan(fovy / 2))`` pixels, principal point at the image
    centre, each pixel sampled at its centre.

    Args:
        depth_m: (H, W) or (H, W, 1) planar depth in metres, row 0 at the bottom.
        fovy_deg: vertical field of view (degrees), ``model.cam_fovy``.
        cam_pos: (3,) camera position in the world frame, ``data.cam_xpos``.
        cam_mat: (3, 3) camera orientation (columns: camera axes in world), ``data.cam_xmat``.

    Returns:
        (H * W, 3) float64 world coordinates (m), in the image's row-major order.
    """
    depth = np.asarray(depth_m, dtype=np.float64)
    if depth.ndim == 3:
        depth = depth[..., 0]
    height, width = depth.shape
    focal = 0.5 * height / np.tan(np.deg2rad(fovy_deg) / 2.0)
    # Row 0 is the bottom row: camera +y grows with the row index.
    y = (np.arange(height, dtype=np.float64) + 0.5 - 0.5 * height) / focal
    x = (np.arange(width, dtype=np.float64) + 0.5 - 0.5 * width) / focal
    xs, ys = np.meshgrid(x, y)  # (H, W) each
    local = np.stack([xs * depth, ys * depth, -depth], axis=-1).reshape(-1, 3)  # camera looks along -z
    return local @ np.asarray(cam_mat, dtype=np.float64).reshape(3, 3).T + np.asarray(cam_pos, dtype=np.float64)


def to_frame(points: np.ndarray, frame_pos: np.ndarray, frame_mat: np.ndarray) -> np.ndarray:
    """World-frame points expressed in another frame (e.g. the robot base).

    Args:
        points: (P, 3) world coordinates.
        frame_pos: (3,) origin of the frame in the world, ``data.xpos[body]``.
        frame_mat: (3, 3) orientation of the frame in the world, ``data.xmat[body]``.

    Returns:
        (P, 3) coordinates in the frame: ``R^T (p - t)``.
    """
    return (np.asarray(points) - np.asarray(frame_pos)) @ np.asarray(frame_mat).reshape(3, 3)


def farthest_point_sampling(points: np.ndarray, n: int) -> np.ndarray:
    """Indices of ``n`` points chosen by farthest-point sampling; deterministic.

    Starts from ``points[0]``, then repeatedly takes the point farthest (Euclidean)
    from those already chosen; ties go to the lowest index (``argmax``). With fewer
    than ``n`` points, every point is taken and the list repeats from the start.

    Args:
        points: (P, 3) coordinates, P >= 1.
        n: number of points to pick, >= 1.

    Returns:
        (n,) int64 indices into ``points``.
    """
    points = np.asarray(points, dtype=np.float64)
    count = points.shape[0]
    if count == 0 or n < 1:
        raise ValueError(f"need at least one point and n >= 1, got {count} points and n={n}")
    if count <= n:
        return np.resize(np.arange(count, dtype=np.int64), n)
    # One contiguous array per coordinate and preallocated buffers: ~5x faster than
    # einsum over (P, 3) rows, with the same sums ((dx^2 + dy^2) + dz^2) in the same order.
    x, y, z = (np.ascontiguousarray(points[:, axis]) for axis in range(3))
    nearest = np.full(count, np.inf)  # squared distance of each point to the chosen set
    squared, term = np.empty(count), np.empty(count)
    chosen = np.empty(n, dtype=np.int64)
    index = 0
    for i in range(n):
        chosen[i] = index
        np.subtract(x, x[index], out=squared)
        np.multiply(squared, squared, out=squared)
        for coordinate in (y, z):
            np.subtract(coordinate, coordinate[index], out=term)
            np.multiply(term, term, out=term)
            np.add(squared, term, out=squared)
        np.minimum(nearest, squared, out=nearest)
        index = int(np.argmax(nearest))
    return chosen


def fused_point_cloud(
    views: Sequence[tuple[np.ndarray, float, np.ndarray, np.ndarray]],
    base_pos: np.ndarray,
    base_mat: np.ndarray,
    far: float,
    n: int,
) -> np.ndarray:
    """One point cloud from several cameras' metric depth, in the robot base frame.

    Pixels at the far clipping plane (nothing rendered there) are dropped; the rest
    of every camera is back-projected (:func:`camera_points`), concatenated in camera
    order and reduced to ``n`` points by :func:`farthest_point_sampling`.

    Args:
        views: per camera, ``(depth_m (H, W, 1) metres, fovy_deg, cam_pos (3,), cam_mat (3, 3))``.
        base_pos: (3,) robot base position in the world.
        base_mat: (3, 3) robot base orientation in the world.
        far: far clipping distance (m).
        n: points to return.

    Returns:
        (n, 3) float32 coordinates (m) in the robot base frame.
    """
    clouds = []
    for depth_m, fovy, cam_pos, cam_mat in views:
        points = camera_points(depth_m, fovy, cam_pos, cam_mat)
        keep = np.asarray(depth_m).reshape(-1) < far * (1.0 - 1e-4)
        clouds.append(points[keep])
    world = np.concatenate(clouds) if clouds else np.zeros((0, 3))
    if world.shape[0] == 0:
        return np.zeros((n, 3), dtype=np.float32)
    local = to_frame(world, base_pos, base_mat)
    return local[farthest_point_sampling(local, n)].astype(np.float32)


def geom_instances(
    geom_bodyid: np.ndarray, body_parentid: np.ndarray, body_names: Sequence[str], roots: Mapping[str, int]
) -> np.ndarray:
    """Instance id of every geom: that of the nearest ancestor body named in ``roots``, else 0.

    Args:
        geom_bodyid: (G,) ``model.geom_bodyid``.
        body_parentid: (B,) ``model.body_parentid`` (the world body is its own parent).
        body_names: B body names.
        roots: body name -> instance id (> 0) for the root body of each instance.

    Returns:
        (G,) int64 instance ids; 0 for geoms under no named root (floor, walls, table).
    """
    body_instance = np.zeros(len(body_names), dtype=np.int64)
    for body in range(len(body_names)):
        ancestor = body
        while True:
            if body_names[ancestor] in roots:
                body_instance[body] = roots[body_names[ancestor]]
                break
            parent = int(body_parentid[ancestor])
            if parent == ancestor:
                break
            ancestor = parent
    return body_instance[np.asarray(geom_bodyid, dtype=np.int64)]


def decode_segmentation(id_colours: np.ndarray, segid_instance: np.ndarray) -> np.ndarray:
    """Instance mask from an ``mjRND_SEGMENT | mjRND_IDCOLOR`` render.

    MuJoCo paints scene geom ``k`` in the colour ``k + 1`` (R + 256 G + 65536 B) and
    the background in 0.

    Args:
        id_colours: (H, W, 3) uint8 segmentation render.
        segid_instance: (K + 1,) instance id per colour: entry 0 for the background,
            entry ``k + 1`` for scene geom ``k``.

    Returns:
        (H, W, 1) uint8 instance ids; colours beyond the table count as background.
    """
    rgb = np.asarray(id_colours, dtype=np.int64)
    code = rgb[..., 0] + (rgb[..., 1] << 8) + (rgb[..., 2] << 16)
    code[code >= segid_instance.shape[0]] = 0
    return segid_instance.astype(np.uint8)[code][..., None]
