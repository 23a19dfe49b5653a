"""How a dataset was made: what acted, with which seeds, under which library versions.

Stored as JSON in the ``libero_gym`` attribute of a file's ``data`` group (an
extra attribute, so LIBERO's key layout is unchanged).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import platform
from typing import Any

PACKAGES: tuple[str, ...] = ("libero-gym", "libero", "robosuite", "mujoco", "numpy", "h5py", "gymnasium",
                             "stable-baselines3", "torch")
"""Distributions whose versions change what a rollout produces."""


def package_versions() -> dict[str, str]:
    """Installed versions of :data:`PACKAGES` (``"absent"`` when not installed)."""
    versions: dict[str, str] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "absent"
    return versions


def provenance(*, agent: str, checkpoint: str | None, seed: int, **details: Any) -> dict[str, Any]:
    """The provenance record of a collection.

    Args:
        agent: the policy that acted (``scripted``, ``random``, ``checkpoint``).
        checkpoint: its checkpoint folder, if any (with the agent name and step
            count read from it when readable).
        seed: base seed; episode ``i`` used ``seed + i``.
        **details: further plain values (env id, task ids, image size, ...).
    """
    import libero_gym

    record: dict[str, Any] = {
        "agent": agent,
        "checkpoint": checkpoint,
        "seed": seed,
        "libero_gym_version": libero_gym.__version__,
        "versions": package_versions(),
        "python": platform.python_version(),
        "created_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **details,
    }
    if checkpoint:
        try:
            import json
            from pathlib import Path

            meta_path = Path(checkpoint) / "agent.json"
            if meta_path.exists():
                meta = json.loads(meta_path.read_text())
                record["checkpoint_agent"] = meta.get("agent")
                record["checkpoint_num_timesteps"] = meta.get("num_timesteps")
                record["checkpoint_sha256"] = meta.get("params_sha256")
        except (OSError, ValueError):
            pass
    return record
