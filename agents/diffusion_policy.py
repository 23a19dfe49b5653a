"""A diffusion policy over action chunks, with the per-step likelihoods DPPO needs.

The policy denoises an action chunk ``x`` [B, Ta, Da] from Gaussian noise in S DDIM
steps taken on a K-step DDPM cosine schedule, each step conditioned on the encoded
observation. With ``eta = 1`` every denoising step is a Gaussian whose mean comes
from the noise-prediction network: the chain is a small MDP inside each environment
step, and DPPO (Ren et al. 2024, arXiv:2409.00588) runs PPO on it. ``eta = 1`` with
S = K is exactly DDPM ancestral sampling; ``eta = 0`` is the deterministic DDIM used
for evaluation.

Only the last K' steps are fine-tuned: they run a trainable copy of the network
(``actor_ft``); the earlier, noisier steps run the behaviour-cloned network
(``actor``), which RL leaves untouched (DPPO, section 4.3).

The chain runs in normalised action space: ``action_normalizer`` maps each action
dimension's range in the demonstrations to [-1, 1] (DPPO's scaling; fitted by
``pretrain``, identity otherwise), so the noise floors, clamps (``denoised_clip``)
and log-probabilities act on comparable scales in every dimension. Sampled chunks
are mapped back to the env's units and clamped to its [-1, 1] action space. The
observation encoders scale their low-dimensional input the same way
(:class:`agents.normalization.Normalizer`).

Sampling modes (:data:`SAMPLING_MODES`):

* ``stochastic``: x_S ~ N(0, I), eta = 1, std floored at ``min_sampling_std``, noise
  clipped: DPPO's exploration, what RL rollouts sample.
* ``deterministic``: x_S ~ N(0, I), the chain without exploration noise, DPPO's
  evaluation: with DDPM sampling (S = K) each step keeps the chain's own posterior
  std (eta = 1) without the ``min_sampling_std`` floor (DPPO: floored at 1e-4 only,
  0 at the last step); with DDIM sampling (S < K) eta = 0.
* ``zero-init``: x_S = 0, eta = 0: the chunk is a function of the observation
  alone. Useful for exact comparisons; not the policy RL trains, so never the
  headline figure (a BC policy can be 95% here and 10% stochastic).

Shape legend:
    B: batch size
    K: DDPM denoising steps of the training schedule
    S: DDIM sampling steps (S = K: DDPM), i indexes them from the noisiest (0) to the last (S-1)
    K': fine-tuned denoising steps (the last K' of the S)
    Ta: action chunk length (``horizon_steps``), Da: action dimension (7)
    F: observation feature size
"""

from __future__ import annotations

import copy
import math
from typing import Literal

import numpy as np
import torch
from gymnasium import spaces
from torch import nn

from agents.agent_configs import DiffusionPolicyConfig
from agents.encoders import make_encoder, mlp
from agents.normalization import Normalizer
from libero_gym.spaces import ACTION_DIM

COSINE_S = 0.008
"""Offset of the cosine schedule (Nichol & Dhariwal 2021, also DPPO's)."""
MAX_BETA = 0.999
"""Clip on the cosine schedule's betas, which blow up at t = K (Nichol & Dhariwal 2021)."""
DETERMINISTIC_MIN_STD = 1e-4
"""Floor on the posterior std in deterministic DDPM sampling (DPPO's ``forward(deterministic=True)``: 1e-4)."""
SamplingMode = Literal["stochastic", "deterministic", "zero-init"]
SAMPLING_MODES: tuple[str, ...] = ("stochastic", "deterministic", "zero-init")
"""How :meth:`DiffusionPolicy.sample` draws a chunk (module docstring)."""


def cosine_alphas_cumprod(denoising_steps: int) -> torch.Tensor:
    """alpha_bar_t of the cosine schedule for t = 0..K-1, as float64 [K]."""
    steps = torch.arange(denoising_steps + 1, dtype=torch.float64) / denoising_steps
    f = torch.cos((steps + COSINE_S) / (1 + COSINE_S) * math.pi / 2) ** 2
    betas = (1 - f[1:] / f[:-1]).clamp(0.0, MAX_BETA)
    return torch.cumprod(1 - betas, dim=0)


def _step_coefficients(alpha: torch.Tensor, alpha_prev: torch.Tensor, sigma: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per-step coefficients [S] of :meth:`DiffusionPolicy._step_mean_std`, for eta = 0 and eta = 1."""
    coefficients = {
        "sqrt_alpha": alpha.sqrt(),
        "sqrt_one_minus_alpha": (1 - alpha).sqrt(),
        "sqrt_alpha_prev": alpha_prev.sqrt(),
    }
    for eta in (0, 1):
        std = float(eta) * sigma
        coefficients[f"std_eta{eta}"] = std
        coefficients[f"direction_eta{eta}"] = (1 - alpha_prev - std**2).clamp(min=0).sqrt()
    return coefficients


class SinusoidalEmbedding(nn.Module):
    """Transformer-style embedding of the integer denoising step: [N] -> [N, dim]."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        half = dim // 2
        self.register_buffer("freqs", torch.exp(-math.log(10000.0) * torch.arange(half) / (half - 1)), persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = t.float()[:, None] * self.freqs[None]
        return torch.cat([angles.sin(), angles.cos()], dim=-1)


class NoisePredictionNet(nn.Module):
    """epsilon_theta(x_t, t, obs): observation encoder + step embedding + residual MLP (DPPO's DiffusionMLP)."""

    def __init__(self, observation_space: spaces.Dict, config: DiffusionPolicyConfig) -> None:
        super().__init__()
        self.encoder = make_encoder(observation_space, config.encoder)
        self.time_embedding = nn.Sequential(
            SinusoidalEmbedding(config.time_dim), nn.Linear(config.time_dim, 2 * config.time_dim), nn.Mish(),
            nn.Linear(2 * config.time_dim, config.time_dim),
        )  # fmt: skip
        chunk_dim = config.horizon_steps * ACTION_DIM
        width = config.mlp_dims[0]
        self.input = mlp(chunk_dim + config.time_dim + self.encoder.output_dim, (width,))
        self.blocks = nn.ModuleList(mlp(width, (dim, width)) for dim in config.mlp_dims[1:])
        self.output = nn.Linear(width, chunk_dim)

    def encode(self, observation: dict[str, torch.Tensor]) -> torch.Tensor:
        """Observation features [B, F], computed once per chunk and reused by every denoising step."""
        return self.encoder(observation)

    def forward(self, x: torch.Tensor, t: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Predicted noise [N, Ta, Da] for noisy chunks x [N, Ta, Da] at DDPM steps t [N] given features [N, F]."""
        h = self.input(torch.cat([x.flatten(1), self.time_embedding(t), features], dim=-1))
        for block in self.blocks:
            h = h + block(h)
        return self.output(h).view_as(x)


class DiffusionPolicy(nn.Module):
    """Diffusion policy over action chunks with a frozen pre-trained and a fine-tuned noise network.

    Attributes:
        actor: the behaviour-cloned network; trained by :meth:`bc_loss`, runs the first S - K' steps.
        actor_ft: the copy PPO trains; runs the last K' steps. :meth:`sync_finetuned` resets it to ``actor``.
    """

    def __init__(self, observation_space: spaces.Dict, config: DiffusionPolicyConfig) -> None:
        super().__init__()
        self.config = config
        self.actor = NoisePredictionNet(observation_space, config)
        self.actor_ft = copy.deepcopy(self.actor)
        self.action_normalizer = Normalizer(ACTION_DIM)
        # DDIM sub-schedule, noisiest first: DDPM steps t_i and alpha_bar at t_i and at the next step.
        alphas_cumprod = cosine_alphas_cumprod(config.denoising_steps)
        ddim_t = torch.arange(config.ddim_steps - 1, -1, -1) * (config.denoising_steps // config.ddim_steps)
        alpha = alphas_cumprod[ddim_t]
        alpha_prev = torch.cat([alphas_cumprod[ddim_t[1:]], torch.ones(1, dtype=torch.float64)])
        # Std of the eta = 1 step, which equals DDPM's posterior std (DDIM paper, eq. 16).
        sigma = ((1 - alpha_prev) / (1 - alpha) * (1 - alpha / alpha_prev)).sqrt()
        for name, value in [("alphas_cumprod", alphas_cumprod), ("ddim_t", ddim_t), ("alpha", alpha), ("alpha_prev", alpha_prev), ("sigma", sigma)]:
            self.register_buffer(name, value if name == "ddim_t" else value.float(), persistent=False)
        # The coefficients of _step_mean_std per sampling step [S], for sample(): the same float32 operations
        # on the same values (square roots, products and differences are correctly rounded, so sample's chains are
        # bitwise those of _step_mean_std; tests/agents/test_diffusion_policy.py), computed once instead of at
        # every step of every chunk.
        for name, value in _step_coefficients(self.alpha, self.alpha_prev, self.sigma).items():
            self.register_buffer(name, value, persistent=False)

    @property
    def chunk_shape(self) -> tuple[int, int]:
        """(Ta, Da)."""
        return self.config.horizon_steps, ACTION_DIM

    @property
    def first_ft_step(self) -> int:
        """Index i of the first fine-tuned DDIM step, S - K'."""
        return self.config.ddim_steps - self.config.ft_denoising_steps

    def sync_finetuned(self) -> None:
        """Copy the pre-trained network into the fine-tuned one (after behaviour cloning)."""
        self.actor_ft.load_state_dict(self.actor.state_dict())

    def fit_normalization(self, observations: dict[str, np.ndarray], actions: np.ndarray) -> None:
        """Fit the observation scaling of both networks and the action scaling on demonstrations.

        Args:
            observations: key -> [N, ...] numpy observations (``proprio``, ``object``...).
            actions: [N, ..., Da] demonstrated actions in the env's units.
        """
        for net in (self.actor, self.actor_ft):
            net.encoder.fit_normalizer(observations)
        self.action_normalizer.fit(actions)

    # ---------- behaviour cloning ----------

    def bc_loss(self, observation: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """Denoising loss of ``actor`` on demonstrated chunks (DDPM's simple loss).

        Args:
            observation: a batch of B observations (tensors).
            actions: demonstrated chunks [B, Ta, Da] in the env's units; normalised, then
                clamped to [-1, 1].

        Returns:
            Scalar mean squared error between the true and predicted noise (or clean chunk).
        """
        x0 = self.action_normalizer.normalize(actions.float()).clamp(-1.0, 1.0)
        t = torch.randint(0, self.config.denoising_steps, (x0.shape[0],), device=x0.device)
        noise = torch.randn_like(x0)
        alpha_bar = self.alphas_cumprod[t][:, None, None]
        x_t = alpha_bar.sqrt() * x0 + (1 - alpha_bar).sqrt() * noise
        target = noise if self.config.predict_epsilon else x0
        return (self.actor(x_t, t, self.actor.encode(observation)) - target).pow(2).mean()

    # ---------- one denoising step ----------

    def _predict_x0(self, net: NoisePredictionNet, x: torch.Tensor, i: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """The clean chunk [N, Ta, Da] (normalised, clamped to denoised_clip) that ``net`` predicts from x_i at DDIM steps i [N]."""
        alpha = self.alpha[i][:, None, None]
        prediction = net(x, self.ddim_t[i], features)
        x0 = (x - (1 - alpha).sqrt() * prediction) / alpha.sqrt() if self.config.predict_epsilon else prediction
        return x0.clamp(-self.config.denoised_clip, self.config.denoised_clip)

    def _step_mean_std(
        self, net: NoisePredictionNet, x: torch.Tensor, i: torch.Tensor, features: torch.Tensor, eta: float
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean [N, Ta, Da] and std [N, 1, 1] of p(x_{i+1} | x_i) for DDIM steps i [N] (before any floor)."""
        alpha, alpha_prev = self.alpha[i][:, None, None], self.alpha_prev[i][:, None, None]
        x0 = self._predict_x0(net, x, i, features)
        eps = (x - alpha.sqrt() * x0) / (1 - alpha).sqrt()  # consistent with the clamped x0
        std = eta * self.sigma[i][:, None, None]
        mean = alpha_prev.sqrt() * x0 + (1 - alpha_prev - std**2).clamp(min=0).sqrt() * eps
        return mean, std

    # ---------- sampling ----------

    @torch.no_grad()
    def sample(
        self, observation: dict[str, torch.Tensor], deterministic: bool = False, *, mode: SamplingMode | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Denoise one action chunk per observation.

        Args:
            observation: a batch of B observations (tensors).
            deterministic: SB3's flag: ``deterministic`` mode if True, else ``stochastic``.
            mode: one of :data:`SAMPLING_MODES` (module docstring); overrides ``deterministic``.

        Returns:
            actions [B, Ta, Da] in the env's units, clamped to [-1, 1], and the chain
            [B, K'+1, Ta, Da] in normalised space: the chunk entering the first
            fine-tuned step, then each step's output (unclamped).
        """
        mode = mode or ("deterministic" if deterministic else "stochastic")
        if mode not in SAMPLING_MODES:
            raise ValueError(f"mode must be one of {list(SAMPLING_MODES)}, got {mode!r}")
        batch = observation["proprio"].shape[0]
        device = self.alpha.device
        x = torch.zeros if mode == "zero-init" else torch.randn
        x = x((batch, *self.chunk_shape), device=device)
        explore = mode == "stochastic"
        ddpm = self.config.ddim_steps == self.config.denoising_steps
        # DPPO's deterministic DDPM keeps the posterior noise (min std 1e-4); deterministic DDIM and zero-init: eta 0.
        eta = 1.0 if explore or (mode == "deterministic" and ddpm) else 0.0
        min_std = self.config.min_sampling_std if explore else DETERMINISTIC_MIN_STD
        base_features = self.actor.encode(observation) if self.first_ft_step > 0 else None
        ft_features = self.actor_ft.encode(observation)
        # _step_mean_std's coefficients at step i, precomputed (0-d tensors broadcast as its [N, 1, 1] ones do).
        direction, stds = (self.direction_eta1, self.std_eta1) if eta == 1.0 else (self.direction_eta0, self.std_eta0)
        floored_stds = stds.clamp(min=min_std)
        clip = self.config.denoised_clip
        chain = []
        for i in range(self.config.ddim_steps):
            finetuned = i >= self.first_ft_step
            if i == self.first_ft_step:
                chain.append(x)
            net, features = (self.actor_ft, ft_features) if finetuned else (self.actor, base_features)
            index = torch.full((batch,), i, device=device, dtype=torch.long)
            prediction = net(x, self.ddim_t[index], features)  # type: ignore[arg-type]
            sqrt_alpha, sqrt_one_minus_alpha = self.sqrt_alpha[i], self.sqrt_one_minus_alpha[i]
            if self.config.predict_epsilon:
                x0 = (x - sqrt_one_minus_alpha * prediction) / sqrt_alpha
            else:
                x0 = prediction
            x0 = x0.clamp(-clip, clip)
            eps = (x - sqrt_alpha * x0) / sqrt_one_minus_alpha
            mean = self.sqrt_alpha_prev[i] * x0 + direction[i] * eps
            if eta == 0.0:
                x = mean
            else:
                noise = torch.randn_like(x).clamp(-self.config.randn_clip, self.config.randn_clip)
                last = i == self.config.ddim_steps - 1  # the posterior std is 0 there; DPPO adds no floor
                x = mean if (last and not explore) else mean + floored_stds[i] * noise
            if finetuned:
                chain.append(x)
        actions = self.action_normalizer.unnormalize(x.clamp(-1.0, 1.0)).clamp(-1.0, 1.0)
        return actions, torch.stack(chain, dim=1)

    # ---------- likelihoods of the fine-tuned steps ----------

    def chain_distribution(self, observation: dict[str, torch.Tensor], chain: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Mean and std [B, K', Ta, Da] of each fine-tuned transition, under ``actor_ft`` with eta = 1.

        The std is floored at ``min_logprob_std``. Gradients flow into ``actor_ft``.

        Args:
            observation: the B observations the chains were sampled for.
            chain: [B, K'+1, Ta, Da] from :meth:`sample`.
        """
        x_prev, index, features = self._finetuned_inputs(observation, chain)
        mean, std = self._step_mean_std(self.actor_ft, x_prev, index, features, eta=1.0)
        std = std.clamp(min=self.config.min_logprob_std).expand_as(mean)
        shape = (chain.shape[0], self.config.ft_denoising_steps, *self.chunk_shape)
        return mean.reshape(shape), std.reshape(shape)

    def _finetuned_inputs(
        self, observation: dict[str, torch.Tensor], chain: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Every fine-tuned step of B chains as one batch: inputs x_i [B*K', Ta, Da], step indices i [B*K'],
        ``actor_ft`` features [B*K', F]."""
        batch, n_ft = chain.shape[0], self.config.ft_denoising_steps
        features = self.actor_ft.encode(observation).repeat_interleave(n_ft, dim=0)
        index = torch.arange(self.first_ft_step, self.config.ddim_steps, device=chain.device).repeat(batch)
        return chain[:, :-1].reshape(batch * n_ft, *self.chunk_shape), index, features

    def predicted_chunks(self, observation: dict[str, torch.Tensor], chain: torch.Tensor) -> torch.Tensor:
        """The clean chunk each fine-tuned step predicts from its input, in the env's units.

        What the chain is heading for at every fine-tuned step (the last step's prediction is
        the chunk the deterministic modes execute); gradients flow into ``actor_ft``.

        Args:
            observation: the B observations the chains were sampled for.
            chain: [B, K'+1, Ta, Da] from :meth:`sample`.

        Returns:
            [B, K', Ta, Da] predicted chunks, unnormalised (not clamped to the action bounds).
        """
        x0 = self._predict_x0(self.actor_ft, *self._finetuned_inputs(observation, chain))
        return self.action_normalizer.unnormalize(x0.reshape(chain.shape[0], self.config.ft_denoising_steps, *self.chunk_shape))

    def log_prob_chain(self, observation: dict[str, torch.Tensor], chain: torch.Tensor) -> torch.Tensor:
        """Log-probability of each fine-tuned denoising transition, per action dimension.

        The exact Gaussian log-density of x_{i+1} given x_i, per element, clamped to
        [logprob_min, logprob_max] and averaged over the Ta x Da elements, as DPPO
        does: the PPO ratio is then a per-dimension geometric mean, so one clip range
        fits chunks of any size.

        Args:
            observation: the B observations the chains were sampled for.
            chain: [B, K'+1, Ta, Da] from :meth:`sample`.

        Returns:
            [B, K'] log-probabilities, in chain order (noisiest fine-tuned step first).
        """
        mean, std = self.chain_distribution(observation, chain)
        z = (chain[:, 1:] - mean) / std
        log_prob = -0.5 * z.pow(2) - std.log() - 0.5 * math.log(2 * math.pi)
        return log_prob.clamp(self.config.logprob_min, self.config.logprob_max).mean(dim=(-2, -1))

    def extra_repr(self) -> str:
        c = self.config
        return f"Ta={c.horizon_steps}, K={c.denoising_steps}, S={c.ddim_steps}, K'={c.ft_denoising_steps}"
