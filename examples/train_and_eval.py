"""Train Gaussian PPO briefly on a real LIBERO task, then evaluate the checkpoint.

    python examples/train_and_eval.py            # ~1-2 minutes on 2 CPU cores

The same two calls the CLI makes (``cli.py train`` / ``cli.py eval``); swap
``agent="diffusion-ppo"`` or ``agent="stable_baselines3:SAC"`` to compare agents
on the same envs, logs and checkpoint format.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents.agent_configs import GaussianPPOConfig  # noqa: E402
from agents.configs import EvalConfig, TrainConfig  # noqa: E402
from agents.evaluate import evaluate, print_results  # noqa: E402
from agents.train import print_summary, train  # noqa: E402


def main() -> None:
    run = train(
        TrainConfig(
            agent=GaussianPPOConfig(n_steps=128),
            env="LIBERO-Goal-v0",
            task_id=(0,),
            obs_mode="state",
            max_episode_steps=60,  # short episodes: a quick look, not a real run
            num_envs=2,
            total_timesteps=1024,
            run_dir=Path("runs/example-gaussian"),
        )
    )
    print_summary(run)
    print_results(evaluate(EvalConfig(checkpoint=run.run_dir, episodes=2, video_dir=run.run_dir / "videos")))


if __name__ == "__main__":
    main()
