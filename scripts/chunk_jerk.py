"""Where a chunked policy's action changes happen: at chunk starts or inside chunks.

For each LIBERO-layout dataset given, the mean squared step change of the arm actions
(dims 0-5), |a_t - a_{t-1}|^2 over the policy's steps (settle steps dropped), split by
whether step t starts a new action chunk (t % CHUNK == 0, counted from the first policy
step). A ratio well above 1 means the chunks do not join; near 1, the actions vary
within chunks as much as across them.

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


def step_changes(path: Path, chunk: int) -> tuple[float, float, float]:
    """(mean squared change at chunk starts, inside chunks, at every step) over every episode of a dataset file.
    The last is what ``train agent:diffusion-ppo --agent.action-rate-penalty`` charges per step."""
    at_start, inside = [], []
    for episode in read_dataset(path, images=False).episodes:
        arm = episode.actions[episode.settle_steps :, :6]  # (T, 6) the policy's arm actions
        change = np.sum(np.diff(arm, axis=0) ** 2, axis=1)  # (T-1,) change[t-1] = |a_t - a_{t-1}|^2
        starts = np.arange(1, len(arm)) % chunk == 0
        at_start.append(change[starts])
        inside.append(change[~starts])
    every = np.concatenate(at_start + inside)
    return float(np.concatenate(at_start).mean()), float(np.concatenate(inside).mean()), float(every.mean())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("datasets", nargs="+", type=Path, help="LIBERO HDF5 files or collect folders")
    parser.add_argument("--chunk", type=int, default=4, help="the policy's action chunk (DiffusionPPO's horizon_steps)")
    args = parser.parse_args()
    print("| dataset | at chunk starts | inside chunks | ratio | every step |\n| --- | ---: | ---: | ---: | ---: |")
    for folder in args.datasets:
        files = [folder] if folder.is_file() else sorted(folder.glob("*.hdf5"))
        if not files:
            raise SystemExit(f"{folder}: no LIBERO HDF5 file (collect writes FOLDER/<task>_demo.hdf5)")
        for path in files:
            start, inside, every = step_changes(path, args.chunk)
            print(f"| {folder.name} | {start:.4f} | {inside:.4f} | {start / inside:.2f} | {every:.4f} |")


if __name__ == "__main__":
    main()
