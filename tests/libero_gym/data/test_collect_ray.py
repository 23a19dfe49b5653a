"""``collect --backend ray``: the same episodes as the local backend; a killed actor's episode is dropped and redone.

Real LIBERO (LIBERO-Goal task 0, state policies, no images), one local Ray for the module.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import cli
from libero_gym.backend import shutdown, start_or_connect
from libero_gym.data.collect import CollectPlan, finished_summaries, run_collection, shard_path
from libero_gym.data.dataset import read_dataset
from libero_gym.data.policies import PolicySpec
from tests.libero_gym.data.conftest import ENV_ID, SETTLE_STEPS, TASK_ID

STEPS = 20
"""Episode limit: short episodes keep the module cheap."""


pytestmark = pytest.mark.usefixtures("local_ray")  # tests/conftest.py: one local Ray for the module


def _episodes(out: Path) -> dict[int, Any]:
    return {index: read_dataset(shard_path(out, index)).episodes[0] for index in sorted(finished_summaries(out))}


def test_scripted_collect_on_ray_equals_local(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Through the CLI: the scripted expert's episodes are the same, array for array, on either backend."""
    argv = ["collect", "--policy", "scripted", "--env", ENV_ID, "--task-id", str(TASK_ID), "--episodes", "2",
            "--keep", "all", "--no-images", "--max-episode-steps", str(STEPS), "--num-workers", "2", "--seed", "5",
            "--no-progress"]  # fmt: skip
    outs = {backend: tmp_path / backend for backend in ("local", "ray")}
    assert cli.main([*argv, "--out", str(outs["local"])]) == 0
    assert cli.main([*argv, "--out", str(outs["ray"]), "--backend", "ray"]) == 0
    capsys.readouterr()
    episodes = {backend: _episodes(out) for backend, out in outs.items()}
    assert sorted(episodes["ray"]) == sorted(episodes["local"]) == [0, 1]
    for index, local in episodes["local"].items():
        ray_episode = episodes["ray"][index]
        assert local.num_samples == ray_episode.num_samples == SETTLE_STEPS + STEPS
        for name in ("actions", "states", "robot_states", "rewards", "dones", "init_state"):
            np.testing.assert_array_equal(getattr(local, name), getattr(ray_episode, name), err_msg=f"{index} {name}")
        assert sorted(local.obs) == sorted(ray_episode.obs)
        for key in local.obs:
            np.testing.assert_array_equal(local.obs[key], ray_episode.obs[key], err_msg=f"{index} obs/{key}")
        assert local.model_file == ray_episode.model_file
    untimed = {backend: {i: {k: v for k, v in s.items() if not k.endswith("_seconds")}
                         for i, s in finished_summaries(out).items()} for backend, out in outs.items()}  # fmt: skip
    assert untimed["ray"] == untimed["local"]
    manifests = {backend: json.loads((out / "collection.json").read_text()) for backend, out in outs.items()}
    for manifest in manifests.values():
        manifest["plan"].pop("out_dir")
        manifest["plan"]["provenance"].pop("created_at")
    assert manifests["ray"] == manifests["local"]
    assert sorted(p.name for p in outs["ray"].glob("*.hdf5")) == sorted(p.name for p in outs["local"].glob("*.hdf5"))


def test_killed_or_failing_actor_is_replaced_and_its_episode_redone(tmp_path: Path) -> None:
    """An actor SIGKILLs itself mid-episode, another raises: both replaced, both episodes dropped and redone."""
    out = tmp_path / "collection"
    plan = CollectPlan(
        env_id=ENV_ID, task_ids=(TASK_ID,), out_dir=str(out),
        policy=PolicySpec("tests.libero_gym.data.crash_policy:CrashOncePolicy", checkpoint=str(tmp_path)),
        episodes=3, until_successes=False, keep="all", image_size=64, images=False, max_episode_steps=STEPS,
        seed=3, max_episodes=3, provenance={},
    )  # fmt: skip
    result = run_collection(plan, num_workers=2, progress=False, backend="ray")
    assert (tmp_path / "crashed").exists() and (tmp_path / "raised").exists(), "both faults were injected"
    assert result.dropped == 2 and result.skipped == [] and result.kept == [0, 1, 2]
    for index in result.kept:
        (episode,) = read_dataset(shard_path(out, index)).episodes
        assert episode.num_samples == SETTLE_STEPS + STEPS
    assert not list((out / "episodes").glob(".*tmp*"))


@pytest.mark.slow
def test_collect_across_a_two_node_cluster(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A simulated 2-node cluster (one CPU each): collect's two actors run one on each node, and the episodes
    are those of the local backend, array for array."""
    import ray
    from ray.cluster_utils import Cluster

    from libero_gym.data.ray_workers import RayEpisodeWorkers

    nodes_seen: list[tuple[list[str | None], set[str]]] = []  # (the actors' nodes, the cluster's live nodes)
    close = RayEpisodeWorkers.close

    def close_noting_nodes(self: RayEpisodeWorkers) -> None:  # before close() disconnects from the cluster
        nodes_seen.append((self.node_ids(), {node["NodeID"] for node in ray.nodes() if node["Alive"]}))
        close(self)

    monkeypatch.setattr(RayEpisodeWorkers, "close", close_noting_nodes)
    plan = CollectPlan(
        env_id=ENV_ID, task_ids=(TASK_ID,), out_dir=str(tmp_path / "local"), policy=PolicySpec("scripted"),
        episodes=4, until_successes=False, keep="all", image_size=64, images=False, max_episode_steps=STEPS,
        seed=11, max_episodes=4, provenance={},
    )  # fmt: skip
    assert run_collection(plan, num_workers=2, progress=False).kept == [0, 1, 2, 3]
    shutdown()  # this process joins the cluster instead of the module's local Ray
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    cluster.add_node(num_cpus=1)
    cluster.wait_for_nodes()
    try:
        ray_plan = dataclasses.replace(plan, out_dir=str(tmp_path / "cluster"))
        result = run_collection(ray_plan, num_workers=2, progress=False, backend="ray", ray_address=cluster.address)
        assert result.kept == [0, 1, 2, 3] and result.dropped == 0
        ((nodes, alive),) = nodes_seen
        assert len(alive) == 2 and set(nodes) == alive, f"one actor on each node: {nodes} of {alive}"
    finally:
        shutdown()
        cluster.shutdown()
        start_or_connect(None, num_cpus=2)  # the module's local Ray again, for the tests after this one
    local, remote = _episodes(tmp_path / "local"), _episodes(tmp_path / "cluster")
    assert sorted(local) == sorted(remote) == [0, 1, 2, 3]
    for index, episode in local.items():
        for name in ("actions", "states", "rewards", "dones", "init_state"):
            np.testing.assert_array_equal(getattr(episode, name), getattr(remote[index], name), err_msg=f"{index}")
