"""The agents' hyper-parameters: frozen config dataclasses, light at import (no torch).

``cli.py train --agent NAME`` builds each registered agent's config from these
(``train --agent diffusion-ppo --agent.policy.horizon-steps 8``), so every field's
docstring below is its ``--help`` text; the algorithms (:mod:`agents.gaussian_ppo`,
:mod:`agents.diffusion_ppo`, :mod:`agents.diffusion_policy`, :mod:`agents.encoders`)
import them from here. Both agents are PPO: :func:`check_ppo_fields` validates what
they share (rollout length, minibatch, epochs, discount, GAE lambda, clip).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

Sampling = Literal["deterministic", "stochastic", "zero-init"]
SAMPLINGS: tuple[str, ...] = ("deterministic", "stochastic", "zero-init")
"""How a trained agent acts (``eval --sampling``, ``collect --sampling``): its evaluation action, its
training-rollout sampling, or (diffusion-ppo) the x_T = 0 path."""


def agent_samplings(agent: Any) -> tuple[str, ...]:
    """The sampling modes an agent class or instance acts in: its ``samplings`` attribute if it has one
    (``DiffusionPPO``: all of :data:`SAMPLINGS`), else SB3's ``predict(deterministic=...)`` two."""
    return tuple(getattr(agent, "samplings", SAMPLINGS[:2]))


def check_agent_sampling(agent: Any, sampling: str, name: str) -> None:
    """Refuse a sampling mode the agent (class or instance, registered as ``name``) cannot act in.

    Raises:
        InvalidInputError: ``sampling`` is not among :func:`agent_samplings` of ``agent``.
    """
    modes = agent_samplings(agent)
    if sampling not in modes:
        from libero_gym.errors import InvalidInputError

        needs = "a diffusion agent" if sampling == "zero-init" else "an agent that has it"
        raise InvalidInputError(f"sampling {sampling!r} needs {needs}; {name} acts in {list(modes)}")


def check_ppo_fields(config: Any, rollout_field: str) -> None:
    """Validate the PPO fields every agent config has.

    Args:
        config: a config with ``batch_size``, ``n_epochs``, ``gamma``, ``gae_lambda``, ``clip_range``.
        rollout_field: its rollout length field (``n_steps`` env steps, ``n_chunks`` chunks).

    Raises:
        ValueError: a value no PPO update can use.
    """
    sizes = {name: getattr(config, name) for name in (rollout_field, "batch_size", "n_epochs")}
    if min(sizes.values()) < 1:
        raise ValueError(f"{', '.join(sizes)} must be >= 1, got {', '.join(str(v) for v in sizes.values())}")
    if not 0 < config.gamma <= 1 or not 0 <= config.gae_lambda <= 1:
        raise ValueError(f"gamma must be in (0, 1] and gae_lambda in [0, 1], got {config.gamma}, {config.gae_lambda}")
    if config.clip_range <= 0:
        raise ValueError(f"clip_range must be > 0, got {config.clip_range}")


@dataclass(frozen=True)
class EncoderConfig:
    """Sizes of the observation encoders."""

    state_dims: tuple[int, ...] = (256, 256)
    """Hidden sizes of the state MLP; its last entry is the feature size F in state mode."""
    image_channels: tuple[int, ...] = (16, 32, 64)
    """Channels of the stem and the residual stages (each halves H and W); small enough for CPU at 128x128."""
    image_feature_dim: int = 64
    """Features per camera after the spatial softmax and a linear layer."""
    groups: int = 8
    """GroupNorm groups in the residual blocks (Wu & He 2018's default is 32; our stages are narrow)."""
    velocities: bool = False
    """Feed proprio's joint and finger velocities to the network. Off by default: the scripted expert's
    jerk-limited actions make velocity a stand-in for its last action, and a policy cloned from them copies
    its own momentum instead of doing the task."""

    def __post_init__(self) -> None:
        for name in ("state_dims", "image_channels"):  # JSON gives lists
            object.__setattr__(self, name, tuple(getattr(self, name)))
        if not self.state_dims or min(self.state_dims) < 1:
            raise ValueError(f"state_dims must be non-empty positive sizes, got {self.state_dims}")
        if not self.image_channels or any(c % self.groups for c in self.image_channels):
            raise ValueError(f"image_channels must be multiples of groups={self.groups}, got {self.image_channels}")


@dataclass(frozen=True)
class DiffusionPolicyConfig:
    """The diffusion policy: chunking, denoising schedule, exploration noise, network sizes.

    Defaults are DPPO's state-based robomimic settings (cfg/robomimic/finetune/*/
    ft_ppo_diffusion_mlp.yaml): Ta = 4, K = 20 DDPM steps, the last 10 fine-tuned.
    """

    horizon_steps: int = 4
    """Ta, actions per chunk; all of them are executed before re-planning (DPPO: 4)."""
    denoising_steps: int = 20
    """K, steps of the DDPM cosine schedule used for training (DPPO: 20)."""
    ddim_steps: int = 20
    """S, DDIM sampling steps over the K-step schedule; must divide K. S = K is DDPM (DPPO state: DDPM 20; pixels: DDIM 5)."""
    ft_denoising_steps: int = 10
    """K', the last denoising steps run by the fine-tuned copy and trained by RL (DPPO: 10 of 20)."""
    predict_epsilon: bool = True
    """The network predicts the noise (DDPM; DPPO's default) or, if False, the clean chunk x0 directly."""
    min_sampling_std: float = 0.1
    """Floor on each denoising step's std while exploring (DPPO: min_sampling_denoising_std 0.1)."""
    min_logprob_std: float = 0.1
    """Floor on the std used in log-probabilities, for stable ratios (DPPO: min_logprob_denoising_std 0.1)."""
    randn_clip: float = 3.0
    """Exploration noise is clipped to this many standard deviations (DPPO: randn_clip_value 3)."""
    denoised_clip: float = 1.0
    """Predicted clean chunks are clamped to [-c, c], the action range (DPPO: denoised_clip_value 1)."""
    logprob_min: float = -5.0
    """Lower clamp on per-dimension log-probabilities (DPPO's PPODiffusion.loss: -5)."""
    logprob_max: float = 2.0
    """Upper clamp on per-dimension log-probabilities (DPPO's PPODiffusion.loss: 2)."""
    time_dim: int = 16
    """Size of the sinusoidal denoising-step embedding (DPPO's DiffusionMLP: 16)."""
    mlp_dims: tuple[int, ...] = (256, 256, 256)
    """Hidden sizes of the noise-prediction MLP (DPPO: 512 x 3; halved for CPU)."""
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """Observation encoder of the noise-prediction network (state MLP or FiLM-ResNet)."""

    def __post_init__(self) -> None:
        if isinstance(self.encoder, dict):  # rebuilt from JSON
            object.__setattr__(self, "encoder", EncoderConfig(**self.encoder))
        object.__setattr__(self, "mlp_dims", tuple(self.mlp_dims))  # JSON gives lists
        if self.horizon_steps < 1 or self.denoising_steps < 1:
            raise ValueError(f"horizon_steps and denoising_steps must be >= 1, got {self.horizon_steps}, {self.denoising_steps}")
        if not 1 <= self.ddim_steps <= self.denoising_steps or self.denoising_steps % self.ddim_steps:
            raise ValueError(f"ddim_steps must divide denoising_steps={self.denoising_steps}, got {self.ddim_steps}")
        if not 1 <= self.ft_denoising_steps <= self.ddim_steps:
            raise ValueError(f"ft_denoising_steps must be in [1, ddim_steps={self.ddim_steps}], got {self.ft_denoising_steps}")
        if self.min_sampling_std <= 0 or self.min_logprob_std <= 0 or self.randn_clip <= 0:
            raise ValueError("min_sampling_std, min_logprob_std and randn_clip must be > 0")


@dataclass(frozen=True)
class GaussianPPOConfig:
    """PPO with a diagonal-Gaussian policy (SB3 ``PPO`` + ``MultiInputPolicy``).

    Defaults are SB3's ``PPO`` defaults (the same as cleanrl's ``ppo_continuous_action.py``)
    except where a field says otherwise.
    """

    learning_rate: float = 3e-4
    """Adam learning rate (SB3/cleanrl default)."""
    n_steps: int = 256
    """Env steps per env per rollout. SB3's 2048 assumes one env; 256 x 8 envs = 2048 per update."""
    batch_size: int = 64
    """Minibatch size (SB3 default)."""
    n_epochs: int = 10
    """Optimisation epochs per rollout (SB3/cleanrl default)."""
    gamma: float = 0.99
    """Discount (SB3/cleanrl default)."""
    gae_lambda: float = 0.95
    """GAE lambda (SB3/cleanrl default)."""
    clip_range: float = 0.2
    """PPO ratio clip (SB3/cleanrl default)."""
    ent_coef: float = 0.0
    """Entropy bonus weight (SB3/cleanrl default)."""
    vf_coef: float = 0.5
    """Value loss weight (SB3/cleanrl default)."""
    max_grad_norm: float = 0.5
    """Gradient clipping norm (SB3/cleanrl default)."""
    target_kl: float | None = None
    """Stop the epoch loop early above this approx-KL (SB3 default: off)."""
    net_arch: tuple[int, ...] = (256, 256)
    """Hidden sizes of the policy and value MLPs. SB3's (64, 64) is for MuJoCo locomotion;
    rl-zoo uses (256, 256) for robot-arm tasks (robosuite/panda-gym)."""
    log_std_init: float = math.log(0.1)
    """Initial log std of the Gaussian, in normalised action units (DPPO's Gaussian baseline: fixed_std 0.1;
    SB3's default 0 (std 1) is for PPO from scratch)."""
    min_std: float = 0.01
    """Lower clamp on the learned std (DPPO's Gaussian fine-tuning: std_min 0.01)."""
    max_std: float = 0.2
    """Upper clamp on the learned std (DPPO's Gaussian fine-tuning: std_max 0.2); raise it for RL from scratch."""

    def __post_init__(self) -> None:
        check_ppo_fields(self, "n_steps")
        if not 0 < self.min_std <= self.max_std:
            raise ValueError(f"std clamps must satisfy 0 < min_std <= max_std, got {self.min_std}, {self.max_std}")
        if not self.net_arch or any(int(n) < 1 for n in self.net_arch):
            raise ValueError(f"net_arch must be a non-empty tuple of positive ints, got {self.net_arch}")
        object.__setattr__(self, "net_arch", tuple(int(n) for n in self.net_arch))


@dataclass(frozen=True)
class DiffusionPPOConfig:
    """DPPO hyper-parameters.

    Defaults are DPPO's state-based robomimic fine-tuning config
    (cfg/robomimic/finetune/can/ft_ppo_diffusion_mlp.yaml) unless a field says otherwise.
    """

    policy: DiffusionPolicyConfig = field(default_factory=DiffusionPolicyConfig)
    """The diffusion policy (chunk length, denoising steps, exploration noise, network)."""
    n_chunks: int = 100
    """Action chunks per env per rollout: one LIBERO episode (220-520 steps) per env at Ta = 4.
    DPPO: 300 chunks x 50 envs."""
    batch_size: int = 7500
    """Chunks per minibatch (DPPO: 7500, half of its 15000-chunk rollout)."""
    n_epochs: int = 10
    """Passes over each rollout (DPPO: update_epochs 10)."""
    gamma: float = 0.999
    """Discount per env step; a chunk of Ta steps is discounted by gamma ** Ta (DPPO: 0.999 per chunk)."""
    gae_lambda: float = 0.95
    """GAE lambda over chunks (DPPO: 0.95)."""
    gamma_denoising: float = 0.99
    """Discount along the denoising chain: step j of K' gets gamma_denoising ** (K'-1-j) (DPPO: 0.99)."""
    clip_range: float = 0.01
    """PPO clip at the last (cleanest) denoising step (DPPO: clip_ploss_coef 0.01)."""
    clip_range_base: float = 1e-3
    """PPO clip at the noisiest fine-tuned step (DPPO: clip_ploss_coef_base 1e-3)."""
    clip_range_rate: float = 3.0
    """Exponential rate of the clip schedule from base to clip_range (DPPO: clip_ploss_coef_rate 3)."""
    clip_range_vf: float | None = None
    """Value clip around the rollout values; None: unclipped (DPPO: clip_vloss_coef None)."""
    actor_lr: float = 3e-5
    """Adam learning rate of the fine-tuned denoiser (DPPO: 1e-4 in its gym configs, 1e-5 on robomimic BC policies).
    On LIBERO-Goal task 0 from BC (2 envs, 200-chunk rollouts), 1e-4 rose and then collapsed twice (to 2-14%
    success at 100k steps); 3e-5 reached 98% deterministic / 90% stochastic (docs/results.md). From scratch,
    1e-3 with 10x the clip ranges learns much faster (tests/agents/test_diffusion_ppo.py::test_learns_on_fake_env)."""
    critic_lr: float = 1e-3
    """Adam learning rate of the value network (DPPO: 1e-3)."""
    target_kl: float | None = 1.0
    """Stop the epochs of an iteration once a minibatch's approx-KL exceeds this (DPPO: target_kl 1)."""
    n_critic_warmup_iterations: int = 10
    """Iterations at the start that train only the critic, so that the first advantages are sensible. DPPO: 2,
    of 50 envs x 300 chunks each; ours see ~75x fewer chunks per iteration. On LIBERO-Goal task 0 from BC (2 envs),
    2 let the rollout success dip from 42% to 25% over the first 30k steps before it rose; 10 did not dip
    (docs/results.md)."""
    max_grad_norm: float | None = 1.0
    """Gradient-norm clip of both networks; None: off (DPPO: off; on here for from-scratch stability)."""
    normalize_advantage: bool = True
    """Standardise advantages per minibatch (DPPO: norm_adv True)."""
    critic_dims: tuple[int, ...] = (256, 256, 256)
    """Hidden sizes of the value MLP (DPPO's CriticObs: 256 x 3, Mish)."""
    critic_encoder: EncoderConfig = field(default_factory=lambda: EncoderConfig(velocities=True))
    """Observation encoder of the value network (its own weights, same kind as the policy's). It sees proprio's
    velocities (the policy does not: it is cloned, the critic is not). On LIBERO-Goal 0 from a 5-demo BC start
    (50% stochastic), 40k steps gave 70% / 70% with them and 0% / 0% without (docs/results.md)."""
    action_rate_penalty: float = 0.0
    """A smoothness term (not in DPPO; 0: off): each chunk's reward loses this times the sum over its executed
    steps of |a_t - a_(t-1)|^2 over the arm dims (0-5, env units), the previous chunk's last action joining it
    within an episode. The rollouts' mean per-step value is logged as rollout/action_rate either way."""
    smoothness_coef: float = 0.0
    """A smoothness loss on the denoiser (not in DPPO; 0: off): the actor's loss gains this times the mean, over
    the rollout's chains and fine-tuned steps, of the clean chunk each step predicts scored by the sum over the
    chunk of |a_(t+1) - a_t|^2 (arm dims 0-5, env units), logged as train/chunk_change. Unlike the action-rate
    penalty it acts on what the policy computes, not on the sampled actions. On LIBERO-Goal 0, 0.01 halved the data's
    jerk at about the same success; 0.1 and 1 broke learning (docs/results.md)."""
    smoothness_joins: bool = False
    """With smoothness_coef: also charge where chunks join, |first arm action - previous chunk's last|^2 between
    the clean chunks the same denoising step predicts for a chunk and for the one before it in the same episode
    (both take the gradient). Off: each chunk is scored alone."""

    def __post_init__(self) -> None:
        if isinstance(self.policy, dict):  # rebuilt from JSON (agent.json)
            object.__setattr__(self, "policy", DiffusionPolicyConfig(**self.policy))
        if isinstance(self.critic_encoder, dict):
            object.__setattr__(self, "critic_encoder", EncoderConfig(**self.critic_encoder))
        object.__setattr__(self, "critic_dims", tuple(self.critic_dims))
        check_ppo_fields(self, "n_chunks")
        if not 0 < self.gamma_denoising <= 1:
            raise ValueError(f"gamma_denoising must be in (0, 1], got {self.gamma_denoising}")
        if not 0 < self.clip_range_base <= self.clip_range:
            raise ValueError(f"clip ranges must satisfy 0 < clip_range_base <= clip_range, got {self.clip_range_base}, {self.clip_range}")
        if self.n_critic_warmup_iterations < 0:
            raise ValueError(f"n_critic_warmup_iterations must be >= 0, got {self.n_critic_warmup_iterations}")
        if not self.action_rate_penalty >= 0:
            raise ValueError(f"action_rate_penalty must be >= 0, got {self.action_rate_penalty}")
        if not self.smoothness_coef >= 0:
            raise ValueError(f"smoothness_coef must be >= 0, got {self.smoothness_coef}")
        if self.smoothness_joins and not self.smoothness_coef:
            raise ValueError("smoothness_joins needs smoothness_coef > 0 (it adds the joins to that loss)")

    @property
    def chunk_size(self) -> int:
        """Ta: ``train`` gives an agent whose config has this property chunk envs (``LiberoEnv(chunk_size=Ta)``)."""
        return self.policy.horizon_steps

    @property
    def chunk_gamma(self) -> float:
        """Discount of one full chunk, gamma ** Ta."""
        return self.gamma**self.policy.horizon_steps




@dataclass(frozen=True)
class SB3AgentConfig:
    """Any Stable-Baselines3 algorithm, built as ``Cls("MultiInputPolicy", env, **kwargs)``.

    The escape hatch for classes without a typed config: their keyword arguments are JSON.
    """

    class_path: str
    """The algorithm as module:Class, a stable_baselines3 BaseAlgorithm subclass (e.g. stable_baselines3:SAC);
    `--agent module:Class` sets it."""
    kwargs: str = ""
    """Its keyword arguments as a JSON object, e.g. '{"learning_starts": 100}' (untyped: SB3's own names)."""
