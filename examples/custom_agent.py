"""Register your own agent from Python, then train it through the same command.

    python examples/custom_agent.py

Any Stable-Baselines3 ``BaseAlgorithm`` works without registering, as
``cli.py train --agent some.module:SomeClass``; registering gives it a
short name (``cli.py agents`` lists it in this process).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from agents import register_agent  # noqa: E402
from agents.agent_configs import SB3AgentConfig  # noqa: E402
from agents.configs import TrainConfig  # noqa: E402
from agents.train import print_summary, train  # noqa: E402


def main() -> None:
    # A plain SB3 class: built as TD3("MultiInputPolicy", env, **kwargs), its kwargs as JSON (no typed config).
    register_agent("td3", "stable_baselines3:TD3", description="TD3 (SB3 defaults)", overwrite=True)
    result = train(
        TrainConfig(
            agent=SB3AgentConfig(
                "stable_baselines3:TD3", json.dumps({"learning_starts": 100, "policy_kwargs": {"net_arch": [64, 64]}})
            ),
            env="LIBERO-Goal-v0",
            max_episode_steps=50,
            num_envs=1,
            vectorization="sync",
            total_timesteps=300,
            run_dir=Path("runs/example-td3"),
        )
    )
    print_summary(result)


if __name__ == "__main__":
    main()
