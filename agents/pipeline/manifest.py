"""``OUT/manifest.json``: a generate run's tasks, their finished stages and the settings that made them."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agents.pipeline.config import MANIFEST, MANIFEST_VERSION, GenerateConfig, TaskRef
from libero_gym.errors import InvalidInputError


class Manifest:
    """``OUT/manifest.json``: the run's tasks and their finished stages; one writer (this process), atomic."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path, self.data = path, data
        self._lock = threading.Lock()

    @classmethod
    def load_or_create(cls, out: Path) -> Manifest:
        path = out / MANIFEST
        if path.exists():
            try:
                data = json.loads(path.read_text())
            except json.JSONDecodeError as error:
                raise InvalidInputError(f"{path} is not valid JSON ({error}); not a generate run") from None
            if data.get("version") != MANIFEST_VERSION or "tasks" not in data:
                raise InvalidInputError(f"{path} is not a generate manifest (version {MANIFEST_VERSION})")
            return cls(path, data)
        return cls(path, {"version": MANIFEST_VERSION, "tasks": {}})

    def task(self, key: str) -> dict[str, Any]:
        with self._lock:
            return self.data["tasks"].setdefault(key, {"stages": {}})

    def done(self, key: str, stage: str) -> bool:
        return bool(self.task(key)["stages"].get(stage, {}).get("done"))

    def record(self, key: str, stage: str | None = None, **values: Any) -> None:
        """Set ``values`` on a task (``stage`` None) or one of its stages, then write the file."""
        with self._lock:
            task = self.data["tasks"].setdefault(key, {"stages": {}})
            target = task if stage is None else task["stages"].setdefault(stage, {})
            target.update(values)
            self._write()

    def drop_stages(self, key: str, stages: Sequence[str]) -> None:
        with self._lock:
            task = self.data["tasks"].setdefault(key, {"stages": {}})
            for stage in stages:
                task["stages"].pop(stage, None)
            self._write()

    def save(self) -> None:
        with self._lock:
            self._write()

    def _write(self) -> None:
        from libero_gym.data.dataset import write_json_atomic

        write_json_atomic(self.path, self.data)


def check_settings(config: GenerateConfig, manifest: Manifest, tasks: Sequence[TaskRef]) -> dict[str, list[str]]:
    """Which stages of which tasks must run again; refuse a changed setting without ``--restart-from``.

    Returns:
        task key -> finished stages to discard (``--restart-from`` and every later stage).

    Raises:
        InvalidInputError: a finished stage was made with another value of a setting (named in the message).
    """
    stages = config.stages
    first = stages.index(config.restart_from) if config.restart_from is not None else len(stages)
    discard: dict[str, list[str]] = {}
    for task in tasks:
        finished = manifest.task(task.key)["stages"]
        discard[task.key] = [s for s in stages[first:] if s in finished]
        for position, stage in enumerate(stages[:first]):
            recorded = finished.get(stage, {})
            if not recorded.get("done"):
                continue
            old, new = recorded.get("settings", {}), config.stage_settings(stage)
            changed = sorted(k for k in new if k in old and old[k] != new[k])
            if changed:
                name = changed[0]
                raise InvalidInputError(
                    f"--{name.replace('_', '-')} changed ({old[name]!r} -> {new[name]!r}) since stage {stage!r} of "
                    f"{task.key} finished; rerun with the old value, or with --restart-from {stage} to redo "
                    f"{'/'.join(stages[position:])}"
                )
    return discard
