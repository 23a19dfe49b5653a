"""Read RLDS exports with TensorFlow Datasets in a process of their own, for test_rlds_export.py.

``python rlds_reader.py OUT DOCS_JSON NAME=ROOT [NAME=ROOT ...]`` (DOCS_JSON: the export's feature docs,
``libero_gym.data.rlds.FEATURE_DOCS``, so that this script needs only numpy and TensorFlow Datasets) reads each dataset the two ways OpenVLA-style
loaders do (``tfds.builder_from_directory(ROOT/NAME/1.0.0)`` and ``tfds.builder(NAME, data_dir=ROOT)``),
and writes into the folder OUT:

- ``NAME.npz``: every step of every episode, stacked per episode (``<episode>/<feature>``);
- ``NAME.json``: per episode its metadata and step count, the splits both builders report;
- ``NAME.features.json``: what TFDS itself writes (``FeaturesDict.save_config``) for the FeaturesDict
  the export declares, built with the TFDS API;
- ``NAME.example.json``: whether the first stored record parses to the very ``tf.train.Example``
  that TFDS serialises from its decoded values.

Why a process of its own: TensorFlow's runtime and MuJoCo's EGL rendering do not share a process
(building a rendering env after a TensorFlow op segfaults in ``mjr_makeContext``), and the test
workers render; and TensorFlow stays out of the project's environment (TensorBoard imports it when
installed, ~6 s in every training process), so the tests run this with a Python of its own
(``LIBERO_GYM_TFDS_PYTHON``; ``make test`` builds one in ``.venv-tfds``).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import numpy as np


FEATURE_DOCS: dict[str, str] = {}
"""The export's feature docs (read from the DOCS_JSON argument)."""


def reference_features(image_shape: tuple[int, int], encoding: str) -> Any:
    """The export's FeaturesDict, built with the TFDS API (OpenVLA's LIBERO builders' spec)."""
    import tensorflow_datasets as tfds

    d = FEATURE_DOCS

    def image(doc: str) -> Any:
        return tfds.features.Image(shape=(*image_shape, 3), dtype=np.uint8, encoding_format=encoding, doc=doc)

    return tfds.features.FeaturesDict({
        "steps": tfds.features.Dataset({
            "observation": tfds.features.FeaturesDict({
                "image": image(d["image"]), "wrist_image": image(d["wrist_image"]),
                "state": tfds.features.Tensor(shape=(8,), dtype=np.float32, doc=d["state"]),
                "joint_state": tfds.features.Tensor(shape=(7,), dtype=np.float32, doc=d["joint_state"]),
            }),
            "action": tfds.features.Tensor(shape=(7,), dtype=np.float32, doc=d["action"]),
            **{key: tfds.features.Scalar(dtype=np.float32, doc=d[key]) for key in ("discount", "reward")},
            **{key: tfds.features.Scalar(dtype=np.bool_, doc=d[key]) for key in ("is_first", "is_last", "is_terminal")},
            "language_instruction": tfds.features.Text(doc=d["language_instruction"]),
        }),
        "episode_metadata": tfds.features.FeaturesDict({
            "file_path": tfds.features.Text(doc=d["file_path"]), "demo": tfds.features.Text(doc=d["demo"]),
            "noops_dropped": tfds.features.Scalar(dtype=np.int64, doc=d["noops_dropped"]),
        }),
    })


def same_example(builder_dir: Path, features: Any) -> dict[str, Any]:
    """Parse the first record, rebuild its values, let TFDS serialise them, compare the two Examples."""
    import tensorflow as tf

    shard = sorted(builder_dir.glob("*.tfrecord-*"))[0]
    record = next(iter(tf.data.TFRecordDataset(str(shard)))).numpy()
    ours = tf.train.Example.FromString(record)
    flat = dict(ours.features.feature.items())

    def values(key: str) -> list[Any]:
        return list(getattr(flat[key], flat[key].WhichOneof("kind")).value)

    def rows(key: str, width: int) -> np.ndarray:
        return np.asarray(values(key), np.float32).reshape(-1, width)

    steps = [{
        "observation": {"image": values("steps/observation/image")[t],  # encoded bytes: TFDS keeps them as given
                        "wrist_image": values("steps/observation/wrist_image")[t],
                        "state": rows("steps/observation/state", 8)[t],
                        "joint_state": rows("steps/observation/joint_state", 7)[t]},
        "action": rows("steps/action", 7)[t],
        "discount": values("steps/discount")[t], "reward": values("steps/reward")[t],
        **{key: bool(values(f"steps/{key}")[t]) for key in ("is_first", "is_last", "is_terminal")},
        "language_instruction": values("steps/language_instruction")[t].decode(),
    } for t in range(len(values("steps/is_first")))]
    theirs = tf.train.Example.FromString(features.serialize_example({
        "steps": steps,
        "episode_metadata": {"file_path": values("episode_metadata/file_path")[0].decode(),
                             "demo": values("episode_metadata/demo")[0].decode(),
                             "noops_dropped": values("episode_metadata/noops_dropped")[0]},
    }))
    return {"equal": ours == theirs, "keys": sorted(flat)}


def read(out: Path, name: str, root: Path) -> None:
    import tensorflow_datasets as tfds

    builder_dir = root / name / "1.0.0"
    builder = tfds.builder_from_directory(str(builder_dir))
    arrays: dict[str, np.ndarray] = {}
    episodes = []
    for index, episode in enumerate(tfds.as_numpy(builder.as_dataset(split="train"))):
        steps = list(episode["steps"])
        for key in ("image", "wrist_image", "state", "joint_state"):
            arrays[f"{index}/{key}"] = np.stack([step["observation"][key] for step in steps])
        for key in ("action", "discount", "reward", "is_first", "is_last", "is_terminal"):
            arrays[f"{index}/{key}"] = np.stack([step[key] for step in steps])
        meta = episode["episode_metadata"]
        episodes.append({
            "steps": len(steps),
            "language": sorted({step["language_instruction"].decode() for step in steps}),
            "step_keys": sorted(steps[0]), "observation_keys": sorted(steps[0]["observation"]),
            "file_path": meta["file_path"].decode(), "demo": meta["demo"].decode(),
            "noops_dropped": int(meta["noops_dropped"]),
        })
    np.savez(out / f"{name}.npz", **arrays)
    by_name = tfds.builder(name, data_dir=str(root))  # OpenVLA's call, with its data_root_dir
    (out / f"{name}.json").write_text(json.dumps({
        "episodes": episodes,
        "from_directory": builder.info.splits["train"].num_examples,
        "by_name": by_name.info.splits["train"].num_examples,
    }))
    image = builder.info.features["steps"]["observation"]["image"]
    features = reference_features(image.shape[:2], image.encoding_format)
    (out / f"{name}.reference").mkdir()
    features.save_config(str(out / f"{name}.reference"))
    (out / f"{name}.example.json").write_text(json.dumps(same_example(builder_dir, features)))


def main(argv: list[str]) -> None:
    out = Path(argv[0])
    out.mkdir(parents=True, exist_ok=True)
    FEATURE_DOCS.update(json.loads(Path(argv[1]).read_text()))
    for pair in argv[2:]:
        name, root = pair.split("=", 1)
        read(out, name, Path(root))
    print("done")


if __name__ == "__main__":
    main(sys.argv[1:])
