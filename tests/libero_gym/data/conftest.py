"""A small real collection shared by the data tests (LIBERO-Goal task 0, random policy).

Collected once per test run: 3 episodes of 30 steps at 64x64, two workers, and
interrupted after its first finished episode then resumed, so the resume path
is exercised by every test that uses it.
"""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

ENV_ID = "LIBERO-Goal-v0"
TASK_ID = 0
EPISODES = 3
STEPS = 30  # short episodes keep the default test run cheap
SETTLE_STEPS = 10
"""The env's settle steps (libero_gym.env.DEFAULT_SETTLE_STEPS), recorded as each demo's first steps."""
IMAGE_SIZE = 64


class _Interrupt(Exception):
    pass


@dataclasses.dataclass
class Collected:
    out: Path
    first_run_finished: int
    result: Any
    export: Any


@pytest.fixture(scope="session")
def collected(tmp_path_factory: pytest.TempPathFactory) -> Collected:
    """Collected once per test run, shared by pytest-xdist workers through a file lock."""
    from filelock import FileLock

    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent  # this run's folder, shared by its xdist workers
    out = root / "libero_gym_data_collection"
    record = root / "libero_gym_data_collection.json"
    with FileLock(str(record) + ".lock"):
        if not record.exists():
            record.write_text(json.dumps(_collect(out)))
    saved = json.loads(record.read_text())
    return Collected(
        out=out,
        first_run_finished=saved["first_run_finished"],
        result=SimpleNamespace(kept=saved["kept"], dropped=saved["dropped"]),
        export=SimpleNamespace(files=[Path(p) for p in saved["files"]]),
    )


def _collect(out: Path) -> dict[str, Any]:
    from libero_gym.data.collect import CollectPlan, finished_summaries, run_collection
    from libero_gym.data.export import export_collection
    from libero_gym.data.policies import PolicySpec
    from libero_gym.data.provenance import provenance

    plan = CollectPlan(
        env_id=ENV_ID, task_ids=(TASK_ID,), out_dir=str(out), policy=PolicySpec("random"), episodes=EPISODES,
        until_successes=False, keep="all", image_size=IMAGE_SIZE, images=True, max_episode_steps=STEPS, seed=7,
        max_episodes=EPISODES,
        provenance=provenance(agent="random", checkpoint=None, seed=7, env_id=ENV_ID, task_ids=[TASK_ID]),
    )

    def interrupt(summary: dict[str, Any]) -> None:
        raise _Interrupt

    with pytest.raises(_Interrupt):
        run_collection(plan, num_workers=2, progress=False, on_result=interrupt)
    first = len(finished_summaries(out))
    result = run_collection(plan, num_workers=2, resume=True, progress=False)
    exported = export_collection(out)
    return {
        "first_run_finished": first,
        "kept": result.kept,
        "dropped": result.dropped,
        "files": [str(p) for p in exported.files],
    }
