"""Workarounds that make LIBERO's simulator reset reproducibly and render only what is returned.

LIBERO (robosuite 1.4) re-samples fixture placements from numpy's global RNG at reset,
keeps the gripper's smoothed command across soft resets, and renders camera
observations that are thrown away (reset, ``set_init_state``). :class:`libero_gym.env.LiberoEnv`
calls these so that a seed fixes the whole scene and no frame is rendered in vain.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import numpy as np

from libero_gym.spaces import MAX_FIXTURE_JOINTS


def reset_scene(
    libero_env: Any, fixture_poses: dict[int, tuple[np.ndarray, np.ndarray]], layout_seed: int, *, hard: bool
) -> None:
    """LIBERO's reset of ``libero_env``, made a function of ``layout_seed`` (call inside :func:`seeded_global_numpy`).

    Args:
        libero_env: LIBERO's ``ControlEnv``/``OffScreenRenderEnv``.
        fixture_poses: :func:`fixture_xml_poses` of its model.
        layout_seed: seeds the fixture placement LIBERO draws from numpy's global RNG.
        hard: LIBERO's default hard reset first (rebuild XML, model and renderer).
    """
    if hard:
        # The layout of that rebuild depends on the env's history, so it is re-drawn below, seeded.
        libero_env.env.hard_reset = True
        libero_env.reset()
    # robosuite's soft reset: also hides the visualisation sites (gripper and
    # region markers) from the cameras. The placement reads the fixtures'
    # current poses (regions on them), so they go back to the model's own (XML)
    # poses first, as a rebuild does.
    libero_env.env.hard_reset = False
    for body_id, (position, quaternion) in fixture_poses.items():
        libero_env.env.sim.model.body_pos[body_id] = position
        libero_env.env.sim.model.body_quat[body_id] = quaternion
    np.random.seed(layout_seed)
    # Its observation is never returned (set_init_state makes another): no camera renders.
    with cameras_off(libero_env.env):
        libero_env.reset()
    # A rebuild re-creates the robot models; a soft reset keeps them, and with them
    # the gripper's smoothed command (robosuite's PandaGripper integrates the sign of
    # the action into `current_action`). Zero it, as a rebuild does, or the first
    # gripper actions of the episode differ from LIBERO's.
    for robot in libero_env.env.robots:
        robot.gripper.current_action = np.zeros(robot.gripper.dof)


@contextlib.contextmanager
def cameras_off(robosuite_env: Any) -> Iterator[None]:
    """Inside the block, camera observables return black images instead of rendering.

    For observations that are computed but never returned (LIBERO's reset and
    ``set_init_state`` each compute one). The observables' timers move as usual.
    """
    cameras = [obs for obs in robosuite_env._observables.values() if obs.modality == "image"]
    saved = [obs._sensor for obs in cameras]
    for obs in cameras:
        blank = np.zeros(obs._data_shape, dtype=np.uint8)

        def sensor(obs_cache: dict[str, Any], blank: np.ndarray = blank) -> np.ndarray:
            return blank

        sensor.__modality__ = "image"  # type: ignore[attr-defined]
        obs._sensor = sensor
    try:
        yield
    finally:
        for obs, original in zip(cameras, saved):
            obs._sensor = original


@contextlib.contextmanager
def seeded_global_numpy(seed: int) -> Iterator[None]:
    """Seed ``np.random``'s global RNG inside the block, restore its state after."""
    saved = np.random.get_state()
    np.random.seed(seed)
    try:
        yield
    finally:
        np.random.set_state(saved)


def fixture_xml_poses(robosuite_env: Any) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """Body id -> (position, wxyz quaternion) in the model XML, per fixture root body.

    LIBERO's reset moves fixtures by writing ``model.body_pos`` and ``body_quat``;
    these are the poses a freshly compiled model has, read from the MJCF tree (no
    compile).
    """
    from robosuite.utils.mjcf_utils import find_elements, string_to_array

    poses = {}
    for fixture in robosuite_env.fixtures_dict.values():
        element = find_elements(
            root=robosuite_env.model.worldbody, tags="body", attribs={"name": fixture.root_body}, return_first=True
        )
        body_id = robosuite_env.sim.model.body_name2id(fixture.root_body)
        poses[body_id] = (
            string_to_array(element.get("pos", "0 0 0")),
            string_to_array(element.get("quat", "1 0 0 0")),  # MuJoCo's default orientation
        )
    return poses


def fixture_joint_addresses(sim: Any) -> np.ndarray:
    """qpos addresses of the hinge and slide joints of articulated fixtures.

    These are the joints that belong neither to the robot (``robot0_``,
    ``gripper0_`` prefixes) nor to a movable object (free joints): drawers, doors,
    stove knobs. Their positions are what the Open/Close/Turnon/Turnoff goals test.
    """
    import mujoco

    model = sim.model._model
    addresses = []
    for joint_id in range(model.njnt):
        name = mujoco.mj_id2name(model, mujoco.mjtObj.mjOBJ_JOINT, joint_id) or ""
        if name.startswith(("robot0_", "gripper0_", "mount0_")):
            continue
        if model.jnt_type[joint_id] in (mujoco.mjtJoint.mjJNT_HINGE, mujoco.mjtJoint.mjJNT_SLIDE):
            addresses.append(model.jnt_qposadr[joint_id])
    if len(addresses) > MAX_FIXTURE_JOINTS:
        raise RuntimeError(f"scene has {len(addresses)} fixture joints, more than MAX_FIXTURE_JOINTS={MAX_FIXTURE_JOINTS}")
    return np.asarray(addresses, dtype=np.int64)
