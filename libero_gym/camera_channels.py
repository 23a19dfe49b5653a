"""Camera observation options of :class:`libero_gym.env.LiberoEnv`: which cameras, depth, point cloud, segmentation.

:class:`CameraOptions` holds the four keyword arguments, checks them and names the
observation keys and spaces. :func:`install` adds the sensors to a built robosuite env
as robosuite observables, so that they are sampled with the camera images (the same
substep, the same kinematics; :class:`libero_gym.fast_physics.FastStepper` treats them as
camera observables: rendered only when the observation is returned).

- Depth comes from robosuite's own ``camera_depths=True``: the depth buffer of the
  very render that gives the RGB image, converted to metres
  (:func:`libero_gym.sensors.depth_to_metres`).
- The point cloud back-projects the chosen cameras' depth into the robot base frame
  (body ``robot0_base``) and keeps N points by farthest-point sampling.
- Segmentation renders each camera once more with MuJoCo's segmentation flags and maps
  every geom to an instance: 0 background (floor, walls, table), 1 the robot (arm,
  gripper, mount), then LIBERO's objects and fixtures in the order of its
  ``objects_dict`` and ``fixtures_dict``. robosuite's own ``camera_segmentations`` is
  not used: it shrinks every site of the model, which would change the RGB images.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
from gymnasium import spaces

from libero_gym import sensors
from libero_gym.errors import InvalidInputError

DEFAULT_CAMERAS: tuple[str, ...] = ("agentview", "robot0_eye_in_hand")
"""LIBERO's two cameras: the third-person view and the wrist camera."""

LIBERO_CAMERAS: tuple[str, ...] = (
    "agentview", "robot0_eye_in_hand", "frontview", "birdview", "sideview", "galleryview", "robot0_robotview",
    "paperview",
)
"""Cameras of LIBERO's scenes (``paperview`` only in the kitchen, living-room and study scenes; checked
against each scene's model when the env is built)."""

BASE_BODY = "robot0_base"
"""The robot's base body: the point cloud's frame."""

ROBOT_PREFIXES: tuple[str, ...] = ("robot0_", "gripper0_", "mount0_")
"""Body-name prefixes of the robot: arm, gripper and mount are segmentation instance 1."""

MAX_POINTS = 65536
"""Upper bound of ``point_cloud``: farthest-point sampling costs O(N x pixels)."""

POINT_CLOUD_KEY = "point_cloud"
SEGMENTATION_IDS_KEY = "segmentation_ids"
"""``info`` key (at reset) of the segmentation id table: instance name -> id."""


PAPERVIEW_SCENES: tuple[str, ...] = ("kitchen", "living_room", "study")
"""Scene families (:attr:`libero_gym.suites.Task.scene_family`) whose model has the ``paperview`` camera."""


def scene_cameras(scene_family: str) -> tuple[str, ...]:
    """The cameras of a LIBERO scene family (checked against the built models by the tests)."""
    return tuple(c for c in LIBERO_CAMERAS if c != "paperview" or scene_family in PAPERVIEW_SCENES)


def camera_key(camera: str) -> str:
    """Observation-key stem of a camera: its name without ``robot0_`` (``robot0_eye_in_hand`` -> ``eye_in_hand``)."""
    return camera.removeprefix("robot0_")


@dataclasses.dataclass(frozen=True)
class CameraOptions:
    """The camera-related observation options of an env (see LiberoEnv's Observation space).

    Attributes:
        cameras: camera names, as LIBERO's scenes name them.
        depth: add ``<camera>_depth`` (S, S, 1) float32 metric depth per camera.
        point_cloud: 0 (none), or N: add ``point_cloud`` (N, 3) float32.
        segmentation: add ``<camera>_segmentation`` (S, S, 1) uint8 instance ids per camera.
    """

    cameras: tuple[str, ...] = DEFAULT_CAMERAS
    depth: bool = False
    point_cloud: int = 0
    segmentation: bool = False

    @classmethod
    def parse(cls, cameras: Sequence[str], depth: bool, point_cloud: int | None, segmentation: bool) -> CameraOptions:
        """Check the env's keyword arguments and normalise them.

        Raises:
            InvalidInputError: an unknown or repeated camera, a non-bool flag, a bad point count.
        """
        if isinstance(cameras, str):
            cameras = (cameras,)
        cameras = tuple(cameras)
        unknown = [name for name in cameras if name not in LIBERO_CAMERAS]
        if not cameras or unknown or len(set(cameras)) != len(cameras):
            raise InvalidInputError(
                f"cameras must be distinct names among {list(LIBERO_CAMERAS)}, got {list(cameras)}"
            )
        for name, flag in (("depth", depth), ("segmentation", segmentation)):
            if not isinstance(flag, (bool, np.bool_)):
                raise InvalidInputError(f"{name} must be True or False, got {flag!r}")
        if point_cloud is None:
            point_cloud = 0
        if isinstance(point_cloud, bool) or not isinstance(point_cloud, (int, np.integer)) or not (
            0 <= point_cloud <= MAX_POINTS
        ):
            raise InvalidInputError(f"point_cloud must be None or an int in [1, {MAX_POINTS}], got {point_cloud!r}")
        return cls(cameras, bool(depth), int(point_cloud), bool(segmentation))

    def check_scenes(self, scene_families: Sequence[str | None]) -> None:
        """Raise :class:`InvalidInputError` naming a scene's cameras if one chosen camera is not in it
        (``None``: a scene outside LIBERO's benchmark, checked against its model when built)."""
        for family in scene_families:
            if family is None:
                continue
            valid = scene_cameras(family)
            missing = [name for name in self.cameras if name not in valid]
            if missing:
                raise InvalidInputError(f"cameras {missing} are not in LIBERO's {family} scenes; valid: {list(valid)}")

    @property
    def is_default(self) -> bool:
        """The default observation: LIBERO's two cameras, no extra channel."""
        return self == CameraOptions()

    @property
    def needs_depth(self) -> bool:
        """Whether robosuite must read the depth buffer (depth or point cloud asked for)."""
        return self.depth or self.point_cloud > 0

    @property
    def needs_camera_obs(self) -> bool:
        """Whether robosuite's camera observables must run even without pixel observations."""
        return self.needs_depth

    @property
    def needs_renderer(self) -> bool:
        """Whether an offscreen renderer is needed for these channels alone."""
        return self.needs_depth or self.segmentation

    def spaces(self, image_size: int, pixels: bool) -> dict[str, spaces.Space[Any]]:
        """Observation key -> space of the camera channels (``pixels``: RGB images included)."""
        size = (image_size, image_size)
        out: dict[str, spaces.Space[Any]] = {}
        for camera in self.cameras:
            key = camera_key(camera)
            if pixels:
                out[f"{key}_image"] = spaces.Box(0, 255, (*size, 3), np.uint8)
            if self.depth:
                out[f"{key}_depth"] = spaces.Box(0.0, np.inf, (*size, 1), np.float32)
            if self.segmentation:
                out[f"{key}_segmentation"] = spaces.Box(0, 255, (*size, 1), np.uint8)
        if self.point_cloud:
            out[POINT_CLOUD_KEY] = spaces.Box(-np.inf, np.inf, (self.point_cloud, 3), np.float32)
        return out

    def libero_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of LIBERO's ``ControlEnv`` for these options (none for the default cameras)."""
        kwargs: dict[str, Any] = {}
        if self.cameras != DEFAULT_CAMERAS:
            kwargs["camera_names"] = list(self.cameras)
        if self.needs_depth:
            kwargs["camera_depths"] = True
        return kwargs

    def observation(self, raw: dict[str, np.ndarray], pixels: bool, orient: Any, near_far: tuple[float, float]) -> dict:
        """The camera channels of one observation from robosuite's raw observation dict.

        Args:
            raw: robosuite's observation (with the observables :func:`install` added).
            pixels: include the RGB images.
            orient: the env's image orientation function (applied to images, depth and masks alike).
            near_far: the model's clipping distances (m), :func:`libero_gym.sensors.depth_extents`.
        """
        out: dict[str, np.ndarray] = {}
        for camera in self.cameras:
            key = camera_key(camera)
            if pixels:
                out[f"{key}_image"] = orient(raw[f"{camera}_image"])
            if self.depth:
                out[f"{key}_depth"] = orient(sensors.depth_to_metres(raw[f"{camera}_depth"], *near_far))
            if self.segmentation:
                out[f"{key}_segmentation"] = orient(raw[f"{camera}_segmentation_instance"])
        if self.point_cloud:
            out[POINT_CLOUD_KEY] = raw[POINT_CLOUD_KEY]
        return out


def check_scene_cameras(sim: Any, cameras: Sequence[str]) -> None:
    """Raise :class:`InvalidInputError` naming the scene's cameras if one of ``cameras`` is not among them."""
    model = sim.model
    names = [model.camera_id2name(i) for i in range(model.ncam)]
    missing = [name for name in cameras if name not in names]
    if missing:
        raise InvalidInputError(f"cameras {missing} are not in this scene; its cameras are {names}")


def segmentation_table(robosuite_env: Any) -> dict[str, int]:
    """Instance name -> id of a LIBERO scene: background 0, robot 1, then objects and fixtures."""
    table = {"background": 0, "robot": 1}
    for name in [*robosuite_env.objects_dict, *robosuite_env.fixtures_dict]:
        table.setdefault(name, len(table))
    return table


def _geom_instances(robosuite_env: Any, table: dict[str, int]) -> np.ndarray:
    """(G,) instance id of every geom of the current model."""
    model = robosuite_env.sim.model
    names = [model.body_id2name(i) or "" for i in range(model.nbody)]
    roots = {name: 1 for name in names if name.startswith(ROBOT_PREFIXES)}
    for name, obj in [*robosuite_env.objects_dict.items(), *robosuite_env.fixtures_dict.items()]:
        roots[obj.root_body] = table[name]
    return sensors.geom_instances(model.geom_bodyid, model.body_parentid, names, roots)


def install(robosuite_env: Any, options: CameraOptions, image_size: int) -> tuple[float, float]:
    """Check the cameras and add the segmentation and point-cloud observables of ``options`` to a built
    robosuite env; return the model's depth clipping distances (near, far) in metres.

    The observables are added after robosuite's own, so they run after the camera sensors in
    each sampling pass (the point cloud reads the depth those put in the observation cache).
    robosuite keeps added observables across hard resets; the sensors look the simulator
    up at every call, so they follow a rebuilt model.
    """
    from robosuite.utils.observables import Observable, sensor

    check_scene_cameras(robosuite_env.sim, options.cameras)
    model = robosuite_env.sim.model
    near_far = sensors.depth_extents(model.stat.extent, model.vis.map.znear, model.vis.map.zfar)

    rate = robosuite_env.control_freq
    if options.segmentation:
        table = segmentation_table(robosuite_env)
        cache: dict[str, Any] = {}

        def instances() -> np.ndarray:
            model = robosuite_env.sim.model._model
            if cache.get("model") is not model:
                cache["model"], cache["geoms"] = model, _geom_instances(robosuite_env, table)
            return cache["geoms"]

        for camera in options.cameras:
            name = f"{camera}_segmentation_instance"

            @sensor(modality="image")
            def segmentation(obs_cache: dict[str, Any], camera: str = camera) -> np.ndarray:
                if not obs_cache:  # robosuite's shape probe at construction
                    return np.zeros((image_size, image_size, 1), dtype=np.uint8)
                return _render_segmentation(robosuite_env.sim, camera, image_size, instances())

            segmentation.__name__ = name
            robosuite_env.add_observable(Observable(name=name, sensor=segmentation, sampling_rate=rate))
    if options.point_cloud:

        @sensor(modality="image")
        def point_cloud(obs_cache: dict[str, Any]) -> np.ndarray:
            keys = [f"{camera}_depth" for camera in options.cameras]
            if not all(key in obs_cache for key in keys):
                return np.zeros((options.point_cloud, 3), dtype=np.float32)
            sim = robosuite_env.sim
            model, data = sim.model, sim.data
            near, far = sensors.depth_extents(model.stat.extent, model.vis.map.znear, model.vis.map.zfar)
            views = []
            for camera, key in zip(options.cameras, keys):
                cam = model.camera_name2id(camera)
                depth_m = sensors.depth_to_metres(obs_cache[key], near, far)
                views.append((depth_m, float(model.cam_fovy[cam]), data.cam_xpos[cam], data.cam_xmat[cam]))
            base = model.body_name2id(BASE_BODY)
            return sensors.fused_point_cloud(views, data.xpos[base], data.xmat[base], far, options.point_cloud)

        point_cloud.__name__ = POINT_CLOUD_KEY
        robosuite_env.add_observable(Observable(name=POINT_CLOUD_KEY, sensor=point_cloud, sampling_rate=rate))
    return near_far


def _render_segmentation(sim: Any, camera: str, size: int, geom_instance: np.ndarray) -> np.ndarray:
    """(S, S, 1) uint8 instance mask of one camera (OpenGL row order, as robosuite's images)."""
    import mujoco

    context = sim._render_context_offscreen
    context.render(width=size, height=size, camera_id=sim.model.camera_name2id(camera), segmentation=True)
    id_colours = context.read_pixels(size, size)
    scene = context.scn
    segid_instance = np.zeros(scene.ngeom + 1, dtype=np.int64)
    for k in range(scene.ngeom):
        geom = scene.geoms[k]
        if geom.segid != -1 and geom.objtype == mujoco.mjtObj.mjOBJ_GEOM:
            segid_instance[geom.segid + 1] = geom_instance[geom.objid]
    return sensors.decode_segmentation(id_colours, segid_instance)
