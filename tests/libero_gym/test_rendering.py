"""Images do not depend on which other envs share the process (libero_gym.rendering).

robosuite 1.4 renders with whichever GL context was made current last, and frees a
render context's GL objects in whichever one is current. Every test here puts an env
of another scene next to the one under test (alive, rendering after it, or closed
while ours is current) and asks for bitwise-identical images, on every render path:
camera observations, ``render()``, the collection worker's rendering of stored states,
and a vector env of mixed scenes against the same envs in their own processes.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from gymnasium.utils.env_checker import check_env

import libero_gym  # noqa: F401
from libero_gym.vector import make_vec
from tests.conftest import assert_runs_cleanly

KITCHEN = "LIBERO-90-Task0-v0"
"""The env under test (a kitchen scene)."""
LIVING_ROOM = "LIBERO-90-Task46-v0"
"""Its neighbour: another scene, so that the other context's objects differ from ours."""
SIZE = 64
"""Small images keep the software renderer cheap; the bug does not depend on size."""
SEED = 123


def _images(obs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {key: np.array(value) for key, value in obs.items() if key.endswith("_image")}


def _assert_same(expected: dict[str, np.ndarray], actual: dict[str, np.ndarray], when: str) -> None:
    assert expected.keys() == actual.keys()
    for key in expected:
        diff = int(np.abs(expected[key].astype(np.int16) - actual[key].astype(np.int16)).max())
        assert diff == 0, f"{key} {when}: max pixel difference {diff}, mean {actual[key].mean():.1f}"


def _assert_not_blank(image: np.ndarray) -> None:
    # A scene, not a black or flat frame (LIBERO's kitchen averages ~110).
    assert image.mean() > 40 and image.std() > 10, (image.mean(), image.std())


def _neighbour() -> gym.Env:
    env = gym.make(LIVING_ROOM, obs_mode="pixels", image_size=SIZE)
    env.reset(seed=0)  # builds its render context and leaves it current
    return env


def test_sync_and_async_vector_of_mixed_scenes_agree() -> None:
    """Two scenes in one process (sync) see what they see each in its own process (async)."""
    kwargs = dict(num_envs=2, task_id=[0, 46], task_per_worker=True, obs_mode="pixels", image_size=SIZE)
    sync = make_vec("LIBERO-90-v0", vectorization_mode="sync", **kwargs)
    async_ = make_vec("LIBERO-90-v0", vectorization_mode="async", **kwargs)
    actions = np.random.default_rng(0).uniform(-1, 1, (3, 2, 7)).astype(np.float32)
    try:
        a, _ = sync.reset(seed=SEED)
        b, _ = async_.reset(seed=SEED)
        _assert_same(_images(b), _images(a), "after reset")
        for env_index in range(2):
            _assert_not_blank(b["agentview_image"][env_index])
        for t, action in enumerate(actions):
            a = sync.step(action)[0]
            b = async_.step(action)[0]
            _assert_same(_images(b), _images(a), f"after step {t}")
    finally:
        sync.close()
        async_.close()


def test_camera_observations_ignore_a_live_then_closed_neighbour() -> None:
    env = gym.make(KITCHEN, obs_mode="pixels", image_size=SIZE)
    neighbour = None
    try:
        expected = _images(env.reset(seed=SEED)[0])
        _assert_not_blank(expected["agentview_image"])
        neighbour = _neighbour()
        _assert_same(expected, _images(env.reset(seed=SEED)[0]), "with a neighbour that rendered last")
        env.reset(seed=SEED)  # ours is current when the neighbour frees its GL objects
        neighbour.close()
        neighbour = None
        _assert_same(expected, _images(env.reset(seed=SEED)[0]), "after the neighbour closed")
        _assert_same(expected, _images(env.reset(seed=SEED)[0]), "on the next reset")
    finally:
        env.close()
        if neighbour is not None:
            neighbour.close()


def test_render_ignores_a_live_then_closed_neighbour() -> None:
    """``render()`` of a state env renders with the simulator (as evaluation videos do)."""
    env = gym.make(KITCHEN, obs_mode="state", render_mode="rgb_array", image_size=SIZE)
    neighbour = None
    try:
        env.reset(seed=SEED)
        expected = {"frame": env.render()}
        _assert_not_blank(expected["frame"])
        neighbour = _neighbour()
        _assert_same(expected, {"frame": env.render()}, "with a neighbour that rendered last")
        neighbour.close()
        neighbour = None
        _assert_same(expected, {"frame": env.render()}, "after the neighbour closed")
        env.reset(seed=SEED)
        _assert_same(expected, {"frame": env.render()}, "after a reset")
    finally:
        env.close()
        if neighbour is not None:
            neighbour.close()


def test_collect_renders_stored_states_as_a_process_alone_does(tmp_path: Path) -> None:
    """The worker's rendering of stored states equals a collection worker's own (a process alone)."""
    from libero_gym.data.collect import CollectPlan, run_collection
    from libero_gym.data.dataset import read_dataset
    from libero_gym.data.policies import PolicySpec
    from libero_gym.data.worker import EpisodeWorker, shard_path

    plan = CollectPlan(
        env_id=KITCHEN, task_ids=(0,), out_dir=str(tmp_path / "alone"), policy=PolicySpec("random"), episodes=1,
        until_successes=False, keep="all", image_size=SIZE, images=True, max_episode_steps=4, seed=7,
        max_episodes=1, provenance={},
    )
    run_collection(plan, num_workers=1, progress=False)  # one worker process, one env
    alone = read_dataset(shard_path(plan.out_dir, 0)).episodes[0]
    _assert_not_blank(alone.obs["agentview_rgb"][0])

    # The same episode here (same seed: same scene and states), then another scene built next to it.
    worker = EpisodeWorker(dataclasses.replace(plan, out_dir=str(tmp_path / "here")))
    neighbour = None
    try:
        worker.run(0)
        here = read_dataset(shard_path(worker.plan.out_dir, 0)).episodes[0]
        assert here.attrs["layout_seed"] == alone.attrs["layout_seed"]
        np.testing.assert_array_equal(here.states, alone.states)
        stored = {key: alone.obs[key] for key in ("agentview_rgb", "eye_in_hand_rgb")}
        _assert_same(stored, {key: here.obs[key] for key in stored}, "collected in this process")
        neighbour = _neighbour()
        rendered = {key: np.stack(images) for key, images in worker._render(list(alone.states)).items()}
        _assert_same(stored, rendered, "re-rendered next to a neighbour")
        neighbour.close()  # ours is current when the neighbour frees its GL objects
        neighbour = None
        rendered = {key: np.stack(images) for key, images in worker._render(list(alone.states)).items()}
        _assert_same(stored, rendered, "re-rendered after the neighbour closed")
    finally:
        worker.close()
        if neighbour is not None:
            neighbour.close()


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_check_env_with_render_check_passes_twice() -> None:
    """Gymnasium's checker makes and closes an env of the same spec; its determinism checks must still hold."""
    env = gym.make(KITCHEN, obs_mode="pixels", image_size=SIZE, render_mode="rgb_array", max_episode_steps=20)
    try:
        check_env(env.unwrapped)
        check_env(env.unwrapped)
    finally:
        env.close()


def test_neighbour_whose_gl_context_went_first_frees_nothing_of_ours() -> None:
    """Garbage collection may finalise a render context's GL context before the render context.

    Its ``MjrContext`` is then freed in a scratch context, not in ours; and the process
    exits without EGL errors. In a child process, to see its exit.
    """
    code = f"""
import gymnasium as gym, numpy as np, libero_gym
env = gym.make({KITCHEN!r}, obs_mode="pixels", image_size={SIZE})
expected = env.reset(seed={SEED})[0]["agentview_image"]
neighbour = gym.make({LIVING_ROOM!r}, obs_mode="pixels", image_size={SIZE})
neighbour.reset(seed=0)
env.reset(seed={SEED})  # ours is current
neighbour.unwrapped.sim._render_context_offscreen.gl_ctx.free()  # as a collector finalising it first would
# EGL's free releases the thread's context; another finaliser of the same sweep (or
# OSMesa, whose free does not) leaves ours current while the orphan frees its objects.
env.unwrapped.sim._render_context_offscreen.gl_ctx.make_current()
neighbour.close()
image = env.reset(seed={SEED})[0]["agentview_image"]
assert expected.mean() > 40, expected.mean()
assert np.array_equal(image, expected), int(np.abs(image.astype(int) - expected).max())
env.close()
print("done")
"""
    assert_runs_cleanly(code)
