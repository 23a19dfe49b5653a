"""What turn-taking costs the env workers: their CPU per step when stepped back to back, with idle gaps
between steps (the learner's turn, without its CPU), and with a busy torch thread beside them.

    python benchmarks/worker_turn_taking.py [--steps 600] [--gap-ms 4] [--repeats 2]

One vector env as ``train`` builds it for gaussian-ppo (2 async workers, state, LIBERO-Goal-v0 task 0),
small random actions (benchmarks/train_throughput.py's), the three modes interleaved ``--repeats`` times.
Worker CPU comes from /proc (the workers are this process's descendants). See docs/benchmarks.md, "Train
loop against env-only stepping".
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from train_throughput import ACTION_SCALE, descendants_cpu, train_config  # noqa: E402  (sets the env vars too)

import numpy as np  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=600, help="control steps per mode (both envs together)")
    parser.add_argument("--gap-ms", type=float, default=4.0, help="idle time between steps in the gap mode")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()

    import torch

    from agents.train import env_config_for, make_env

    torch.set_num_threads(1)
    config = train_config("gaussian-ppo", args.steps, Path("unused"), argparse.Namespace(
        warmup_iterations=0, update_threads=None, env="LIBERO-Goal-v0", num_envs=2, progress=False,
        torch_threads=1))  # fmt: skip
    env = make_env(env_config_for(config, None), config.num_envs)
    env.seed(0)
    env.reset()
    rng = np.random.default_rng(0)
    shape = (config.num_envs, *env.action_space.shape)
    busy = threading.Event()

    def burn() -> None:
        a = torch.randn(256, 256)
        while busy.is_set():
            a = torch.tanh(a @ a * 0.01)

    print("| mode | worker CPU ms per step | steps/s |\n| --- | --- | --- |")
    try:
        for _ in range(args.repeats):
            for mode in ("back to back", f"{args.gap_ms:g} ms idle gap", "busy torch thread"):
                thread = None
                if mode == "busy torch thread":
                    busy.set()
                    thread = threading.Thread(target=burn)
                    thread.start()
                workers, start = descendants_cpu(), time.perf_counter()
                for _ in range(args.steps // config.num_envs):
                    if "gap" in mode:
                        time.sleep(args.gap_ms / 1e3)
                    env.step(rng.uniform(-ACTION_SCALE, ACTION_SCALE, shape).astype(np.float32))
                cpu, seconds = descendants_cpu() - workers, time.perf_counter() - start
                if thread is not None:
                    busy.clear()
                    thread.join()
                print(f"| {mode} | {1e3 * cpu / args.steps:.2f} | {args.steps / seconds:.1f} |", flush=True)
    finally:
        env.close()


if __name__ == "__main__":
    main()
