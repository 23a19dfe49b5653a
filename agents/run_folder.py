"""A run folder: its log (``RUN_DIR/logs``) and its checkpoints (``RUN_DIR/checkpoints/step_<N>``).

The newest ``keep`` checkpoints are kept and the newest valid one is found.

Each is one checkpoint of :mod:`agents.checkpoint`; a truncated or corrupt newest one
(a run killed while writing) is skipped with a warning, so ``train --resume`` continues
from the one before.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from stable_baselines3.common.logger import CSVOutputFormat, HumanOutputFormat, Logger, TensorBoardOutputFormat

from agents.checkpoint import STEP_PREFIX, latest_valid_checkpoint, save_checkpoint, step_checkpoints
from libero_gym.env_config import EnvConfig


def make_logger(log_dir: Path, resumed_at: int | None = None, verbose: int = 0) -> Logger:
    """SB3's logger of a run: TensorBoard + CSV (+ stdout if ``verbose``), the same for ``train`` and ``pretrain``.

    A resumed run (``resumed_at``: its step) writes a new CSV beside the old one.
    """
    log_dir.mkdir(parents=True, exist_ok=True)
    csv_name = "progress.csv" if resumed_at is None else f"progress-resumed-{resumed_at:012d}.csv"
    formats: list[Any] = [TensorBoardOutputFormat(str(log_dir)), CSVOutputFormat(str(log_dir / csv_name))]
    if verbose:
        formats.append(HumanOutputFormat(sys.stdout))
    return Logger(str(log_dir), formats)


class CheckpointManager:
    """The ``step_<N>`` checkpoints of one run: save, keep the newest ``keep``, find the latest valid.

    Args:
        directory: the run's ``checkpoints`` folder.
        keep: how many of the newest checkpoints to keep (>= 2 keeps the previous
            one while the next is written).
    """

    def __init__(self, directory: str | os.PathLike[str], keep: int = 2) -> None:
        if keep < 1:
            raise ValueError(f"keep must be >= 1, got {keep}")
        self.directory = Path(directory)
        self.keep = keep

    def paths(self) -> list[Path]:
        """Checkpoint folders, oldest first."""
        return step_checkpoints(self.directory)

    def save(self, model: Any, *, agent: str, env: EnvConfig, extra: Mapping[str, Any] | None = None) -> Path:
        """Save at ``step_<model.num_timesteps>`` and delete checkpoints beyond ``keep``."""
        path = self.directory / f"{STEP_PREFIX}{int(model.num_timesteps):012d}"
        save_checkpoint(model, path, agent=agent, env=env, extra=extra)
        for old in self.paths()[: -self.keep]:
            shutil.rmtree(old, ignore_errors=True)
        for stale in self.directory.glob(".tmp-*"):  # left by a writer that was killed
            shutil.rmtree(stale, ignore_errors=True)
        return path

    def latest_valid(self) -> Path:
        """The newest checkpoint that reads and verifies; warns for each one skipped.

        Raises:
            CheckpointError: none is valid.
        """
        return latest_valid_checkpoint(self.directory)
