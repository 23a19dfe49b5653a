"""The value network of DiffusionPPO (DPPO's ``model/common/critic.py``, ``CriticObs``).

V(obs) on the observation alone (not the action chunk): an observation encoder of
its own (same kind as the policy's) and a Mish MLP with a linear head.

Shape legend:
    B: batch, F: encoder features
"""

from __future__ import annotations

import torch
from gymnasium import spaces
from torch import nn

from agents.agent_configs import EncoderConfig
from agents.encoders import make_encoder, mlp


class ValueNetwork(nn.Module):
    """V(obs): encoder [B, F] + Mish MLP + linear head -> [B]."""

    def __init__(self, observation_space: spaces.Dict, encoder: EncoderConfig, dims: tuple[int, ...]) -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, encoder)
        self.net = nn.Sequential(mlp(self.encoder.output_dim, dims), nn.Linear(dims[-1], 1))

    def forward(self, observation: dict[str, torch.Tensor]) -> torch.Tensor:
        """Values [B]."""
        return self.net(self.encoder(observation)).squeeze(-1)
