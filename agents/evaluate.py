"""``eval``: success rate per task of a checkpoint, with optional MP4 videos.

Every task of the checkpoint (or ``--task-id``) gets ``episodes`` episodes, on the
env the checkpoint records (id, obs_mode, image size, episode limit), seeded
``seed, seed + 1, ...`` per env. Actions are deterministic by default (the
Gaussian mean; DDIM with eta = 0 for diffusion-ppo). With ``num_envs > 1`` the
first ``episodes`` episodes to finish are counted; the async workers restart if they
die, and an episode cut that way is not counted (another one runs instead).

A checkpoint trained on a chunk env (diffusion-ppo: ``env.chunk_size`` in agent.json)
is evaluated on a chunk env: one ``predict`` and one env step per chunk, lengths in
control steps; its videos then hold one frame per chunk (played at 20/Ta fps, real time).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from agents.checkpoint import EnvInfo, load_agent, read_meta
from agents.commands import Eval
from agents.vec_env import SB3VecEnv

VIDEO_FPS = 20
"""LIBERO's control frequency (20 Hz), so videos play in real time."""


@dataclasses.dataclass(frozen=True)
class TaskResult:
    """Evaluation of one task."""

    task_id: int
    episodes: int
    successes: int
    mean_length: float
    language: str

    @property
    def success_rate(self) -> float:
        return self.successes / max(self.episodes, 1)


@dataclasses.dataclass(frozen=True)
class EvalResult:
    """Evaluation of a checkpoint over its tasks."""

    checkpoint: str
    agent: str
    env_id: str
    obs_mode: str
    num_timesteps: int
    tasks: list[TaskResult]
    videos: list[str]
    wall_time_s: float

    @property
    def success_rate(self) -> float:
        """Mean over tasks."""
        return float(np.mean([t.success_rate for t in self.tasks])) if self.tasks else 0.0

    def to_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["success_rate"] = self.success_rate
        for task, row in zip(self.tasks, out["tasks"], strict=True):
            row["success_rate"] = task.success_rate
        return out


def evaluate(config: Eval) -> EvalResult:
    """Roll out the checkpoint; see the module docstring.

    Raises:
        CheckpointError: unreadable checkpoint.
        InvalidInputError: a task id outside the suite.
    """
    from libero_gym import suites
    from libero_gym.registration import suite_env_ids, task_env_ids

    from agents.train import make_env

    config.validate()
    meta = read_meta(config.checkpoint)
    env = EnvInfo.from_json(meta["env"])
    task_ids = tuple(config.task_id) if config.task_id is not None else (env.task_ids or (0,))
    single_task = env.env_id in task_env_ids()
    suite = task_env_ids()[env.env_id].suite if single_task else suite_env_ids().get(env.env_id)
    if suite is not None:
        suites.resolve_task_ids(suite, list(task_ids))  # raises InvalidInputError on a bad id
    if config.max_episode_steps is not None:
        env = dataclasses.replace(env, max_episode_steps=config.max_episode_steps)
    extra: dict[str, Any] = {}
    if config.video_dir is not None:
        extra["render_mode"] = "rgb_array"
        Path(config.video_dir).mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    model = None
    results, videos = [], []
    for task_id in task_ids:
        task_env = env if single_task else dataclasses.replace(env, task_ids=(task_id,))
        mode = "sync" if config.num_envs == 1 else "async"
        vec_env = make_env(task_env, config.num_envs, mode, **extra)
        try:
            if model is None:
                model, _ = load_agent(config.checkpoint, vec_env, device=config.device)
            vec_env.seed(config.seed)
            result, task_videos = _run_task(model, vec_env, task_id, config)
        finally:
            vec_env.close()
        results.append(result)
        videos.extend(task_videos)
    out = EvalResult(
        checkpoint=str(config.checkpoint),
        agent=str(meta["agent"]),
        env_id=env.env_id,
        obs_mode=env.obs_mode,
        num_timesteps=int(meta["num_timesteps"]),
        tasks=results,
        videos=videos,
        wall_time_s=time.perf_counter() - start,
    )
    if config.json_out is not None:
        Path(config.json_out).write_text(json.dumps(out.to_json(), indent=2) + "\n")
    return out


def _run_task(model: Any, vec_env: SB3VecEnv, task_id: int, config: Eval) -> tuple[TaskResult, list[str]]:
    """``config.episodes`` episodes of one task; returns the result and the video paths."""
    n = vec_env.num_envs
    env_chunk = vec_env.action_space.shape[0] if vec_env.is_chunked else None  # frames per chunk: one
    obs = vec_env.reset()
    language = str(vec_env.reset_infos[0].get("language_instruction", ""))
    episode_start = np.ones(n, dtype=bool)
    frames: list[list[np.ndarray]] = [[] for _ in range(n)]
    lengths, successes, videos = [], 0, []
    while len(lengths) < config.episodes:
        if config.video_dir is not None:
            for i, frame in enumerate(vec_env.get_images()):
                if frame is not None:
                    frames[i].append(np.asarray(frame))
        actions, _ = model.predict(obs, episode_start=episode_start, deterministic=config.deterministic)
        obs, _, dones, infos = vec_env.step(actions)
        episode_start = dones
        for i in np.flatnonzero(dones):
            if len(lengths) >= config.episodes:
                break
            if "episode" not in infos[i]:  # dropped: its worker died; it does not count
                frames[i] = []
                continue
            success = bool(infos[i].get("is_success", False))
            successes += success
            lengths.append(int(infos[i]["episode"]["l"]))
            if config.video_dir is not None:
                terminal = infos[i].get("terminal_observation", {})
                if "agentview_image" in terminal:
                    frames[i].append(np.asarray(terminal["agentview_image"]))
                name = f"task{task_id:02d}_ep{len(lengths) - 1:03d}_{'success' if success else 'fail'}.mp4"
                path = Path(config.video_dir) / name
                _write_video(path, frames[i], fps=VIDEO_FPS / (env_chunk or 1))
                videos.append(str(path))
            frames[i] = []
    return TaskResult(task_id, len(lengths), successes, float(np.mean(lengths)), language), videos


def _write_video(path: Path, frames: list[np.ndarray], fps: float = VIDEO_FPS) -> None:
    import imageio.v2 as imageio

    if not frames:
        return
    # macro_block_size=1: LIBERO image sizes (e.g. 84) need not be multiples of 16.
    imageio.mimsave(path, frames, fps=fps, macro_block_size=1)


def print_results(result: EvalResult) -> None:
    """A rich table: success rate per task and the mean."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{result.agent} on {result.env_id} ({result.obs_mode}), {result.num_timesteps} training steps")
    table.add_column("task", justify="right")
    table.add_column("success", justify="right")
    table.add_column("episodes", justify="right")
    table.add_column("mean length", justify="right")
    table.add_column("instruction")
    for task in result.tasks:
        table.add_row(
            str(task.task_id),
            f"{100 * task.success_rate:.1f}%",
            str(task.episodes),
            f"{task.mean_length:.1f}",
            task.language,
        )
    table.add_row("mean", f"{100 * result.success_rate:.1f}%", "", "", "")
    console = Console(width=160)
    console.print(table)
    if result.videos:
        console.print(f"{len(result.videos)} videos in {Path(result.videos[0]).parent}")
