"""The exported file has exactly LIBERO's layout.

Written from the layout (LIBERO's ``scripts/create_dataset.py`` and the
attributes of its released ``*_demo.hdf5`` files), not from our writer: the
expected keys, dtypes, shape ranks and attributes are literals here, and the
file is inspected with h5py alone.
"""

from __future__ import annotations

import json

import h5py
import numpy as np

from tests.libero_gym.data.conftest import EPISODES, IMAGE_SIZE, SETTLE_STEPS, STEPS

# path under demo_<i> -> (dtype, shape after the time axis; None = scene-dependent)
EXPECTED_DEMO_DATASETS = {
    "actions": ("float64", (7,)),
    "states": ("float64", (None,)),
    "robot_states": ("float64", (9,)),
    "rewards": ("uint8", ()),
    "dones": ("uint8", ()),
    "obs/agentview_rgb": ("uint8", (IMAGE_SIZE, IMAGE_SIZE, 3)),
    "obs/eye_in_hand_rgb": ("uint8", (IMAGE_SIZE, IMAGE_SIZE, 3)),
    "obs/gripper_states": ("float64", (2,)),
    "obs/joint_states": ("float64", (7,)),
    "obs/ee_states": ("float64", (6,)),
    "obs/ee_pos": ("float64", (3,)),
    "obs/ee_ori": ("float64", (3,)),
}
EXPECTED_DATA_ATTRS = {
    "env_name", "env_args", "problem_info", "bddl_file_name", "bddl_file_content",
    "macros_image_convention", "tag", "total", "num_demos",
}
OUR_EXTRA_DATA_ATTRS = {"libero_gym"}
EXPECTED_DEMO_ATTRS = {"num_samples", "init_state", "model_file"}
OUR_EXTRA_DEMO_ATTRS = {
    "success", "init_state_id", "layout_seed", "seed", "episode_index", "body_poses", "settle_steps",
}
GOAL_STATE_DIM = 79  # flattened MuJoCo state of the libero_goal scenes (time + qpos + qvel)


def _datasets(group: h5py.Group) -> dict[str, h5py.Dataset]:
    found: dict[str, h5py.Dataset] = {}
    group.visititems(lambda name, obj: found.__setitem__(name, obj) if isinstance(obj, h5py.Dataset) else None)
    return found


def test_exported_file_has_libero_layout(collected) -> None:
    (path,) = collected.export.files
    assert path.name == "open_the_middle_drawer_of_the_cabinet_demo.hdf5"
    with h5py.File(path, "r") as file:
        assert list(file.keys()) == ["data"]
        data = file["data"]
        assert set(data.attrs) == EXPECTED_DATA_ATTRS | OUR_EXTRA_DATA_ATTRS
        assert sorted(data.keys(), key=lambda k: int(k[5:])) == [f"demo_{i}" for i in range(EPISODES)]
        assert int(data.attrs["num_demos"]) == EPISODES
        assert data.attrs["macros_image_convention"] == "opengl"
        assert data.attrs["tag"] == "libero-v1"
        problem_info = json.loads(data.attrs["problem_info"])
        assert problem_info == {
            "problem_name": "libero_tabletop_manipulation",
            "domain_name": "robosuite",
            "language_instruction": "open the middle drawer of the cabinet",
        }
        env_args = json.loads(data.attrs["env_args"])
        assert env_args["type"] == 1 and env_args["problem_name"] == "libero_tabletop_manipulation"
        assert env_args["env_kwargs"]["camera_heights"] == IMAGE_SIZE
        assert data.attrs["bddl_file_name"].endswith("libero_goal/open_the_middle_drawer_of_the_cabinet.bddl")
        assert "(:goal" in data.attrs["bddl_file_content"]
        provenance = json.loads(data.attrs["libero_gym"])
        assert provenance["agent"] == "random" and provenance["seeds"] == [7, 8, 9]
        assert {"mujoco", "robosuite", "libero"} <= set(provenance["versions"])
        total = 0
        for name in data:
            demo = data[name]
            assert set(demo.attrs) == EXPECTED_DEMO_ATTRS | OUR_EXTRA_DEMO_ATTRS
            assert set(demo.keys()) == {"actions", "states", "robot_states", "rewards", "dones", "obs"}
            found = _datasets(demo)
            assert set(found) == set(EXPECTED_DEMO_DATASETS)
            steps = found["actions"].shape[0]
            assert steps == SETTLE_STEPS + STEPS and int(demo.attrs["settle_steps"]) == SETTLE_STEPS
            for key, (dtype, tail) in EXPECTED_DEMO_DATASETS.items():
                dataset = found[key]
                assert dataset.dtype == np.dtype(dtype), key
                assert dataset.ndim == 1 + len(tail), key
                assert dataset.shape[0] == steps, key
                expected_tail = tuple(GOAL_STATE_DIM if d is None else d for d in tail)
                assert dataset.shape[1:] == expected_tail, key
            assert int(demo.attrs["num_samples"]) == steps
            init_state = np.asarray(demo.attrs["init_state"])
            assert init_state.dtype == np.float64 and init_state.shape == (GOAL_STATE_DIM,)
            np.testing.assert_array_equal(init_state, demo["states"][0])
            assert "<mujoco" in demo.attrs["model_file"]
            dones = demo["dones"][()]
            assert dones[-1] == 1 and dones[:-1].sum() == 0
            total += steps
        assert int(data.attrs["total"]) == total
