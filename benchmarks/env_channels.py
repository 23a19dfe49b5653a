"""Cost of each observation channel and of absolute control, as ratios against the default observation.

Prints one table: control steps per second of ``step`` on one task, for the default pixel
observation (LIBERO's two cameras, RGB) and for each camera option added to it (metric depth,
instance segmentation, point clouds of N points, a third camera, everything together), plus the
state observation with and without ``control_mode="absolute"``. Every row runs in this process,
one after the other, with the same actions; the pixel baseline runs first and last, and each
ratio is against the mean of those two runs (state rows: against the state baseline).

Usage: ``python benchmarks/env_channels.py [--task LIBERO-Goal-Task0-v0] [--steps 40] [--image-size 128]``.
Results go in docs/benchmarks.md with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Any

import gymnasium as gym
import numpy as np

import libero_gym  # noqa: F401
from libero_gym import control


def _actions(n: int, seed: int = 0) -> np.ndarray:
    # Small actions keep the arm inside its workspace for the whole run.
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (n, 7)).astype(np.float32)


def steps_per_second(task: str, steps: int, **kwargs: Any) -> float:
    """Control steps per wall-clock second of ``step`` (after a reset and one warm-up step)."""
    env = gym.make(task, max_episode_steps=10**6, **kwargs)
    env.reset(seed=0)
    u = env.unwrapped
    actions = _actions(steps + 1).astype(np.float64)
    if u.control_mode == "absolute":
        # The same small motions, as pose targets around the pose after reset.
        hold = control.hold_action(u.libero_env.env)
        actions = np.concatenate([hold[:3] + 0.05 * actions[:, :3], np.tile(hold[3:6], (len(actions), 1)),
                                  actions[:, 6:]], axis=1)
    env.step(actions[0])
    start = time.perf_counter()
    for action in actions[1:]:
        env.step(action)
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="LIBERO-Goal-Task0-v0", help="single-task env id")
    parser.add_argument("--steps", type=int, default=40, help="steps per pixel measurement")
    parser.add_argument("--state-steps", type=int, default=300, help="steps per state measurement")
    parser.add_argument("--image-size", type=int, default=128)
    args = parser.parse_args()

    size = args.image_size
    pixels = dict(obs_mode="pixels", image_size=size)
    rows: list[tuple[str, dict[str, Any]]] = [
        ("+ depth (2 cameras)", dict(depth=True)),
        ("+ segmentation (2 cameras)", dict(segmentation=True)),
        ("+ point cloud, 512 points", dict(point_cloud=512)),
        ("+ point cloud, 2048 points", dict(point_cloud=2048)),
        ("+ frontview (3 cameras, RGB)", dict(cameras=("agentview", "robot0_eye_in_hand", "frontview"))),
        ("+ depth, segmentation, point cloud 512", dict(depth=True, segmentation=True, point_cloud=512)),
    ]
    print(f"# observation channels on {args.task} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')}, images {size}x{size}); "
          f"load average at start {os.getloadavg()[0]:.1f}")
    first = steps_per_second(args.task, args.steps, **pixels)
    measured = [(label, steps_per_second(args.task, args.steps, **pixels, **extra)) for label, extra in rows]
    last = steps_per_second(args.task, args.steps, **pixels)
    base = 0.5 * (first + last)
    print("\n| observation | steps/s | / default pixels |\n| --- | --- | --- |")
    print(f"| default pixels (agentview + wrist RGB), first / last run | {first:.1f} / {last:.1f} | 1.00 |")
    for label, rate in measured:
        print(f"| {label} | {rate:.1f} | {rate / base:.2f} |")

    state = steps_per_second(args.task, args.state_steps, obs_mode="state")
    absolute = steps_per_second(args.task, args.state_steps, obs_mode="state", control_mode="absolute")
    state_depth = steps_per_second(args.task, args.steps, obs_mode="state", image_size=size, depth=True)
    print("\n| observation | steps/s | / default state |\n| --- | --- | --- |")
    print(f"| default state (delta control) | {state:.1f} | 1.00 |")
    print(f"| state, `control_mode=\"absolute\"` | {absolute:.1f} | {absolute / state:.2f} |")
    print(f"| state + depth (2 cameras; renders them) | {state_depth:.1f} | {state_depth / state:.3f} |")
    print(f"\n# load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
