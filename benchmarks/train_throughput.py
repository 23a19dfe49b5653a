"""``train`` against its own envs: env steps/s of the train loop as a fraction of env-only stepping.

    python benchmarks/train_throughput.py [--steps 1600] [--rounds 2] [--agents gaussian-ppo diffusion-ppo]

For each agent (default configs, state observations, 2 async workers, LIBERO-Goal-v0
task 0) and each round, in one process and interleaved (random, train, replay, random,
train, replay, ...) so that the load of a shared machine falls on all alike:

1. random actions: env-only stepping of the very vector env ``train`` builds for that
   agent (``agents.train.make_env(env_config_for(config, chunk_size))``: per-step env for
   gaussian-ppo, chunk env (Ta = 4) for diffusion-ppo), the same workers, small random
   actions (the arm stays in its workspace, as benchmarks/ray_vector.py), for ``--steps``
   control steps over all envs; episodes end and reset as in training.
2. ``agents.train.train`` (the function ``cli.py train`` calls) for ``--steps`` env steps
   (SB3 runs whole rollouts, so it may run a few more; the rate counts what ran), every
   action batch it sends to its env recorded.
3. replay (the reference of the ratio): a fresh env of the same kind, seeded as ``train``
   seeds it, stepped with the recorded actions. The simulator is deterministic, so this is
   the training run's own trajectories (checked: every step's observations, rewards and
   dones) without the learner: the env work is exactly the same. Small random actions are
   not: the policies' larger actions make contacts and joint limits, so each step costs the
   workers more CPU (measured: ~1.7x), and a ratio against them charges that to the loop.

Rates are control steps per second (a chunk of Ta counts Ta). The train rate is
``TrainResult.steps_per_s`` (the learn loop: worker start-up, model build and the final
checkpoint excluded, as the ``train`` summary line reports it); the ratio is train /
replay, summed over rounds (train / random actions beside it). The breakdown of the learn loop's wall time comes from
``time.perf_counter`` around the phases (exclusive: a phase nested in another counts
only in the inner one):

* env (workers): the vector env's ``step_wait``/``reset_wait`` (waiting for the workers
  and reading their results);
* env (adapter): the rest of :class:`agents.vec_env.SB3VecEnv` (copies, infos, episode stats);
* inference: the policy's action sampling and critic values during rollouts;
* obs -> tensor: SB3's/our ``obs_as_tensor``;
* buffer: rollout buffer ``add``;
* update: the agent's ``train()`` (the PPO epochs);
* callbacks: ``on_step`` of the callbacks (progress bar, checkpoints, ...), logging: SB3's
  ``dump_logs``; other: the rest of the learn loop (SB3's bookkeeping).

DiffusionPPO's defaults train only the critic for the first ``n_critic_warmup_iterations``
(10) iterations; the benchmark sets it to 0 (``--warmup-iterations``) so that every measured
iteration pays for the actor update, the steady state of a run. Results go in
docs/benchmarks.md by hand, with the machine and its load.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("LIBERO_GYM_ASSETS", str((REPO.parent / "shared" / "libero_assets").resolve()))
os.environ.setdefault("MUJOCO_GL", "egl")
os.environ.setdefault("PYOPENGL_PLATFORM", os.environ["MUJOCO_GL"])

import numpy as np  # noqa: E402

PHASES = ("env (workers)", "env (adapter)", "inference", "obs -> tensor", "buffer", "update", "callbacks", "logging")
ACTION_SCALE = 0.3
"""Reference actions are uniform in [-0.3, 0.3]: the arm stays in its workspace (benchmarks/ray_vector.py)."""


class PhaseTimer:
    """Exclusive wall time per phase: a phase entered inside another pauses the outer one."""

    def __init__(self) -> None:
        self.totals: dict[str, float] = defaultdict(float)
        self.cpu: dict[str, float] = defaultdict(float)  # the same, in this thread's CPU time
        self._stack: list[list[Any]] = []  # [name, wall start of its current slice, CPU start]
        self.enabled = False
        self.learn_cpu = (0.0, 0.0)  # (workers, this process) CPU seconds of the last learn

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        if not self.enabled:
            yield
            return
        now, cpu = time.perf_counter(), time.thread_time()
        if self._stack:
            outer = self._stack[-1]
            self.totals[outer[0]] += now - outer[1]
            self.cpu[outer[0]] += cpu - outer[2]
        self._stack.append([name, now, cpu])
        try:
            yield
        finally:
            now, cpu = time.perf_counter(), time.thread_time()
            inner = self._stack.pop()
            self.totals[inner[0]] += now - inner[1]
            self.cpu[inner[0]] += cpu - inner[2]
            if self._stack:
                self._stack[-1][1], self._stack[-1][2] = now, cpu

    def inside(self, name: str) -> bool:
        return any(entry[0] == name for entry in self._stack)

    def wrap(self, owner: Any, attr: str, name: str, unless_inside: str | None = None) -> Callable[[], None]:
        """Time ``owner.attr`` calls as ``name`` (not when already inside ``unless_inside``); returns an undo."""
        original = owner.__dict__[attr]
        timer = self

        def timed(*args: Any, **kwargs: Any) -> Any:
            if unless_inside is not None and timer.inside(unless_inside):
                return original(*args, **kwargs)
            with timer.phase(name):
                return original(*args, **kwargs)

        setattr(owner, attr, timed)
        return lambda: setattr(owner, attr, original)


def instrument(timer: PhaseTimer) -> list[Callable[[], None]]:
    """Wrap the phases' functions (classes and module globals); returns the undos."""
    import stable_baselines3.common.on_policy_algorithm as sb3_on_policy
    from gymnasium.vector import AsyncVectorEnv
    from stable_baselines3.common.buffers import DictRolloutBuffer
    from stable_baselines3 import PPO
    from stable_baselines3.common.callbacks import CallbackList
    from stable_baselines3.common.policies import ActorCriticPolicy

    import agents.diffusion_ppo as diffusion_ppo
    from agents.buffers import ChunkRolloutBuffer
    from agents.critic import ValueNetwork
    from agents.diffusion_policy import DiffusionPolicy
    from agents.vec_env import SB3VecEnv
    from libero_gym.resilient_vector import ResilientAsyncVectorEnv

    undo = []
    for cls in (AsyncVectorEnv, ResilientAsyncVectorEnv):
        for attr in ("step_wait", "reset_wait"):
            if attr in cls.__dict__:
                undo.append(timer.wrap(cls, attr, "env (workers)"))
    for attr in ("step_wait", "reset"):
        undo.append(timer.wrap(SB3VecEnv, attr, "env (adapter)"))
    undo.append(timer.wrap(ActorCriticPolicy, "forward", "inference", unless_inside="update"))
    undo.append(timer.wrap(DiffusionPolicy, "sample", "inference", unless_inside="update"))
    undo.append(timer.wrap(ValueNetwork, "forward", "inference", unless_inside="update"))
    undo.append(timer.wrap(ActorCriticPolicy, "predict_values", "inference", unless_inside="update"))
    for module in (sb3_on_policy, diffusion_ppo):
        undo.append(_wrap_global(timer, module, "obs_as_tensor", "obs -> tensor"))
    undo.append(timer.wrap(DictRolloutBuffer, "add", "buffer"))
    undo.append(timer.wrap(ChunkRolloutBuffer, "add", "buffer"))
    undo.append(timer.wrap(PPO, "train", "update"))  # GaussianPPO's
    undo.append(timer.wrap(diffusion_ppo.DiffusionPPO, "train", "update"))
    undo.append(timer.wrap(CallbackList, "_on_step", "callbacks"))
    undo.append(timer.wrap(sb3_on_policy.OnPolicyAlgorithm, "dump_logs", "logging"))
    undo.append(_wrap_learn(timer))
    return undo


def descendants_cpu() -> float:
    """CPU seconds (user + system) of this process's live descendants (the env workers), from /proc."""
    children: dict[int, list[int]] = defaultdict(list)
    cpu: dict[int, float] = {}
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children[int(fields[1])].append(int(entry))
        cpu[int(entry)] = (int(fields[11]) + int(fields[12])) / tick
    total, todo = 0.0, list(children[os.getpid()])
    while todo:
        pid = todo.pop()
        total += cpu.get(pid, 0.0)
        todo += children[pid]
    return total


def _wrap_learn(timer: PhaseTimer) -> Callable[[], None]:
    """Record the workers' and this process's CPU seconds over each ``learn`` (``timer.learn_cpu``)."""
    import stable_baselines3.common.on_policy_algorithm as sb3_on_policy

    cls = sb3_on_policy.OnPolicyAlgorithm
    original = cls.__dict__["learn"]

    def learn(*args: Any, **kwargs: Any) -> Any:
        workers, own = descendants_cpu(), time.process_time()
        try:
            return original(*args, **kwargs)
        finally:
            timer.learn_cpu = (descendants_cpu() - workers, time.process_time() - own)

    cls.learn = learn
    return lambda: setattr(cls, "learn", original)


def _wrap_global(timer: PhaseTimer, module: Any, attr: str, name: str) -> Callable[[], None]:
    original = getattr(module, attr)

    def timed(*args: Any, **kwargs: Any) -> Any:
        with timer.phase(name):
            return original(*args, **kwargs)

    setattr(module, attr, timed)
    return lambda: setattr(module, attr, original)


# ---------------------------------------------------------------------- the two measurements
def train_config(agent: str, steps: int, run_dir: Path, args: argparse.Namespace) -> Any:
    """``cli.py train --agent AGENT``'s defaults with the benchmark's run folder, steps and worker count."""
    from agents.agent_configs import DiffusionPPOConfig, GaussianPPOConfig
    from agents.configs import TrainConfig

    agent_config: Any = GaussianPPOConfig()
    if agent == "diffusion-ppo":
        agent_config = DiffusionPPOConfig(n_critic_warmup_iterations=args.warmup_iterations)
    extra = {} if args.update_threads is None else {"update_threads": args.update_threads}
    return TrainConfig(agent=agent_config, env=args.env, task_id=(0,), num_envs=args.num_envs, total_timesteps=steps,
                       run_dir=run_dir, seed=0, progress=args.progress, torch_threads=args.torch_threads,
                       **extra)  # fmt: skip


def reference(config: Any, steps: int, seed: int) -> tuple[float, float, int]:
    """Env-only stepping of ``config``'s vector env (as ``train`` builds it): (control steps/s, workers' CPU
    seconds, control steps)."""
    from agents.registry import spec_of
    from agents.train import _plan_agent, env_config_for, make_env

    chunk = _plan_agent(config, spec_of(config.agent), None).chunk_size
    env = make_env(env_config_for(config, chunk), config.num_envs)
    rng = np.random.default_rng(seed)
    try:
        env.seed(config.seed)
        env.reset()  # the workers' simulators are built here, outside the timing
        shape = (config.num_envs, *env.action_space.shape)
        done_steps = 0
        workers = descendants_cpu()
        start = time.perf_counter()
        while done_steps < steps:
            _, _, _, infos = env.step(rng.uniform(-ACTION_SCALE, ACTION_SCALE, shape).astype(np.float32))
            done_steps += sum(int(info.get("chunk_steps", 1)) for info in infos)
        return done_steps / (time.perf_counter() - start), descendants_cpu() - workers, done_steps
    finally:
        env.close()


class ActionRecorder:
    """Records every action batch ``train`` sends to its :class:`agents.vec_env.SB3VecEnv` and a checksum of what
    came back, so that :func:`replay` can step the same env through the very same trajectories."""

    def __init__(self) -> None:
        self.actions: list[np.ndarray] = []
        self.checksums: list[float] = []
        self.recording = False

    @contextlib.contextmanager
    def record(self) -> Iterator[None]:
        from agents.vec_env import SB3VecEnv

        step_async, step_wait = SB3VecEnv.__dict__["step_async"], SB3VecEnv.__dict__["step_wait"]
        recorder = self
        self.actions, self.checksums = [], []

        def recording_step_async(env: Any, actions: np.ndarray) -> None:
            recorder.actions.append(np.array(actions, copy=True))
            step_async(env, actions)

        def recording_step_wait(env: Any) -> Any:
            result = step_wait(env)
            recorder.checksums.append(checksum(result))
            return result

        SB3VecEnv.step_async, SB3VecEnv.step_wait = recording_step_async, recording_step_wait
        try:
            yield
        finally:
            SB3VecEnv.step_async, SB3VecEnv.step_wait = step_async, step_wait


def checksum(step: Any) -> float:
    """A float that changes with any observation, reward or done of an SB3 ``step`` return."""
    obs, rewards, dones, _ = step
    arrays = list(obs.values()) if isinstance(obs, dict) else [obs]
    return float(sum(np.asarray(a, dtype=np.float64).sum() for a in arrays) + np.sum(rewards) + np.sum(dones))


def replay(config: Any, recorder: ActionRecorder) -> tuple[float, float, int, bool]:
    """Env-only stepping of the very trajectories ``train`` ran: a fresh vector env as ``train`` builds it, seeded
    as ``train`` seeds it, stepped with the recorded actions (the simulator is deterministic, so the workers do
    exactly the work they did in training, contacts, resets and all). (control steps/s, workers' CPU seconds,
    control steps, whether every step's observations, rewards and dones matched the training run's)."""
    from agents.registry import spec_of
    from agents.train import _plan_agent, env_config_for, make_env

    chunk = _plan_agent(config, spec_of(config.agent), None).chunk_size
    env = make_env(env_config_for(config, chunk), config.num_envs)
    try:
        env.seed(config.seed)
        env.reset()  # the workers' simulators are built here, outside the timing
        done_steps, checksums = 0, []
        workers = descendants_cpu()
        start = time.perf_counter()
        for actions in recorder.actions:
            step = env.step(actions)
            checksums.append(checksum(step))
            done_steps += sum(int(info.get("chunk_steps", 1)) for info in step[3])
        seconds = time.perf_counter() - start
        return done_steps / seconds, descendants_cpu() - workers, done_steps, checksums == recorder.checksums
    finally:
        env.close()


@dataclasses.dataclass
class Measurement:
    agent: str
    ref_steps_per_s: list[float] = dataclasses.field(default_factory=list)
    ref_worker_cpu: float = 0.0
    ref_steps: int = 0
    replay_steps_per_s: list[float] = dataclasses.field(default_factory=list)
    replay_worker_cpu: float = 0.0
    replay_steps: int = 0
    replay_same: list[bool] = dataclasses.field(default_factory=list)
    train_worker_cpu: float = 0.0
    train_own_cpu: float = 0.0
    train_steps: int = 0
    learn_s: float = 0.0
    call_s: float = 0.0
    phases: dict[str, float] = dataclasses.field(default_factory=lambda: defaultdict(float))
    phases_cpu: dict[str, float] = dataclasses.field(default_factory=lambda: defaultdict(float))

    @property
    def ref(self) -> float:
        return float(np.mean(self.ref_steps_per_s))

    @property
    def replay(self) -> float:
        return float(np.mean(self.replay_steps_per_s))

    @property
    def rate(self) -> float:
        return self.train_steps / self.learn_s


def measure_train(config: Any, timer: PhaseTimer, into: Measurement, recorder: ActionRecorder) -> None:
    from agents.train import train

    timer.totals.clear()
    timer.cpu.clear()
    timer.enabled = True
    start = time.perf_counter()
    try:
        with recorder.record():
            result = train(config)
    finally:
        timer.enabled = False
    into.call_s += time.perf_counter() - start
    into.train_steps += result.steps_this_run
    into.learn_s += result.wall_time_s
    for name, seconds in timer.totals.items():
        into.phases[name] += seconds
        into.phases_cpu[name] += timer.cpu[name]
    into.train_worker_cpu += timer.learn_cpu[0]
    into.train_own_cpu += timer.learn_cpu[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", nargs="+", default=["gaussian-ppo", "diffusion-ppo"], help="agents to measure")
    parser.add_argument("--steps", type=int, default=1600, help="env steps per measurement (all envs together)")
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (reference, train) per agent")
    parser.add_argument("--num-envs", type=int, default=2, help="async workers")
    parser.add_argument("--env", default="LIBERO-Goal-v0", help="env id (task 0)")
    parser.add_argument("--torch-threads", type=int, default=1, help="train --torch-threads")
    parser.add_argument("--update-threads", type=int, default=None, help="train --update-threads")
    parser.add_argument("--warmup-iterations", type=int, default=0, help="DiffusionPPO's n_critic_warmup_iterations")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="train --progress")
    args = parser.parse_args()

    import torch

    print(f"# train throughput on {args.env} task 0, state, {args.num_envs} async workers "
          f"({platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"Python {platform.python_version()})")  # fmt: skip
    print(f"# load average at start: {' '.join(f'{x:.1f}' for x in os.getloadavg())}", flush=True)
    timer = PhaseTimer()
    undo = instrument(timer)
    results = {agent: Measurement(agent) for agent in args.agents}
    recorder = ActionRecorder()
    try:
        with tempfile.TemporaryDirectory(prefix="train_throughput_") as tmp:
            for round_ in range(args.rounds):
                for agent in args.agents:
                    config = train_config(agent, args.steps, Path(tmp) / f"{agent}-{round_}", args)
                    m = results[agent]
                    rate, worker_cpu, ref_steps = reference(config, args.steps, seed=round_)
                    m.ref_steps_per_s.append(rate)
                    m.ref_worker_cpu += worker_cpu
                    m.ref_steps += ref_steps
                    measure_train(config, timer, m, recorder)
                    rate, worker_cpu, replay_steps, same = replay(config, recorder)
                    m.replay_steps_per_s.append(rate)
                    m.replay_worker_cpu += worker_cpu
                    m.replay_steps += replay_steps
                    m.replay_same.append(same)
                    print(f"round {round_} {agent}: small random actions {m.ref_steps_per_s[-1]:.1f} steps/s, "
                          f"train's actions replayed {m.replay_steps_per_s[-1]:.1f} steps/s (same trajectories: "
                          f"{same}), train so far {m.rate:.1f} steps/s", flush=True)  # fmt: skip
    finally:
        for fn in undo:
            fn()
    print(f"# load average at end: {' '.join(f'{x:.1f}' for x in os.getloadavg())}\n")
    print("| agent | env-only, train's actions replayed (steps/s) | train steps/s | **train / replay** | "
          "env-only, small random actions (steps/s) | train / random | replay = train's trajectories | "
          "train() call incl. start-up (s) |")
    print("| --- " * 8 + "|")
    for m in results.values():
        print(f"| {m.agent} | {m.replay:.1f} | {m.rate:.1f} | **{m.rate / m.replay:.2f}** | {m.ref:.1f} | "
              f"{m.rate / m.ref:.2f} | {all(m.replay_same)} | {m.call_s:.1f} |")  # fmt: skip
    print("\nShare of the learn loop's wall time:\n")
    print("| agent | " + " | ".join(PHASES) + " | other |")
    print("| --- " * (len(PHASES) + 2) + "|")
    for m in results.values():
        shares = [m.phases.get(name, 0.0) / m.learn_s for name in PHASES]
        print(f"| {m.agent} | " + " | ".join(f"{100 * s:.1f}%" for s in shares) + f" | {100 * (1 - sum(shares)):.1f}% |")
    print("\nMilliseconds per env step (all envs together):\n")
    print("| agent | " + " | ".join(PHASES) + " | other | total |")
    print("| --- " * (len(PHASES) + 3) + "|")
    for m in results.values():
        per = [1e3 * m.phases.get(name, 0.0) / m.train_steps for name in PHASES]
        total = 1e3 * m.learn_s / m.train_steps
        print(f"| {m.agent} | " + " | ".join(f"{x:.2f}" for x in per) + f" | {total - sum(per):.2f} | {total:.2f} |")
    print("\nCPU milliseconds per env step (load-independent; learner phases in the main thread's CPU time):\n")
    print("| agent | env workers, random actions | env workers, replay | env workers, in train | learner (whole process) | "
          + " | ".join(f"learner: {name}" for name in PHASES) + " |")
    print("| --- " * (len(PHASES) + 5) + "|")
    for m in results.values():
        per = [1e3 * m.phases_cpu.get(name, 0.0) / m.train_steps for name in PHASES]
        print(f"| {m.agent} | {1e3 * m.ref_worker_cpu / m.ref_steps:.2f} | {1e3 * m.replay_worker_cpu / m.replay_steps:.2f} | "
              f"{1e3 * m.train_worker_cpu / m.train_steps:.2f} | "
              f"{1e3 * m.train_own_cpu / m.train_steps:.2f} | " + " | ".join(f"{x:.2f}" for x in per) + " |")
    print("\nWhat the CPU times predict for an idle machine with one core per worker (W: workers' CPU per env step,\n"
          "L: learner's; sync loop, learner and workers taking turns: W/n / (W/n + L); learner perfectly overlapped\n"
          "on the n cores: W / (W + L)):\n")
    print("| agent | sync loop | perfect overlap |\n| --- | --- | --- |")
    for m in results.values():
        w = m.train_worker_cpu / m.train_steps
        learner = m.train_own_cpu / m.train_steps
        n = args.num_envs
        print(f"| {m.agent} | {(w / n) / (w / n + learner):.2f} | {w / (w + learner):.2f} |")


if __name__ == "__main__":
    main()
