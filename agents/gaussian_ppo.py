"""Gaussian PPO, the baseline: SB3's PPO with a diagonal-Gaussian MLP policy.

Same constructor protocol as :class:`agents.diffusion_ppo.DiffusionPPO`
(``Cls(env, config, *, seed, device, tensorboard_log, verbose)``), so the two run
through the same ``train``/``eval`` commands and checkpoint format and read as a
diff of each other. The policy is SB3's ``MultiInputPolicy`` with the diffusion
policy's scalings (:mod:`agents.normalization`), so both start from the same
demonstrations on equal terms:

* observations: ``proprio``/``object`` scaled per dimension by the features
  extractor's ``normalizer``, then concatenated with the one-hot ``task_index``
  (in ``pixels`` mode each camera goes through SB3's NatureCNN);
* actions: the Gaussian lives in normalised action space; ``predict`` and the
  training env (:class:`ScaledActionVecEnv`) map its actions back to the env's units
  with the policy's ``action_normalizer``.

Both scalings are identity until fitted (``pretrain --agent gaussian-ppo``), so PPO
from scratch runs on raw observations and the action space's own [-1, 1].

``pretrain`` clones the Gaussian's mean on demonstrated actions (mean squared
error in normalised space: the Gaussian log-likelihood at a fixed std), as DPPO
pre-trains its Gaussian baseline; the std then starts at ``log_std_init`` and is
learned within [``min_std``, ``max_std``] (DPPO's Gaussian fine-tuning: fixed_std
0.1, learned, clamped to [0.01, 0.2]).

Shape legend:
    B: batch size, Da: action dimension (7), Ta: chunk length (1 here)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import torch
from gymnasium import spaces
from stable_baselines3 import PPO
from stable_baselines3.common.distributions import DiagGaussianDistribution
from stable_baselines3.common.policies import MultiInputActorCriticPolicy
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor, NatureCNN
from stable_baselines3.common.vec_env import VecEnv, VecEnvWrapper
from torch import nn
from torch.distributions import Normal

from agents.agent_configs import GaussianPPOConfig
from agents.checkpoint import CheckpointSaveLoad
from agents.encoders import TASK_KEY, low_dim_scaled, low_dim_size, low_dim_vector
from agents.normalization import Normalizer
from libero_gym.env import CAMERAS
from libero_gym.spaces import ACTION_DIM



class NormalizedExtractor(BaseFeaturesExtractor):
    """SB3 features extractor: scaled ``proprio``/``object``, one-hot task, NatureCNN per camera.

    SB3 preprocesses a ``Dict`` observation before the extractor: images to [0, 1]
    floats [B, 3, H, W], the ``Discrete`` task index to a one-hot [B, N].

    Attributes:
        normalizer: per-dimension scaling of ``concat(proprio, object)`` (identity until fitted).
    """

    def __init__(self, observation_space: spaces.Dict, cnn_output_dim: int = 256, velocities: bool = False) -> None:
        cameras = [key for key in CAMERAS if key in observation_space.spaces]
        n_low, n_tasks = low_dim_size(observation_space, velocities), int(observation_space[TASK_KEY].n)
        super().__init__(observation_space, features_dim=n_low + n_tasks + len(cameras) * cnn_output_dim)
        self.normalizer = Normalizer(n_low, bounded=True)
        self.velocities = velocities
        self.cameras = cameras
        self.cnns = nn.ModuleDict({key: NatureCNN(observation_space[key], cnn_output_dim) for key in cameras})

    def forward(self, observations: dict[str, torch.Tensor]) -> torch.Tensor:
        """Features [B, features_dim]."""
        vector = low_dim_scaled(observations, self.normalizer, self.velocities)
        # SB3 gives the task index one-hot already: [B, N].
        parts = [vector, observations[TASK_KEY].float().reshape(len(vector), -1)]
        parts += [self.cnns[key](observations[key]) for key in self.cameras]
        return torch.cat(parts, dim=-1)


class NormalizedGaussianPolicy(MultiInputActorCriticPolicy):
    """SB3's ``MultiInputPolicy`` on :class:`NormalizedExtractor`, acting in normalised action space.

    Args:
        min_std, max_std: clamps of the learned std (see :class:`GaussianPPOConfig`).
        *args, **kwargs: SB3's ``MultiInputActorCriticPolicy`` arguments.

    Attributes:
        action_normalizer: maps the Gaussian's actions back to the env's units.
    """

    def __init__(self, *args: Any, min_std: float = 0.01, max_std: float = 1.0, **kwargs: Any) -> None:
        kwargs.setdefault("features_extractor_class", NormalizedExtractor)
        kwargs.setdefault("share_features_extractor", True)
        super().__init__(*args, **kwargs)
        self.action_normalizer = Normalizer(ACTION_DIM)
        self.log_std_bounds = (math.log(min_std), math.log(max_std))

    def _get_action_dist_from_latent(self, latent_pi: torch.Tensor) -> Any:
        """SB3's ``DiagGaussianDistribution.proba_distribution`` with the clamped std: the same numbers, from a
        ``Normal`` that skips torch's argument and sample checks (~10 extra tensor ops per rollout step and per
        minibatch; a NaN no longer raises here but reaches the env's action check)."""
        assert isinstance(self.action_dist, DiagGaussianDistribution)
        mean = self.action_net(latent_pi)
        action_std = torch.ones_like(mean) * self.log_std.clamp(*self.log_std_bounds).exp()
        self.action_dist.distribution = Normal(mean, action_std, validate_args=False)
        return self.action_dist

    def predict(self, observation: Any, state: Any = None, episode_start: Any = None, deterministic: bool = False) -> Any:
        """SB3's ``predict``, its normalised actions mapped to the env's units and clipped to [-1, 1]."""
        actions, state = super().predict(observation, state, episode_start, deterministic)
        return self.to_env_actions(actions), state

    def to_env_actions(self, actions: np.ndarray) -> np.ndarray:
        """Normalised actions [..., Da] -> env actions in [-1, 1] (float32)."""
        with torch.no_grad():
            scaled = self.action_normalizer.unnormalize(torch.as_tensor(np.asarray(actions, dtype=np.float32)))
        return scaled.clamp(-1.0, 1.0).numpy()

    def action_mean(self, observation: dict[str, torch.Tensor]) -> torch.Tensor:
        """The Gaussian's mean [B, Da] in normalised space (what behaviour cloning fits)."""
        features = self.extract_features(observation, self.pi_features_extractor)
        return self.action_net(self.mlp_extractor.forward_actor(features))


class ScaledActionVecEnv(VecEnvWrapper):
    """The training env as the Gaussian sees it: actions in normalised space, mapped to the env's units.

    Reads the policy's ``action_normalizer`` at every step, so fitting or loading it
    later (``pretrain``, ``--init-from``, ``--resume``) takes effect at once.
    """

    def __init__(self, venv: VecEnv, policy: NormalizedGaussianPolicy) -> None:
        super().__init__(venv)
        self._policy = policy

    def step_async(self, actions: np.ndarray) -> None:
        self.venv.step_async(self._policy.to_env_actions(actions))

    def step_wait(self) -> Any:
        return self.venv.step_wait()

    def reset(self) -> Any:
        return self.venv.reset()


class GaussianPPO(CheckpointSaveLoad, PPO):
    """SB3 PPO built from a :class:`GaussianPPOConfig`.

    Args:
        env: an SB3 ``VecEnv`` (e.g. :class:`agents.vec_env.SB3VecEnv`) or a gymnasium env.
        config: hyper-parameters (defaults: :class:`GaussianPPOConfig`).
        seed: seeds torch, numpy and the action space (SB3's ``seed``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        tensorboard_log: TensorBoard log folder, or ``None``.
        verbose: SB3 verbosity (0 silent, 1 info).
        _init_setup_model: build the networks now (SB3's loading path passes False).
    """

    def __init__(
        self,
        env: VecEnv | Any,
        config: GaussianPPOConfig | None = None,
        *,
        seed: int | None = None,
        device: str = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        self.config = config if config is not None else GaussianPPOConfig()
        c = self.config
        super().__init__(
            NormalizedGaussianPolicy,
            env,
            learning_rate=c.learning_rate,
            n_steps=c.n_steps,
            batch_size=c.batch_size,
            n_epochs=c.n_epochs,
            gamma=c.gamma,
            gae_lambda=c.gae_lambda,
            clip_range=c.clip_range,
            normalize_advantage=True,
            ent_coef=c.ent_coef,
            vf_coef=c.vf_coef,
            max_grad_norm=c.max_grad_norm,
            target_kl=c.target_kl,
            policy_kwargs={
                "net_arch": {"pi": list(c.net_arch), "vf": list(c.net_arch)},
                "log_std_init": c.log_std_init,
                "ortho_init": True,
                "min_std": c.min_std,
                "max_std": c.max_std,
            },
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

        if _init_setup_model:
            self.env = ScaledActionVecEnv(self.env, self.policy) if self.env is not None else None

    def set_env(self, env: Any, force_reset: bool = True) -> None:
        """SB3's ``set_env``, the env wrapped so that it takes normalised actions."""
        super().set_env(env, force_reset)
        self.env = ScaledActionVecEnv(self.env, self.policy)  # type: ignore[arg-type]

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict (for ``agent.json`` and ``config.json``)."""
        return dataclasses.asdict(self.config)

    # ------------------------------------------------------------------ behaviour cloning (``pretrain``)

    bc_horizon = 1
    """Ta of the demonstrated chunks ``bc_loss`` takes: one action per observation."""

    def bc_module(self) -> nn.Module:
        """The parameters behaviour cloning trains (and averages): the policy (its value head gets no gradient)."""
        return self.policy

    def fit_normalization(self, observations: dict[str, np.ndarray], actions: np.ndarray) -> None:
        """Fit the observation and action scalings on demonstrations ([N, ...] and [N, ..., Da])."""
        extractor = self.policy.features_extractor
        assert isinstance(extractor, NormalizedExtractor)
        extractor.normalizer.fit(low_dim_vector(observations, extractor.velocities))
        self.policy.action_normalizer.fit(actions)

    def bc_loss(self, observation: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """Mean squared error of the Gaussian's mean against demonstrated actions [B, 1, Da], normalised."""
        # Images as SB3's VecTransposeImage gives them: [B, 3, H, W].
        obs = {key: value.permute(0, 3, 1, 2) if key in CAMERAS and value.shape[-1] == 3 else value for key, value in observation.items()}
        target = self.policy.action_normalizer.normalize(actions[:, 0].float()).clamp(-1.0, 1.0)
        return (self.policy.action_mean(obs) - target).pow(2).mean()  # type: ignore[arg-type]

    def end_pretraining(self) -> None:
        """Nothing to sync: PPO fine-tunes the cloned policy itself."""
