"""A policy that SIGKILLs its own worker once and raises once (fault injection for collect)."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym.data.policies import RandomPolicy

CRASH_STEP = 5
RAISE_STEP = 7


class CrashOncePolicy(RandomPolicy):
    """Random actions; the first worker to reach step CRASH_STEP of an episode kills itself,
    and the first to reach step RAISE_STEP after that raises (a simulator exception stand-in).

    Args:
        marker_dir: folder for the marker file that makes the crash happen once.
    """

    def __init__(self, marker_dir: str) -> None:
        super().__init__(0)
        self.marker = Path(marker_dir) / "crashed"
        self.raise_marker = Path(marker_dir) / "raised"
        self.steps = 0

    def reset(self, env: Any) -> None:
        self.steps = 0

    def act(self, obs: dict[str, np.ndarray]) -> np.ndarray:
        self.steps += 1
        if self.steps == CRASH_STEP:
            try:
                fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        if self.steps == RAISE_STEP and self.marker.exists() and _claim(self.raise_marker):
            raise RuntimeError("injected simulator failure")
        return super().act(obs)


def _claim(marker: Path) -> bool:
    """Create ``marker``; True for the one caller that created it."""
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
    except FileExistsError:
        return False
    return True
