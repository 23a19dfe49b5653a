"""Observation encoders: an MLP for state observations, a FiLM-ResNet per camera for pixels.

Every libero-gym observation is a flat ``Dict`` (see ``libero_gym.env.LiberoEnv``):
``proprio`` always, ``object`` in ``state``/``both`` mode, one image per camera in
``pixels``/``both`` mode, and ``task_index``. :func:`make_encoder` picks the encoder
from the observation space; both map a batch of observations to one feature vector.

The pixel encoder follows the policy of Zhang et al. 2025 ("Beyond Human
Demonstrations", arXiv:2509.19752): a ResNet backbone per camera whose residual
blocks are FiLM-conditioned (Perez et al. 2018) on proprioception and the task.
It is written here in plain torch (there is no CPU torchvision) and kept small
enough to run on CPU: three stages of one basic block each, GroupNorm instead of
BatchNorm (RL batches are small and correlated; Chi et al. 2023 do the same), and a
spatial softmax (Levine et al. 2016, robomimic) that keeps *where* things are.

Shape legend:
    B: batch size
    C: image channels (3 in, ``channels[i]`` inside)
    H, W: image height and width
    Dp: proprioception values the policy sees (39 with velocities, 30 without), Do: object-state size (120), N: number of tasks
    F: output feature size (``encoder.output_dim``)
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from torch import nn

from agents.agent_configs import EncoderConfig
from agents.normalization import Normalizer
from libero_gym.env import CAMERAS
from libero_gym.errors import InvalidInputError
from libero_gym.spaces import PROPRIO_DIM, PROPRIO_SLICES

LOW_DIM_KEYS = ("proprio", "object")
"""Vector observations, concatenated in this order (``object`` only when present)."""
TASK_KEY = "task_index"
VELOCITY_KEYS = ("joint_vel", "gripper_qvel")
"""Parts of ``proprio`` a policy sees only with ``EncoderConfig.velocities``: the scripted expert's
jerk-limited actions (step-to-step correlation 0.99) make the arm's velocity a stand-in for its last
action, and a policy cloned from them follows its own momentum instead of the task (docs/agents.md)."""


@functools.cache
def proprio_columns(velocities: bool) -> np.ndarray:
    """Indices of the ``proprio`` values a policy sees: all 39, or the 30 without :data:`VELOCITY_KEYS`
    (computed once per value: every forward pass selects with it)."""
    columns = np.arange(PROPRIO_DIM)
    if velocities:
        return columns
    dropped = np.concatenate([columns[PROPRIO_SLICES[key]] for key in VELOCITY_KEYS])
    return np.setdiff1d(columns, dropped)


def obs_as_tensor(observation: Mapping[str, Any], device: torch.device | str) -> dict[str, torch.Tensor]:
    """A batch of numpy observations as tensors on ``device`` (dtypes kept; images stay uint8)."""
    return {key: torch.as_tensor(np.asarray(value), device=device) for key, value in observation.items()}


def low_dim_input(
    observation: Mapping[str, torch.Tensor],
    n_tasks: int,
    normalizer: Normalizer | None = None,
    velocities: bool = True,
) -> torch.Tensor:
    """Proprioception, object state (if any), scaled by ``normalizer``, and the one-hot task as one vector.

    Args:
        observation: tensors ``proprio`` [B, 39], optionally ``object`` [B, Do], and
            ``task_index`` [B] or [B, 1] (integers).
        n_tasks: size of the ``task_index`` space N.
        normalizer: per-dimension scaling of the vector part [Dp (+ Do)]; None: raw.
        velocities: keep the velocities of ``proprio`` (Dp = 39), else drop them (Dp = 30).

    Returns:
        [B, Dp (+ Do) + N] float32.
    """
    task = observation[TASK_KEY].reshape(-1).long()
    return torch.cat([low_dim_scaled(observation, normalizer, velocities), F.one_hot(task, n_tasks).float()], dim=-1)


def low_dim_scaled(
    observation: Mapping[str, torch.Tensor], normalizer: Normalizer | None = None, velocities: bool = True
) -> torch.Tensor:
    """The vector part of :func:`low_dim_input`: ``normalize(concat(proprio, object))`` [B, Dp (+ Do)]."""
    vector = torch.cat([_seen(observation[key].float(), key, velocities) for key in LOW_DIM_KEYS if key in observation], dim=-1)
    return vector if normalizer is None else normalizer.normalize(vector)


def low_dim_size(observation_space: spaces.Dict, velocities: bool = True) -> int:
    """Dp (+ Do): size of the scaled vector part of :func:`low_dim_input`."""
    sizes = {"proprio": len(proprio_columns(velocities))}
    return sum(
        sizes.get(key, int(observation_space[key].shape[0])) for key in LOW_DIM_KEYS if key in observation_space.spaces
    )


def low_dim_vector(observations: Mapping[str, np.ndarray], velocities: bool = True) -> np.ndarray:
    """The vector part of :func:`low_dim_input`, unscaled, of a batch of numpy observations [N, Dp (+ Do)]
    (what normalizers fit on)."""
    parts = [_seen(np.asarray(observations[key], dtype=np.float32), key, velocities) for key in LOW_DIM_KEYS if key in observations]
    return np.concatenate(parts, axis=-1)


@torch.no_grad()
def copy_scaling(source: StateEncoder | PixelEncoder, target: StateEncoder | PixelEncoder) -> None:
    """Give ``target`` the input scaling of ``source``, column by column: where one sees proprio's velocities
    and the other does not, the shared columns are copied and the target's velocity columns keep theirs."""
    seen = {False: proprio_columns(False), True: proprio_columns(True)}
    src, dst = seen[source.velocities], seen[target.velocities]
    src_index = {int(c): i for i, c in enumerate(src)}
    pairs = [(src_index[int(c)], j) for j, c in enumerate(dst) if int(c) in src_index]
    tail = source.normalizer.low.shape[0] - len(src)  # the object part, the same in both
    pairs += [(len(src) + k, len(dst) + k) for k in range(tail)]
    from_index, to_index = (torch.tensor(index) for index in zip(*pairs))
    for name in ("low", "high"):
        getattr(target.normalizer, name)[to_index] = getattr(source.normalizer, name)[from_index]


def _seen(value: Any, key: str, velocities: bool) -> Any:
    """The columns of observation ``key`` [..., D] the network sees (numpy or torch)."""
    return value if key != "proprio" or velocities else value[..., proprio_columns(False)]


def mlp(in_dim: int, dims: tuple[int, ...], activation: type[nn.Module] = nn.Mish) -> nn.Sequential:
    """``Linear -> activation`` for each size in ``dims`` (Mish as in DPPO's networks)."""
    layers: list[nn.Module] = []
    for dim in dims:
        layers += [nn.Linear(in_dim, dim), activation()]
        in_dim = dim
    return nn.Sequential(*layers)


class StateEncoder(nn.Module):
    """MLP over ``concat(normalize(concat(proprio, object)), one_hot(task_index))``.

    Attributes:
        normalizer: the per-dimension scaling of proprio + object (identity until fitted).
        velocities: whether ``proprio``'s velocities are among the inputs.
    """

    def __init__(self, observation_space: spaces.Dict, config: EncoderConfig) -> None:
        super().__init__()
        self.n_tasks = int(observation_space[TASK_KEY].n)
        self.velocities = config.velocities
        in_dim = low_dim_size(observation_space, self.velocities)
        self.normalizer = Normalizer(in_dim, bounded=True)
        self.net = mlp(in_dim + self.n_tasks, config.state_dims)
        self.output_dim = config.state_dims[-1]

    def forward(self, observation: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Features [B, F] of a batch of observations."""
        return self.net(low_dim_input(observation, self.n_tasks, self.normalizer, self.velocities))

    def fit_normalizer(self, observations: Mapping[str, np.ndarray]) -> None:
        """Fit the input scaling on a batch of numpy observations (demonstrations)."""
        self.normalizer.fit(low_dim_vector(observations, self.velocities))


class FiLMBlock(nn.Module):
    """Basic residual block (two 3x3 convs, stride 2) modulated by FiLM: ``h * (1 + gamma) + beta``."""

    def __init__(self, in_channels: int, out_channels: int, cond_dim: int, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=2, padding=1, bias=False)
        self.norm1 = nn.GroupNorm(groups, out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm2 = nn.GroupNorm(groups, out_channels)
        self.shortcut = nn.Conv2d(in_channels, out_channels, 1, stride=2, bias=False)
        self.film = nn.Linear(cond_dim, 2 * out_channels)
        # Zero-initialised FiLM starts as the identity modulation (gamma = beta = 0).
        nn.init.zeros_(self.film.weight)
        nn.init.zeros_(self.film.bias)

    def forward(self, x: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """[B, C_in, H, W], cond [B, D] -> [B, C_out, H/2, W/2]."""
        h = F.relu(self.norm1(self.conv1(x)))
        h = self.norm2(self.conv2(h))
        gamma, beta = self.film(cond)[:, :, None, None].chunk(2, dim=1)
        return F.relu(h * (1 + gamma) + beta + self.shortcut(x))


class SpatialSoftmax(nn.Module):
    """Expected image coordinates of each channel's softmax: [B, C, H, W] -> [B, 2C] in [-1, 1]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        attention = x.flatten(2).softmax(dim=-1).view(b, c, h, w)
        ys = torch.linspace(-1.0, 1.0, h, device=x.device)
        xs = torch.linspace(-1.0, 1.0, w, device=x.device)
        expected_y = (attention.sum(dim=3) * ys).sum(dim=-1)
        expected_x = (attention.sum(dim=2) * xs).sum(dim=-1)
        return torch.cat([expected_x, expected_y], dim=-1)


class FiLMResNet(nn.Module):
    """One camera: conv stem, FiLM residual stages, spatial softmax, linear to ``image_feature_dim``.

    Every layer halves the resolution: 128x128 images reach the spatial softmax at 8x8.
    """

    def __init__(self, cond_dim: int, config: EncoderConfig) -> None:
        super().__init__()
        channels = config.image_channels
        # Stride-2 stem, as ResNet's (which also max-pools): most of the cost is at full resolution.
        self.stem = nn.Sequential(
            nn.Conv2d(3, channels[0], 3, stride=2, padding=1, bias=False), nn.GroupNorm(config.groups, channels[0]), nn.ReLU()
        )
        self.blocks = nn.ModuleList(
            FiLMBlock(c_in, c_out, cond_dim, config.groups) for c_in, c_out in zip(channels, channels[1:] + channels[-1:])
        )
        self.pool = SpatialSoftmax()
        self.head = nn.Linear(2 * channels[-1], config.image_feature_dim)

    def forward(self, image: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """image [B, 3, H, W] float in [0, 1], cond [B, D] -> [B, image_feature_dim]."""
        h = self.stem(image)
        for block in self.blocks:
            h = block(h, cond)
        return self.head(self.pool(h))


class PixelEncoder(nn.Module):
    """A :class:`FiLMResNet` per camera, conditioned on proprio (+ object) + task; features concatenated.

    Output: ``concat(camera features..., low-dim input)``, so the policy also sees the
    proprioception and task directly, not only through the FiLM modulation. The low-dim
    input is scaled by ``normalizer``; images keep their own scaling (uint8 / 255).
    """

    def __init__(self, observation_space: spaces.Dict, config: EncoderConfig) -> None:
        super().__init__()
        self.n_tasks = int(observation_space[TASK_KEY].n)
        self.velocities = config.velocities
        self.cameras = [key for key in CAMERAS if key in observation_space.spaces]
        low_dim = low_dim_size(observation_space, self.velocities)
        self.normalizer = Normalizer(low_dim, bounded=True)
        cond_dim = self.n_tasks + low_dim
        self.backbones = nn.ModuleDict({key: FiLMResNet(cond_dim, config) for key in self.cameras})
        self.output_dim = len(self.cameras) * config.image_feature_dim + cond_dim

    def fit_normalizer(self, observations: Mapping[str, np.ndarray]) -> None:
        """Fit the low-dim input scaling on a batch of numpy observations (demonstrations)."""
        self.normalizer.fit(low_dim_vector(observations, self.velocities))

    def forward(self, observation: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Features [B, F]; images may be [B, H, W, 3] (gymnasium) or [B, 3, H, W] (SB3's VecTransposeImage)."""
        cond = low_dim_input(observation, self.n_tasks, self.normalizer, self.velocities)
        features = [self.backbones[key](_as_chw_float(observation[key]), cond) for key in self.cameras]
        return torch.cat([*features, cond], dim=-1)


def _as_chw_float(image: torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, 3] or [B, 3, H, W] -> float [B, 3, H, W] in [0, 1]."""
    if image.shape[-1] == 3 and image.shape[-3] != 3:
        image = image.permute(0, 3, 1, 2)
    return image.float() / 255.0


def make_encoder(observation_space: spaces.Space[Any], config: EncoderConfig) -> StateEncoder | PixelEncoder:
    """The pixel encoder when the space has camera images, else the state MLP.

    Raises:
        InvalidInputError: the space is not a libero-gym observation ``Dict``.
    """
    if not isinstance(observation_space, spaces.Dict) or not {"proprio", TASK_KEY} <= set(observation_space.spaces):
        raise InvalidInputError(
            f"observation space must be a libero-gym Dict with 'proprio' and 'task_index', got {observation_space}"
        )
    if any(key in observation_space.spaces for key in CAMERAS):
        return PixelEncoder(observation_space, config)
    return StateEncoder(observation_space, config)
