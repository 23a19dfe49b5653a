"""Ray vector env against the async vector env: steps/s and scaling, as ratios.

Prints, on one task with state observations:
- steps/s (all workers together) of the async vector env and of the Ray vector env
  at the same worker count, and Ray / async (the cost of stepping through Ray actors
  instead of pipes and shared memory; the target is >= 0.85);
- the same with 1 worker, and the speed-up of ``--workers`` over 1 for each backend.

All four vector envs are built first and then measured in interleaved rounds
(async N, Ray N, async 1, Ray 1, again and again), so that the load of a shared
machine falls on all of them alike; each rate is total steps over total time.

Usage: ``python benchmarks/ray_vector.py [--task LIBERO-Goal-Task0-v0] [--workers 2] [--steps 200] [--rounds 5]``.
Results go in docs/benchmarks.md with the machine and its load.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import libero_gym  # noqa: F401
from libero_gym.vector import make_vec


def _actions(steps: int, num_envs: int, seed: int) -> np.ndarray:
    # Small actions keep the arm inside its workspace for the whole run (as benchmarks/env_throughput.py).
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (steps, num_envs, 7)).astype(np.float32)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="LIBERO-Goal-Task0-v0", help="single-task env id")
    parser.add_argument("--workers", type=int, default=2, help="N: workers of the compared envs (scaling 1 -> N)")
    parser.add_argument("--steps", type=int, default=200, help="vector steps per env per round")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved measuring rounds")
    parser.add_argument("--ray-address", default=None, help="Ray cluster to use (default: start a local Ray)")
    args = parser.parse_args()

    import ray

    print(f"# Ray vector env on {args.task} ({platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"Ray {ray.__version__}, state observations)")
    print(f"# load average at start: {os.getloadavg()[0]:.1f}")
    counts = sorted({1, args.workers}, reverse=True)
    envs = {}
    for count in counts:
        for backend in ("async", "ray"):
            extra = {"ray_address": args.ray_address} if backend == "ray" else {}
            env = make_vec(args.task, count, vectorization_mode=backend, obs_mode="state", max_episode_steps=10**6,
                           **extra)
            env.reset(seed=0)
            env.step(_actions(1, count, seed=99)[0])  # both backends warm (first step, first Ray round trip)
            envs[backend, count] = env
    elapsed = dict.fromkeys(envs, 0.0)
    try:
        for round_ in range(args.rounds):
            for key, env in envs.items():
                actions = _actions(args.steps, key[1], seed=round_)
                start = time.perf_counter()
                for action in actions:
                    env.step(action)
                elapsed[key] += time.perf_counter() - start
    finally:
        for env in envs.values():
            env.close()
    rate = {key: key[1] * args.steps * args.rounds / seconds for key, seconds in elapsed.items()}

    print("\n| workers | async steps/s | Ray steps/s | Ray / async |\n| --- | --- | --- | --- |")
    for count in counts:
        print(f"| {count} | {rate['async', count]:.1f} | {rate['ray', count]:.1f} | "
              f"{rate['ray', count] / rate['async', count]:.3f} |")
    if args.workers > 1:
        print(f"\n| backend | speed-up 1 -> {args.workers} workers |\n| --- | --- |")
        for backend in ("async", "ray"):
            print(f"| {backend} | {rate[backend, args.workers] / rate[backend, 1]:.2f} |")
    print(f"\n# load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
