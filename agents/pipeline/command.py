"""``cli.py generate``: from nothing to a VLA dataset, per task, in one resumable command.

The run: check the settings against the manifest (a changed setting of a finished stage is refused by name),
write ``OUT/generate.json``, run every task's stages (:mod:`agents.pipeline.runner`), write the report
(:mod:`agents.pipeline.report`) and print its table.
"""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from agents.pipeline.config import CONFIG_FILE, MANIFEST, GenerateConfig, resolve_tasks
from agents.pipeline.manifest import Manifest, check_settings
from agents.pipeline.report import TASKS_DIR, report_table, write_report
from agents.pipeline.runner import Runner, run_all
from agents.pipeline.stages import stage_run
from libero_gym.errors import InvalidInputError


def generate(config: GenerateConfig) -> int:
    """Run (or continue) the pipeline; returns 0 when every task finished every stage, else 1."""
    from libero_gym.data.dataset import write_json_atomic
    from libero_gym.locking import folder_lock

    config.validate()
    config.check_reachable()  # an unreachable --ray-address fails before the folder is touched
    tasks = resolve_tasks(config.env, config.task_id)
    out = Path(config.out)
    if out.exists() and not out.is_dir():
        raise InvalidInputError(f"--out {out} is a file, not a folder")
    if out.exists() and not (out / MANIFEST).exists():
        others = [p.name for p in out.iterdir() if p.name != ".lock"]
        if others:
            raise InvalidInputError(
                f"--out {out} holds other files ({', '.join(sorted(others)[:3])}...), not a generate run; "
                "choose an empty or new folder"
            )
    out.mkdir(parents=True, exist_ok=True)
    with folder_lock(out, "generate folder"):
        manifest = Manifest.load_or_create(out)
        previous = manifest.data.get("config", {})
        if previous and previous.get("source") != config.source:
            if config.restart_from is None or config.restart_from != config.stages[0]:
                raise InvalidInputError(
                    f"--source changed ({previous.get('source')!r} -> {config.source!r}) for the run in {out}; "
                    "use another --out"
                )
        discard = check_settings(config, manifest, tasks)
        for task in tasks:
            stale = discard.get(task.key, [])
            for stage in stale:
                output = stage_run(config, task, stage, out / TASKS_DIR / task.key).output
                if output.exists():
                    shutil.rmtree(output) if output.is_dir() else output.unlink()
            if stale:
                manifest.drop_stages(task.key, stale)
        resolved = {**config.resolved(), "out": str(out)}
        write_json_atomic(out / CONFIG_FILE, resolved)
        manifest.data["config"] = resolved
        manifest.data.setdefault("started_at", time.strftime("%Y-%m-%dT%H:%M:%S"))
        manifest.save()

        started = time.perf_counter()
        with _ray_cluster(config) as (ray_address, cpus):
            runner = Runner(config, out, tasks, manifest, ray_address)
            parallel = config.parallel_tasks(cpus)
            manifest.data["parallel_tasks"] = parallel
            try:
                run_all(runner, parallel)  # on Ctrl-C / SIGTERM it stops the stages in flight, then re-raises
            finally:  # a stopped run's time counts too (the run's wall time adds up over its resumes)
                manifest.data["wall_s"] = round(manifest.data.get("wall_s", 0.0) + time.perf_counter() - started, 1)
                manifest.save()
                report = write_report(out, config, tasks, manifest.data)
        failed = [t.key for t in tasks if runner.status[t.key] != "done"]
        for key in failed:
            print(f"{key}: {manifest.task(key).get('error')}", file=sys.stderr)
        print(report_table(report))
        print(f"report: {report}")
        return 1 if failed else 0


@contextlib.contextmanager
def _ray_cluster(config: GenerateConfig) -> Iterator[tuple[str | None, int | None]]:
    """--backend ray: join the cluster of --ray-address, or start a local Ray in this process (its head: the
    stages join it by address instead of each starting their own); yields (its address, its CPUs) and shuts a
    Ray started here down on the way out, also after Ctrl-C or SIGTERM. --backend local: (None, None)."""
    if config.backend != "ray":
        yield None, None
        return
    from libero_gym.backend import cluster_cpus, gcs_address, shutdown, start_or_connect

    owns = start_or_connect(config.ray_address)
    try:
        yield gcs_address(), cluster_cpus()
    finally:
        if owns:
            shutdown()
