"""The goal/cut rule of collect, without a simulator."""

from __future__ import annotations

from pathlib import Path

from libero_gym.data.collect import CollectPlan, _prefix, _remove_overshoot
from libero_gym.data.policies import PolicySpec


def _plan(episodes: int, until_successes: bool) -> CollectPlan:
    return CollectPlan(env_id="LIBERO-Goal-v0", task_ids=(0,), out_dir="/nonexistent", policy=PolicySpec("random"),
                       episodes=episodes, until_successes=until_successes, keep="all", image_size=64, images=False,
                       max_episode_steps=10, seed=0, max_episodes=100, provenance={})


def _summaries(successes: dict[int, bool]) -> dict[int, dict]:
    return {i: {"index": i, "success": s} for i, s in successes.items()}


def test_episode_goal_needs_a_contiguous_prefix() -> None:
    plan = _plan(3, until_successes=False)
    # 0, 1 and 3 done, 2 still running: not finished, whatever index 3 says.
    assert _prefix(_summaries({0: False, 1: True, 3: True}), set(), plan) == (None, 2, 1)
    assert _prefix(_summaries({0: False, 1: True, 2: False, 3: True}), set(), plan) == (2, 3, 1)


def test_success_goal_cuts_at_the_nth_success() -> None:
    plan = _plan(2, until_successes=True)
    done = _summaries({0: True, 1: False, 2: False, 3: True, 4: True, 5: True})
    assert _prefix(done, set(), plan) == (3, 4, 2)  # indices 4 and 5 are overshoot, trimmed


def test_skipped_indices_count_as_passed_but_not_finished() -> None:
    plan = _plan(2, until_successes=False)
    assert _prefix(_summaries({0: True, 2: True}), {1}, plan) == (2, 2, 2)


def test_overshoot_is_removed_from_the_folder_even_if_the_parent_never_heard_of_it(tmp_path: Path) -> None:
    """A worker can finish and write an episode past the goal while the parent stops: the export reads the
    folder, so that episode must go too (it once made a 50-success collection export 51)."""
    from libero_gym.data.worker import shard_path, summary_path

    for index in range(5):
        for path in (shard_path(tmp_path, index), summary_path(tmp_path, index)):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x")
    summaries = _summaries({0: True, 1: True, 2: True, 3: True})  # 4 was written, never reported
    _remove_overshoot(tmp_path, summaries, last=2)
    assert sorted(summaries) == [0, 1, 2]
    assert sorted(p.name for p in (tmp_path / "episodes").iterdir()) == [
        f"ep_{i:06d}.{ext}" for i in range(3) for ext in ("hdf5", "json")
    ]
