"""Camera images of stored states: datasets get their pixels after the fact, at any size.

RL and state-based collection never render (their envs run in state mode). A dataset
export that wants images at a size the files do not hold (256 px for OpenVLA-style
sets, or any size from a ``--no-images`` collection) renders them here from each
demo's stored ``states``, in the demo's own scene:

1. one state-mode env per task with an offscreen renderer at the wanted size,
   reset into the demo's scene (:func:`libero_gym.data.replay.restore_scene`: its
   init state, and the fixture placement from ``layout_seed`` / ``body_poses``);
2. per stored state, ``set_state`` + ``forward`` (LIBERO's ``regenerate_obs_from_state``)
   and both cameras rendered as robosuite's camera observables render them
   (``sim.render``; OpenGL convention: upside down, as LIBERO stores them).

The collection worker renders kept episodes the same way (:func:`render_states`), so
an image rendered at export equals the one ``collect --images`` stores at that size.
Needs the demos' scene record (``init_state_id`` and ``layout_seed`` or
``body_poses``), which every libero-gym collection has; LIBERO's own files (whose
scenes live in ``model_file`` only) keep their stored 128 px images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym.data import dataset as ds
from libero_gym.errors import DatasetError
from libero_gym.suites import Task

RENDER_CAMERAS: tuple[str, ...] = ("agentview", "robot0_eye_in_hand")
"""robosuite camera names of :data:`libero_gym.data.dataset.IMAGE_KEYS`, in that order."""


def render_states(unwrapped: Any, states: Sequence[np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Both cameras at each stored state, as LIBERO stores them (as rendered, unrotated).

    Args:
        unwrapped: a :class:`libero_gym.env.LiberoEnv` already in the demo's scene.
        states: (T, S) flattened MuJoCo states.
        size: height and width in pixels.

    Returns:
        ``{agentview_rgb, eye_in_hand_rgb}`` -> (T, size, size, 3) uint8.
    """
    sim = unwrapped.sim
    images: dict[str, list[np.ndarray]] = {key: [] for key in ds.IMAGE_KEYS}
    for state in states:
        unwrapped.libero_env.set_state(state)
        sim.forward()
        for key, camera in zip(ds.IMAGE_KEYS, RENDER_CAMERAS):
            images[key].append(np.asarray(sim.render(camera_name=camera, width=size, height=size)))
    return {key: np.stack(frames).astype(np.uint8) for key, frames in images.items()}


class EpisodeRenderer:
    """Renders demos of any of the 130 tasks at one size; one env per task, built on first use.

    Use as a context manager (the envs hold render contexts, closed on exit).
    """

    def __init__(self, size: int) -> None:
        """Args:
        size: image height and width in pixels.
        """
        self.size = size
        self._envs: dict[tuple[str, int], Any] = {}

    def _env(self, task: Task) -> Any:
        key = (task.suite, task.index)
        if key not in self._envs:
            import gymnasium as gym

            import libero_gym  # noqa: F401  (registers the ids)

            self._envs[key] = gym.make(task.env_id, obs_mode="state", render_mode="rgb_array", image_size=self.size)
        return self._envs[key]

    def render(self, episode: ds.Episode, task: Task, where: str | Path = "") -> ds.Episode:
        """The episode with both camera arrays (re)rendered from its states at :attr:`size`.

        Raises:
            DatasetError: the demo lacks the scene record a render needs.
        """
        from libero_gym.data.replay import restore_scene

        if "init_state_id" not in episode.attrs or not ({"layout_seed", "body_poses"} & set(episode.attrs)):
            raise DatasetError(
                f"{where}: no scene record (init_state_id and layout_seed or body_poses) to render images from; "
                "only libero-gym collections can be rendered at another size (leave out --image-size)"
            )
        env = self._env(task)
        restore_scene(env, episode)
        episode.obs.update(render_states(env.unwrapped, episode.states, self.size))
        return episode

    def close(self) -> None:
        """Close every env."""
        for env in self._envs.values():
            env.close()
        self._envs.clear()

    def __enter__(self) -> EpisodeRenderer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
