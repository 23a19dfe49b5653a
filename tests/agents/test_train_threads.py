"""``train --update-threads``: torch's thread count switches for the update and back for the rollouts."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from agents.agent_configs import DiffusionPPOConfig
from agents.configs import TrainConfig
from agents.diffusion_policy import DiffusionPolicy
from agents.diffusion_ppo import DiffusionPPO
from agents.train import UpdateThreadsCallback
from libero_gym.errors import InvalidInputError
from tests.agents.conftest import SMALL_DIFFUSION, agent_config, fake_vec


def test_update_runs_with_update_threads_rollouts_with_torch_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, set[int]] = {"update": set(), "rollout": set()}
    original_train, original_sample = DiffusionPPO.train, DiffusionPolicy.sample

    def train(self: DiffusionPPO) -> None:
        seen["update"].add(torch.get_num_threads())
        original_train(self)

    def sample(self: DiffusionPolicy, *args: Any, **kwargs: Any) -> Any:  # rollouts' action sampling
        seen["rollout"].add(torch.get_num_threads())
        return original_sample(self, *args, **kwargs)

    monkeypatch.setattr(DiffusionPPO, "train", train)
    monkeypatch.setattr(DiffusionPolicy, "sample", sample)
    config = agent_config("diffusion-ppo", SMALL_DIFFUSION)
    assert isinstance(config, DiffusionPPOConfig)
    model = DiffusionPPO(fake_vec(2, chunk_size=4), config, seed=0, device="cpu")
    torch.set_num_threads(1)
    model.learn(2 * 2 * config.n_chunks * 4, callback=UpdateThreadsCallback(rollout=1, update=2))
    assert seen == {"update": {2}, "rollout": {1}}
    assert torch.get_num_threads() == 1  # back to the rollout's count at the end


def test_update_threads_must_be_positive() -> None:
    with pytest.raises(InvalidInputError, match="update_threads must be >= 1"):
        TrainConfig(update_threads=0).validate()
