"""Env throughput: libero-gym against raw LIBERO, in one process, as ratios.

Prints, on one task:
- steps/s of raw LIBERO's ``ControlEnv.step`` and of our env (state and pixel
  modes), and ours/raw (the wrapper's cost is what the ratio shows);
- the speed table (targets: state >= 2x raw, pixels with chunks of 8 >= 5x): raw LIBERO, ours with ``physics="upstream"`` and
  ours with ``physics="fast"``, as control steps/s and ratios to raw, in state
  mode and in pixel mode with action chunks of 1, 4 and 8 (``step_chunk``; per
  control step);
- reset time, fast (restore on the built model) against hard (LIBERO's rebuild);
- steps/s of 1, 2 and N async workers, as a speed-up over one;
- the resident memory after 10 and after ``--memory-resets`` fast resets.

Usage: ``python benchmarks/env_throughput.py [--task LIBERO-Goal-Task0-v0] [--steps 300]``.
Results go in docs/benchmarks.md with the machine they were measured on.
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from collections.abc import Callable

import gymnasium as gym
import numpy as np

import libero_gym  # noqa: F401
from libero_gym.env import SETTLE_ACTION
from libero_gym.libero_config import import_libero
from libero_gym.registration import task_env_ids
from libero_gym.vector import make_vec


def _actions(n: int, seed: int = 0) -> np.ndarray:
    # Small actions keep the arm inside its workspace for the whole run.
    return np.random.default_rng(seed).uniform(-0.3, 0.3, (n, 7)).astype(np.float32)


def _steps_per_second(step: Callable[[np.ndarray], object], actions: np.ndarray) -> float:
    """Call ``step`` on each action; steps per wall-clock second."""
    start = time.perf_counter()
    for action in actions:
        step(action)
    return len(actions) / (time.perf_counter() - start)


def raw_steps_per_second(env_id: str, steps: int, pixels: bool, image_size: int) -> float:
    """Raw LIBERO ``ControlEnv``/``OffScreenRenderEnv``: the reference."""
    libero_pkg = import_libero()
    from libero.libero.envs import OffScreenRenderEnv
    from libero.libero.envs.env_wrapper import ControlEnv

    task = task_env_ids()[env_id]
    bddl = os.path.join(libero_pkg.get_libero_path("bddl_files"), task.problem_folder, task.bddl_file)
    cls = OffScreenRenderEnv if pixels else ControlEnv
    env = cls(
        bddl_file_name=bddl,
        use_camera_obs=pixels,
        has_offscreen_renderer=pixels,
        camera_heights=image_size,
        camera_widths=image_size,
    )
    env.reset()
    env.step(SETTLE_ACTION)
    rate = _steps_per_second(env.step, _actions(steps).astype(np.float64))
    env.close()
    return rate


def ours_steps_per_second(env_id: str, steps: int, obs_mode: str, image_size: int) -> float:
    env = gym.make(env_id, obs_mode=obs_mode, image_size=image_size, max_episode_steps=10**6)
    env.reset(seed=0)
    rate = _steps_per_second(env.step, _actions(steps))
    env.close()
    return rate


def chunk_steps_per_second(env_id: str, steps: int, obs_mode: str, image_size: int, physics: str, chunk: int) -> float:
    """Control steps/s of ``step_chunk`` with chunks of ``chunk`` actions (chunk 1: ``step``)."""
    env = gym.make(env_id, obs_mode=obs_mode, image_size=image_size, physics=physics, step_limit=10**6)
    env.reset(seed=0)
    u = env.unwrapped
    actions = _actions(steps)
    start = time.perf_counter()
    if chunk == 1:
        for action in actions:
            u.step(action)
    else:
        for i in range(0, steps, chunk):
            u.step_chunk(actions[i : i + chunk])
    elapsed = time.perf_counter() - start
    env.close()
    return steps / elapsed


def rss_mib() -> float:
    """Resident set size of this process, MiB (Linux /proc)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def memory_after_resets(env_id: str, resets: int, obs_mode: str, image_size: int) -> tuple[float, float]:
    """RSS (MiB) after 10 fast resets and after ``resets`` of them (no settle steps)."""
    env = gym.make(env_id, obs_mode=obs_mode, image_size=image_size, settle_steps=0)
    after_10 = float("nan")
    for seed in range(resets):
        env.reset(seed=seed)
        if seed == 9:
            after_10 = rss_mib()
    after_all = rss_mib()
    env.close()
    return after_10, after_all


def reset_seconds(env_id: str, reset_mode: str, resets: int) -> float:
    env = gym.make(env_id, reset_mode=reset_mode, settle_steps=0)
    env.reset(seed=0)  # the first reset builds the model in both modes
    start = time.perf_counter()
    for seed in range(resets):
        env.reset(seed=seed)
    elapsed = time.perf_counter() - start
    env.close()
    return elapsed / resets


def vector_steps_per_second(env_id: str, num_envs: int, steps: int) -> float:
    envs = make_vec(env_id, num_envs=num_envs, max_episode_steps=10**6)
    envs.reset(seed=0)
    actions = np.stack([_actions(steps, seed=i) for i in range(num_envs)], axis=1)
    start = time.perf_counter()
    for action in actions:
        envs.step(action)
    elapsed = time.perf_counter() - start
    envs.close()
    return num_envs * steps / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="LIBERO-Goal-Task0-v0", help="single-task env id")
    parser.add_argument("--steps", type=int, default=300, help="steps per state-mode measurement")
    parser.add_argument("--pixel-steps", type=int, default=60, help="steps per pixel-mode measurement")
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--resets", type=int, default=5)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 2, help="N for the vector scaling")
    parser.add_argument("--memory-resets", type=int, default=1000, help="fast resets, state mode, memory check (0: skip)")
    parser.add_argument("--memory-pixel-resets", type=int, default=300, help="the same in pixel mode (each renders)")
    args = parser.parse_args()

    print(f"# env throughput on {args.task} ({platform.processor() or platform.machine()}, "
          f"{os.cpu_count()} cores, MUJOCO_GL={os.environ.get('MUJOCO_GL')})")
    print("\n| mode | raw LIBERO steps/s | libero-gym steps/s | ours / raw |\n| --- | --- | --- | --- |")
    for mode, steps in (("state", args.steps), ("pixels", args.pixel_steps)):
        pixels = mode == "pixels"
        raw = raw_steps_per_second(args.task, steps, pixels, args.image_size)
        ours = ours_steps_per_second(args.task, steps, mode, args.image_size)
        label = f"{mode} ({args.image_size}x{args.image_size}, 2 cameras)" if pixels else mode
        print(f"| {label} | {raw:.1f} | {ours:.1f} | {ours / raw:.3f} |")

    print(f"\n# load average at start: {os.getloadavg()[0]:.1f}")
    print("\n| mode | chunk | raw LIBERO steps/s | ours upstream | ours fast | upstream / raw | fast / raw |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    raw_state = raw_steps_per_second(args.task, args.steps, False, args.image_size)
    raw_pixels = raw_steps_per_second(args.task, args.pixel_steps, True, args.image_size)
    rows = [("state", 1, args.steps, raw_state)]
    rows += [("pixels", chunk, args.pixel_steps, raw_pixels) for chunk in (1, 4, 8)]
    for mode, chunk, steps, raw in rows:
        upstream = chunk_steps_per_second(args.task, steps, mode, args.image_size, "upstream", chunk)
        fast_rate = chunk_steps_per_second(args.task, steps, mode, args.image_size, "fast", chunk)
        print(f"| {mode} | {chunk} | {raw:.1f} | {upstream:.1f} | {fast_rate:.1f} | "
              f"{upstream / raw:.2f} | {fast_rate / raw:.2f} |")

    fast = reset_seconds(args.task, "fast", args.resets)
    hard = reset_seconds(args.task, "hard", args.resets)
    print("\n| reset (no settle steps) | seconds | hard / fast |\n| --- | --- | --- |")
    print(f"| fast (restore on the built model) | {fast:.3f} | {hard / fast:.1f} |")
    print(f"| hard (LIBERO's rebuild) | {hard:.3f} | 1.0 |")

    counts = sorted({1, 2, args.workers})
    one = None
    print("\n| async workers (state) | steps/s (all workers) | speed-up over 1 |\n| --- | --- | --- |")
    for count in counts:
        rate = vector_steps_per_second(args.task, count, args.steps)
        one = one or rate
        print(f"| {count} | {rate:.1f} | {rate / one:.2f} |")

    print("\n| fast resets (no settle steps) | RSS after 10 (MiB) | RSS after all (MiB) |\n| --- | --- | --- |")
    for mode, resets in (("state", args.memory_resets), ("pixels", args.memory_pixel_resets)):
        if resets > 10:
            after_10, after_all = memory_after_resets(args.task, resets, mode, args.image_size)
            print(f"| {resets}, {mode} | {after_10:.0f} | {after_all:.0f} |")
    print(f"\n# load average at end: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
