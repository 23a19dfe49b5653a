"""``eval``: success rate per task of a checkpoint, per sampling mode, with 95% intervals and optional MP4 videos.

Every task of the checkpoint (or ``--task-id``) gets ``episodes`` episodes per
sampling mode (``--sampling``; default ``deterministic`` then ``stochastic``), on
the env the checkpoint records (id, obs_mode, image size, episode limit). With
``--init-states cycle`` (default) episode i starts from LIBERO's init state
i mod 50, so 50 episodes visit each init state once (with ``num_envs`` workers the
ids are dealt round-robin and each worker's first episodes are the ones counted);
``random`` draws them from the env RNG seeded ``seed``. Each sampling mode starts
again from the same seed (env and torch), so modes are compared on the same starts.

Sampling modes: ``deterministic`` is the Gaussian mean, and for ``diffusion-ppo``
DPPO's evaluation (random x_T, DDIM eta = 0); ``stochastic`` is what RL rollouts
sample; ``zero-init`` (diffusion only) starts the chain at x_T = 0, a function of
the observation that can hide an untrained distribution (docs/agents.md).

Success rates come with the Wilson score interval at 95%, which behaves at 0% and
100% and for small n (where the normal approximation does not).

A checkpoint trained on a chunk env (diffusion-ppo: ``env.chunk_size`` in agent.json)
is evaluated on a chunk env: one ``predict`` and one env step per chunk, lengths in
control steps; its videos then hold one frame per chunk (played at 20/Ta fps, real time).
An episode cut by a dead async worker is not counted (another one runs instead).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.agent_configs import check_agent_sampling
from agents.checkpoint import AGENT_FILE, load_agent, read_meta
from agents.configs import EvalConfig
from agents.registry import resolve_agent
from agents.train import make_env
from agents.vec_env import SB3VecEnv
from libero_gym import suites
from libero_gym.atomic_files import write_json_atomic
from libero_gym.env_config import EnvConfig
from libero_gym.errors import InvalidInputError
from libero_gym.registration import lookup_env

VIDEO_FPS = 20
"""LIBERO's control frequency (20 Hz), so videos play in real time."""
WILSON_Z = 1.959964
"""z of a two-sided 95% interval."""


def wilson_interval(successes: int, n: int, z: float = WILSON_Z) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (Wilson 1927): (low, high); (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + z**2 / n
    centre = (p + z**2 / (2 * n)) / denominator
    half = z * math.sqrt(p * (1 - p) / n + z**2 / (4 * n**2)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """Evaluation of one task in one sampling mode."""

    task_id: int
    episodes: int
    successes: int
    mean_length: float
    language: str
    sampling: str = "deterministic"
    init_state_ids: tuple[int, ...] = ()
    """The init state of each counted episode, in the order they finished."""
    episode_successes: tuple[bool, ...] = ()
    """Each counted episode's success, in the same order (which init states fail)."""
    episode_lengths: tuple[int, ...] = ()
    """Each counted episode's length in control steps, in the same order."""

    @property
    def success_rate(self) -> float:
        return self.successes / max(self.episodes, 1)

    @property
    def interval(self) -> tuple[float, float]:
        """95% Wilson interval of the success rate."""
        return wilson_interval(self.successes, self.episodes)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Evaluation of a checkpoint over its tasks.

    Attributes:
        tasks: results of the headline (first) sampling mode, one per task.
        by_sampling: sampling mode -> results per task, every mode evaluated.
    """

    checkpoint: str
    agent: str
    env_id: str
    obs_mode: str
    num_timesteps: int
    tasks: list[TaskResult]
    videos: list[str]
    wall_time_s: float
    by_sampling: dict[str, list[TaskResult]] = dataclasses.field(default_factory=dict)

    @property
    def success_rate(self) -> float:
        """Mean over tasks (headline sampling mode)."""
        return float(np.mean([t.success_rate for t in self.tasks])) if self.tasks else 0.0

    def sampling_success(self, sampling: str) -> float:
        """Mean success over tasks in one sampling mode."""
        return float(np.mean([t.success_rate for t in self.by_sampling[sampling]]))

    def to_json(self) -> dict[str, Any]:
        def rows(results: list[TaskResult]) -> list[dict[str, Any]]:
            return [
                {**dataclasses.asdict(t), "success_rate": t.success_rate, "interval95": list(t.interval)} for t in results
            ]

        out = dataclasses.asdict(self)
        out["tasks"] = rows(self.tasks)
        out["by_sampling"] = {mode: rows(results) for mode, results in self.by_sampling.items()}
        out["success_rate"] = self.success_rate
        out["success_rate_by_sampling"] = {mode: self.sampling_success(mode) for mode in self.by_sampling}
        return out


def evaluate(config: EvalConfig, model: Any = None) -> EvalResult:
    """Roll out the checkpoint; see the module docstring.

    Args:
        config: what to evaluate.
        model: an already loaded agent for ``config.checkpoint`` (saves reloading it).

    Raises:
        CheckpointError: unreadable checkpoint.
        InvalidInputError: a task id outside the suite, or ``zero-init`` for a non-diffusion agent.
    """
    import torch



    config.validate()
    config.check_reachable()
    torch.set_num_threads(config.torch_threads)
    meta = read_meta(config.checkpoint)
    env = EnvConfig.from_json(meta["env"])
    suite, single = lookup_env(env.env_id)
    single_task = single is not None
    every_task = config.task_id is not None and tuple(config.task_id) == ("all",)
    if every_task and single_task:
        raise InvalidInputError(f"--task-id all needs a checkpoint trained on a suite env id, not {env.env_id}")
    if every_task:
        task_ids = suites.resolve_task_ids(suite, "all")
    else:
        task_ids = tuple(int(t) for t in config.task_id) if config.task_id is not None else (env.task_ids or (0,))
    suites.resolve_task_ids(suite, list(task_ids))  # raises InvalidInputError on a bad id
    agent_class = type(model) if model is not None else resolve_agent(meta["agent"]).load_class()
    for sampling in config.sampling:  # before any env worker starts
        check_agent_sampling(agent_class, sampling, meta["agent"])
    if config.max_episode_steps is not None:
        env = dataclasses.replace(env, max_episode_steps=config.max_episode_steps)
    extra: dict[str, Any] = {}
    if config.video_dir is not None:
        extra["render_mode"] = "rgb_array"
        Path(config.video_dir).mkdir(parents=True, exist_ok=True)
    if config.init_states == "cycle":
        extra["init_state_ids"] = [i % suites.NUM_INIT_STATES for i in range(config.episodes)]

    start = time.perf_counter()
    by_sampling: dict[str, list[TaskResult]] = {mode: [] for mode in config.sampling}
    videos: list[str] = []
    for task_id in task_ids:
        task_env = env if single_task else dataclasses.replace(env, task_ids=(task_id,))
        mode = config.vectorization_mode("sync" if config.num_envs == 1 else "async")
        vec_env = make_env(task_env, config.num_envs, mode, ray_address=config.ray_address, **extra)
        try:
            if model is None:
                model, _ = load_agent(config.checkpoint, vec_env, device=config.device)
            for index, sampling in enumerate(config.sampling):
                vec_env.seed(config.seed)  # every mode from the same starts
                torch.manual_seed(config.seed)
                video_dir = config.video_dir if index == 0 else None
                result, task_videos = _run_task(model, vec_env, task_id, config, sampling, video_dir)
                by_sampling[sampling].append(result)
                videos.extend(task_videos)
        finally:
            vec_env.close()
    out = EvalResult(
        checkpoint=str(config.checkpoint),
        agent=str(meta["agent"]),
        env_id=env.env_id,
        obs_mode=env.obs_mode,
        num_timesteps=int(meta["num_timesteps"]),
        tasks=by_sampling[config.sampling[0]],
        videos=videos,
        wall_time_s=time.perf_counter() - start,
        by_sampling=by_sampling,
    )
    if config.json_out is not None:
        write_json_atomic(config.json_out, out.to_json(), sort_keys=False)
    out_dir = config.out_dir
    if out_dir is None and every_task:
        out_dir = _run_folder(config.checkpoint) / "eval"
    if out_dir is not None:
        write_report(out, Path(out_dir))
    return out


def _run_folder(checkpoint: Path) -> Path:
    """The run folder of a checkpoint argument: the folder itself, or the one holding the checkpoint folder/zip."""
    path = Path(checkpoint)
    return path.parent if path.is_file() or (path / AGENT_FILE).is_file() else path


def suite_mean(tasks: list[TaskResult]) -> tuple[float, tuple[float, float]]:
    """Mean success over tasks and the 95% Wilson interval of the pooled episodes (every task's episodes
    together; with equal episodes per task the pooled rate is the mean)."""
    successes = sum(t.successes for t in tasks)
    episodes = sum(t.episodes for t in tasks)
    mean = float(np.mean([t.success_rate for t in tasks])) if tasks else 0.0
    return mean, wilson_interval(successes, episodes)


def write_report(result: EvalResult, out_dir: Path) -> tuple[Path, Path]:
    """``results.json`` (:meth:`EvalResult.to_json` plus the suite mean and its interval per sampling mode) and
    ``success.png``: per-task success bars with 95% Wilson error bars and the suite mean, one colour per mode.

    Returns:
        The JSON and PNG paths.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    out_dir.mkdir(parents=True, exist_ok=True)
    by_sampling = result.by_sampling or {"deterministic": result.tasks}
    payload = result.to_json()
    payload["suite_mean"] = {}
    for mode, tasks in by_sampling.items():
        mean, (low, high) = suite_mean(tasks)
        payload["suite_mean"][mode] = {"success_rate": mean, "interval95": [low, high],
                                       "episodes": sum(t.episodes for t in tasks)}  # fmt: skip
    json_path = out_dir / "results.json"
    write_json_atomic(json_path, payload, sort_keys=False)

    modes = list(by_sampling)
    width = 0.8 / len(modes)
    figure, axes = plt.subplots(figsize=(max(6.0, 0.7 * len(result.tasks) + 2), 4))
    for k, mode in enumerate(modes):
        tasks = by_sampling[mode]
        x = np.arange(len(tasks)) + (k - (len(modes) - 1) / 2) * width
        rates = np.array([t.success_rate for t in tasks])
        bounds = np.array([t.interval for t in tasks]).reshape(-1, 2)
        errors = np.clip(np.stack([rates - bounds[:, 0], bounds[:, 1] - rates]), 0, None)  # 1 - 1e-16 at 100%
        mean, (low, high) = suite_mean(tasks)
        label = f"{mode}: mean {100 * mean:.1f}% ({100 * low:.0f}-{100 * high:.0f})"
        bars = axes.bar(x, 100 * rates, width, yerr=100 * errors, capsize=2, label=label)
        axes.axhline(100 * mean, color=bars.patches[0].get_facecolor(), linestyle="--", linewidth=1)
    axes.set_xticks(np.arange(len(result.tasks)), [str(t.task_id) for t in result.tasks])
    axes.set_xlabel("task")
    axes.set_ylabel("success (%), 95% Wilson interval")
    axes.set_ylim(0, 105)
    episodes = result.tasks[0].episodes if result.tasks else 0
    axes.set_title(f"{result.agent} on {result.env_id} ({result.obs_mode}), {episodes} episodes per task", fontsize=9)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    png_path = out_dir / "success.png"
    figure.savefig(png_path, dpi=120)
    plt.close(figure)
    return json_path, png_path


def _run_task(
    model: Any, vec_env: SB3VecEnv, task_id: int, config: EvalConfig, sampling: str, video_dir: Path | None
) -> tuple[TaskResult, list[str]]:
    """``config.episodes`` episodes of one task in one sampling mode; returns the result and the video paths."""
    n = vec_env.num_envs
    env_chunk = vec_env.action_space.shape[0] if vec_env.is_chunked else None  # frames per chunk: one
    # With cycled init states, worker w owns the ids [w::n]: it counts only its first len(ids) episodes,
    # so the counted episodes visit each id once whatever the workers' speeds.
    quota = [len(range(w, config.episodes, n)) for w in range(n)] if config.init_states == "cycle" else None
    counted = [0] * n
    deterministic = sampling != "stochastic"
    if hasattr(model, "deterministic_mode"):
        model.deterministic_mode = "zero-init" if sampling == "zero-init" else "deterministic"
    obs = vec_env.reset()
    language = str(vec_env.reset_infos[0].get("language_instruction", ""))
    episode_start = np.ones(n, dtype=bool)
    frames: list[list[np.ndarray]] = [[] for _ in range(n)]
    lengths, outcomes, init_ids, videos = [], [], [], []
    try:
        while len(lengths) < config.episodes:
            if video_dir is not None:
                for i, frame in enumerate(vec_env.get_images()):
                    if frame is not None:
                        frames[i].append(np.asarray(frame))
            actions, _ = model.predict(obs, episode_start=episode_start, deterministic=deterministic)
            obs, _, dones, infos = vec_env.step(actions)
            episode_start = dones
            for i in np.flatnonzero(dones):
                if len(lengths) >= config.episodes:
                    break
                if "episode" not in infos[i] or (quota is not None and counted[i] >= quota[i]):
                    frames[i] = []  # dropped (its worker died), or beyond this worker's share of init states
                    continue
                counted[i] += 1
                success = bool(infos[i].get("is_success", False))
                outcomes.append(success)
                lengths.append(int(infos[i]["episode"]["l"]))
                init_ids.append(int(infos[i].get("init_state_id", -1)))
                if video_dir is not None:
                    terminal = infos[i].get("terminal_observation", {})
                    if "agentview_image" in terminal:
                        frames[i].append(np.asarray(terminal["agentview_image"]))
                    name = f"task{task_id:02d}_{sampling}_ep{len(lengths) - 1:03d}_{'success' if success else 'fail'}.mp4"
                    path = Path(video_dir) / name
                    _write_video(path, frames[i], fps=VIDEO_FPS / (env_chunk or 1))
                    videos.append(str(path))
                frames[i] = []
    finally:
        if hasattr(model, "deterministic_mode"):
            model.deterministic_mode = "deterministic"
    result = TaskResult(task_id, len(lengths), sum(outcomes), float(np.mean(lengths)), language, sampling, tuple(init_ids),
                        tuple(outcomes), tuple(lengths))  # fmt: skip
    return result, videos


def _write_video(path: Path, frames: list[np.ndarray], fps: float = VIDEO_FPS) -> None:
    import imageio.v2 as imageio

    if not frames:
        return
    # macro_block_size=1: LIBERO image sizes (e.g. 84) need not be multiples of 16.
    imageio.mimsave(path, frames, fps=fps, macro_block_size=1)


def print_results(result: EvalResult) -> None:
    """A rich table: success rate (95% interval) per task and sampling mode, and the means."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.agent} on {result.env_id} ({result.obs_mode}), {result.num_timesteps} training steps")
    table.add_column("task", justify="right")
    table.add_column("sampling")
    table.add_column("success (95% CI)", justify="right")
    table.add_column("episodes", justify="right")
    table.add_column("mean length", justify="right")
    table.add_column("instruction")
    by_sampling = result.by_sampling or {"deterministic": result.tasks}
    for mode, tasks in by_sampling.items():
        for task in tasks:
            low, high = task.interval
            table.add_row(
                str(task.task_id),
                mode,
                f"{100 * task.success_rate:.1f}% ({100 * low:.0f}-{100 * high:.0f})",
                str(task.episodes),
                f"{task.mean_length:.1f}",
                task.language,
            )
    for mode, tasks in by_sampling.items():
        mean, (low, high) = suite_mean(tasks)
        table.add_row("mean", mode, f"{100 * mean:.1f}% ({100 * low:.0f}-{100 * high:.0f})",
                      str(sum(t.episodes for t in tasks)), "", "")  # fmt: skip
    console = Console(width=180)
    console.print(table)
    if result.videos:
        console.print(f"{len(result.videos)} videos in {Path(result.videos[0]).parent}")
