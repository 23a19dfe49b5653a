"""Where a chunked policy's action changes happen: at chunk starts or inside chunks.

For each LIBERO-layout dataset given, the mean squared step change of the arm actions
(dims 0-5), |a_t - a_{t-1}|^2 over the policy's steps (settle steps dropped), split by
whether step t starts a new action chunk (t % CHUNK == 0, counted from the first policy
step). A ratio well above 1 means the chunks do not join; near 1, the actions vary
within chunks as much as across them. Also the action jerk (``stats``' mean over steps of
the squared third difference, summed over dims) split into its arm (0-5) and gripper (6) parts.

Usage::

    python scripts/chunk_jerk.py runs/method_s3/goal0/data_expert runs/method_s3/goal0/data_diffusion --chunk 4
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project beside this script
from libero_gym.data.dataset import read_dataset  # noqa: E402
from libero_gym.data.metrics import third_difference  # noqa: E402


def step_changes(path: Path, chunk: int) -> tuple[float, float, float, float, float]:
    """(mean squared arm change at chunk starts, inside chunks, at every step; arm and gripper action jerk) over
    every episode of a dataset file. The third is what ``train --agent diffusion-ppo --agent.action-rate-penalty``
    charges per step."""
    at_start, inside, jerk = [], [], []
    for episode in read_dataset(path, images=False).episodes:
        actions = episode.actions[episode.settle_steps :]  # (T, 7) the policy's actions
        arm = actions[:, :6]
        change = np.sum(np.diff(arm, axis=0) ** 2, axis=1)  # (T-1,) change[t-1] = |a_t - a_{t-1}|^2
        starts = np.arange(1, len(arm)) % chunk == 0
        at_start.append(change[starts])
        inside.append(change[~starts])
        jerk.append(third_difference(actions) ** 2)  # (T-3, 7)
    every = np.concatenate(at_start + inside)
    squared_jerk = np.concatenate(jerk)
    return (float(np.concatenate(at_start).mean()), float(np.concatenate(inside).mean()), float(every.mean()),
            float(squared_jerk[:, :6].sum(axis=1).mean()), float(squared_jerk[:, 6].mean()))  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", type=Path, help="LIBERO HDF5 files or collect folders")
    parser.add_argument("--chunk", type=int, default=4, help="the policy's action chunk (DiffusionPPO's horizon_steps)")
    args = parser.parse_args()
    print("| dataset | at chunk starts | inside chunks | ratio | every step | arm jerk | gripper jerk |\n"
          "| --- | ---: | ---: | ---: | ---: | ---: | ---: |")
    for folder in args.datasets:
        files = [folder] if folder.is_file() else sorted(folder.glob("*.hdf5"))
        if not files:
            raise SystemExit(f"{folder}: no LIBERO HDF5 file (collect writes FOLDER/<task>_demo.hdf5)")
        for path in files:
            start, inside, every, arm_jerk, gripper_jerk = step_changes(path, args.chunk)
            print(f"| {folder.name} | {start:.4f} | {inside:.4f} | {start / inside:.2f} | {every:.4f} | {arm_jerk:.4f} "
                  f"| {gripper_jerk:.4f} |")


if __name__ == "__main__":
    main()
