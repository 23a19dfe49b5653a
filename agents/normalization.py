"""Per-dimension scaling of observations and actions to [-1, 1], fitted on demonstrations.

DPPO (and diffusion_policy before it) trains on observations and actions scaled
per dimension from their minimum and maximum in the demonstrations to [-1, 1].
The diffusion policy's noise floors, clamps and clip ranges are set for that
range: on libero-gym's raw actions the rotation dimensions only use ~0.1-0.35 of
[-1, 1], and the informative object features vary by 0.008-0.1, so a std floor of
0.1 drowns them (docs/agents.md: 10% stochastic success of the raw BC policy
against 80-90% with both scalings).

A :class:`Normalizer` is an ``nn.Module`` whose statistics are persistent buffers:
they travel in every state dict (checkpoints, ``--init-from``) with the weights
they belong to. A fresh one is the identity (low = -1, high = 1), which is also
what a checkpoint written before normalisation existed loads with.

Shape legend:
    B: batch size, D: dimensions scaled
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

MIN_HALF_RANGE = 1e-3
"""Floor on (max - min) / 2 of actions. A dimension that is constant in the demos is centred,
not blown up: DPPO's ``max - min + 1e-6`` would multiply any later deviation by 1e6."""
OBS_MIN_HALF_RANGE = 1e-2
"""Floor on (max - min) / 2 of observations (``bounded``). Features that barely vary in the demos
(an upright bottle's quaternion z, w: +-0.001) carry nothing a clone can learn from; with the action
floor a few degrees of disturbance scaled them to 20-700 and the policy never recovered. At 1e-2
a 3-degree tilt (0.026 in a quaternion value) scales to ~2.6, and the smallest informative range
seen on LIBERO (0.008, object positions) still spans 0.8 of the scaled unit."""
OBS_BOUND = 5.0
"""Scaled observations are clipped to [-5, 5] (``bounded``): 2.5x the demos' range on either side
of it, so that no state the demos never reach puts the network far outside its training inputs."""


class Normalizer(nn.Module):
    """Affine per-dimension map from [low, high] to [-1, 1] and back.

    Args:
        dim: D, the number of dimensions.
        bounded: observation scaling: half ranges floored at :data:`OBS_MIN_HALF_RANGE` and
            :meth:`normalize` clipped to +-:data:`OBS_BOUND` (not invertible outside it). Otherwise
            (actions) floored at :data:`MIN_HALF_RANGE` and unclipped.
    """

    def __init__(self, dim: int, bounded: bool = False) -> None:
        super().__init__()
        self.register_buffer("low", -torch.ones(dim))
        self.register_buffer("high", torch.ones(dim))
        self.min_half_range = OBS_MIN_HALF_RANGE if bounded else MIN_HALF_RANGE
        self.bound = OBS_BOUND if bounded else None

    @property
    def center(self) -> torch.Tensor:
        """(low + high) / 2 [D]."""
        return (self.low + self.high) / 2

    @property
    def half_range(self) -> torch.Tensor:
        """(high - low) / 2 [D], floored at ``min_half_range``."""
        return ((self.high - self.low) / 2).clamp(min=self.min_half_range)

    @property
    def is_identity(self) -> bool:
        """True while low = -1 and high = 1 (fresh, or loaded from a pre-normalisation checkpoint)."""
        return bool(torch.all(self.low == -1) and torch.all(self.high == 1))

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """[..., D] in data units -> [..., D], [low, high] mapped onto [-1, 1] (clipped to +-bound if bounded)."""
        y = (x - self.center) / self.half_range
        return y if self.bound is None else y.clamp(-self.bound, self.bound)

    def unnormalize(self, y: torch.Tensor) -> torch.Tensor:
        """Inverse of :meth:`normalize`: [..., D] scaled -> data units."""
        return y * self.half_range + self.center

    @torch.no_grad()
    def fit(self, data: np.ndarray | torch.Tensor) -> None:
        """Set low/high to the per-dimension min/max of ``data`` [N, ..., D]."""
        values = torch.as_tensor(np.asarray(data), dtype=torch.float32).reshape(-1, self.low.shape[0])
        if len(values) == 0:
            raise ValueError("cannot fit a normalizer on no data")
        self.low.copy_(values.min(dim=0).values)
        self.high.copy_(values.max(dim=0).values)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Checkpoints from before normalisation have no low/high: load them as the identity.
        for name in ("low", "high"):
            state_dict.setdefault(prefix + name, -torch.ones_like(self.low) if name == "low" else torch.ones_like(self.high))
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def extra_repr(self) -> str:
        return f"dim={self.low.shape[0]}, identity={self.is_identity}, bound={self.bound}"
