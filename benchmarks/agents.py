"""Agents benchmark: inference cost of DiffusionPPO vs Gaussian PPO, and train-iteration throughput.

    python benchmarks/agents.py [--num-envs 2] [--iteration-steps 256] [--no-write]

Prints, and writes to docs/benchmarks.md under the heading "Agents" (only that
section is replaced):

1. Action inference time on libero-gym state and pixel observations (the real
   spaces, from FakeLiberoEnv so that no simulator is needed): DiffusionPPO's ``predict_chunk``
   (one Ta-step chunk, DDIM 5 and 10 steps, exploration sampling as in rollouts) per
   observation and per batch of 50, against Gaussian PPO's ``predict``; per chunk
   and per executed action (a chunk serves Ta actions).
2. Env steps per second of one full ``learn`` iteration (rollout + update) of each
   agent on the *same* real LIBERO vector env (LIBERO-Goal-v0 task 0, async
   workers), next to the env's own stepping rate with random actions.

Timings are medians over repeats; ratios, never asserts.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
import platform
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("LIBERO_GYM_ASSETS", str((REPO.parent / "shared" / "libero_assets").resolve()))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import numpy as np  # noqa: E402

HEADING = "## Agents"
DOC = REPO / "docs" / "benchmarks.md"
BATCH = 50
"""The batch size of DPPO's 50 parallel envs."""


@dataclasses.dataclass(frozen=True)
class Args:
    """Agents benchmark options."""

    num_envs: int = 2
    """Async LIBERO workers for the train-iteration measurement."""
    iteration_steps: int = 256
    """Env steps per train iteration (over all envs), the same for both agents."""
    repeats: int = 20
    """Timed repeats per inference measurement (median reported)."""
    env: str = "LIBERO-Goal-v0"
    """Env id for the train-iteration measurement."""
    write: bool = True
    """Write the results to docs/benchmarks.md (section "Agents")."""
    device: str = "cpu"
    """torch device."""
    torch_threads: int = 1
    """torch CPU threads (train's default; the env workers use the other cores)."""
    pixels: bool = True
    """Also time inference on pixel observations (both cameras)."""
    image_size: int = 128
    """Camera image size for the pixel inference timings (the env default)."""


def _median_time(fn: Any, repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _obs_batch(n: int, obs_mode: str, image_size: int) -> dict[str, np.ndarray]:
    from libero_gym.testing import FakeLiberoEnv

    env = FakeLiberoEnv(obs_mode, image_size=image_size)
    observations = [env.reset(seed=i)[0] for i in range(n)]
    return {key: np.stack([np.asarray(o[key]) for o in observations]) for key in observations[0]}


def inference(args: Args) -> list[dict[str, Any]]:
    """Per-observation and per-batch inference times of both agents, per obs_mode."""
    from stable_baselines3.common.vec_env import DummyVecEnv

    from agents.diffusion_policy import DiffusionPolicyConfig
    from agents.diffusion_ppo import DiffusionPPO, DiffusionPPOConfig
    from agents.gaussian_ppo import GaussianPPO
    from libero_gym.testing import FakeLiberoEnv

    rows = []
    for obs_mode in ("state", "pixels") if args.pixels else ("state",):
        env = DummyVecEnv([lambda: FakeLiberoEnv(obs_mode, image_size=args.image_size)])
        for batch in (1, BATCH):
            obs = _obs_batch(batch, obs_mode, args.image_size)
            gaussian = GaussianPPO(env, seed=0, device=args.device)
            t = _median_time(lambda: gaussian.predict(obs, deterministic=False), args.repeats)
            rows.append({"obs": obs_mode, "agent": "gaussian-ppo", "ddim": "-", "batch": batch, "per_call_ms": 1e3 * t,
                         "per_action_ms": 1e3 * t})  # fmt: skip
            for ddim in (5, 10):
                ft = min(ddim, DiffusionPolicyConfig().ft_denoising_steps)
                policy = DiffusionPolicyConfig(ddim_steps=ddim, ft_denoising_steps=ft)
                model = DiffusionPPO(env, DiffusionPPOConfig(policy=policy), seed=0, device=args.device)
                t = _median_time(lambda: model.predict_chunk(obs, deterministic=False), args.repeats)
                rows.append({"obs": obs_mode, "agent": "diffusion-ppo", "ddim": ddim, "batch": batch,
                             "per_call_ms": 1e3 * t, "per_action_ms": 1e3 * t / policy.horizon_steps})  # fmt: skip
        env.close()
    return rows


def throughput(args: Args) -> list[dict[str, Any]]:
    """Env steps/s of one learn() iteration per agent, on one shared LIBERO vector env."""
    from agents.diffusion_ppo import DiffusionPPO, DiffusionPPOConfig
    from agents.gaussian_ppo import GaussianPPO, GaussianPPOConfig
    from agents.vec_env import SB3VecEnv
    from libero_gym.vector import make_vec

    env = SB3VecEnv(make_vec(args.env, args.num_envs, task_id=0, obs_mode="state"))
    rows = []
    try:
        env.seed(0)
        env.reset()  # builds the simulators in the workers, outside the timings
        per_env = args.iteration_steps // args.num_envs
        start = time.perf_counter()
        for _ in range(per_env):
            env.step(np.random.uniform(-1, 1, (args.num_envs, 7)).astype(np.float32))
        seconds = time.perf_counter() - start
        rows.append({"what": "env only (random actions)", "steps": per_env * args.num_envs, "seconds": seconds})
        horizon = DiffusionPPOConfig().policy.horizon_steps
        # one rollout = per_env steps per env, as Gaussian PPO's n_steps; no critic-only warm-up iteration
        chunks = DiffusionPPOConfig(n_chunks=per_env // horizon, n_critic_warmup_iterations=0)
        ddim5_policy = dataclasses.replace(chunks.policy, ddim_steps=5, ft_denoising_steps=5)
        ddim5 = dataclasses.replace(chunks, policy=ddim5_policy)
        agents = {
            "gaussian-ppo": GaussianPPO(env, GaussianPPOConfig(n_steps=per_env), seed=0, device=args.device),
            "diffusion-ppo (DDIM 5, K'=5)": DiffusionPPO(env, ddim5, seed=0, device=args.device),
            "diffusion-ppo (default: DDPM 20, K'=10)": DiffusionPPO(env, chunks, seed=0, device=args.device),
        }  # fmt: skip
        for name, model in agents.items():
            start = time.perf_counter()
            model.learn(per_env * args.num_envs)  # exactly one rollout + one update
            seconds = time.perf_counter() - start
            rows.append({"what": f"{name}: one train iteration", "steps": int(model.num_timesteps), "seconds": seconds})
    finally:
        env.close()
    for row in rows:
        row["steps_per_s"] = row["steps"] / row["seconds"]
    return rows


def render(args: Args, inf: list[dict[str, Any]], thr: list[dict[str, Any]]) -> str:
    import torch

    base = {(r["obs"], r["batch"]): r["per_call_ms"] for r in inf if r["agent"] == "gaussian-ppo"}
    lines = [
        HEADING,
        "",
        f"`python benchmarks/agents.py` on {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads), device {args.device}, "
        f"{datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')}. "
        "Shared machine: absolute times vary, ratios less.",
        "",
        f"Action inference (pixels: both cameras at {args.image_size}x{args.image_size}; median of "
        f"{args.repeats}; diffusion: one chunk of Ta = 4 actions, exploration sampling as in rollouts):",
        "",
        "| obs | agent | DDIM steps | batch | ms per call | ms per executed action | x Gaussian PPO (per call) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in inf:
        lines.append(
            f"| {r['obs']} | {r['agent']} | {r['ddim']} | {r['batch']} | {r['per_call_ms']:.2f} | "
            f"{r['per_action_ms']:.2f} | {r['per_call_ms'] / base[(r['obs'], r['batch'])]:.1f} |"
        )
    lines += [
        "",
        f"One full train iteration (rollout + update) on the same {args.num_envs} async {args.env} "
        "task-0 workers (state):",
        "",
        "| what | env steps | seconds | env steps/s |",
        "| --- | --- | --- | --- |",
    ]
    for r in thr:
        lines.append(f"| {r['what']} | {r['steps']} | {r['seconds']:.1f} | {r['steps_per_s']:.1f} |")
    return "\n".join(lines) + "\n"


def write_section(text: str, path: Path = DOC) -> None:
    """Replace (or append) the "Agents" section of docs/benchmarks.md, leaving the rest alone."""
    path.parent.mkdir(parents=True, exist_ok=True)
    current = path.read_text() if path.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(HEADING)}\n.*?(?=^## |^<!-- |\Z)", re.S | re.M)
    if pattern.search(current):
        updated = pattern.sub(lambda _: text + "\n", current, count=1)
    else:
        updated = current.rstrip("\n") + "\n\n" + text
    path.write_text(updated.rstrip("\n") + "\n")


def main() -> None:
    import tyro

    import torch

    args = tyro.cli(Args)
    torch.set_num_threads(args.torch_threads)
    inf = inference(args)
    thr = throughput(args)
    text = render(args, inf, thr)
    print(text)
    if args.write:
        write_section(text)
        print(f"written to {DOC.relative_to(REPO)} ({HEADING})")


if __name__ == "__main__":
    main()
