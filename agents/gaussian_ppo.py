"""Gaussian PPO, the baseline: SB3's PPO with a diagonal-Gaussian MLP policy.

Same constructor protocol as :class:`agents.diffusion_ppo.DiffusionPPO`
(``Cls(env, config, *, seed, device, tensorboard_log, verbose)``), so the two run
through the same ``train``/``eval`` commands and checkpoint format and read as a
diff of each other. The policy is SB3's ``MultiInputPolicy``: an MLP on the
concatenated ``proprio``/``object`` vectors and the one-hot ``task_index``; in
``pixels`` mode each camera goes through SB3's NatureCNN first.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from stable_baselines3 import PPO
from stable_baselines3.common.vec_env import VecEnv


@dataclasses.dataclass(frozen=True)
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
    log_std_init: float = 0.0
    """Initial log std of the Gaussian (SB3 default: std 1 on actions in [-1, 1])."""

    def __post_init__(self) -> None:
        if self.n_steps < 1 or self.batch_size < 1 or self.n_epochs < 1:
            raise ValueError(
                f"n_steps, batch_size and n_epochs must be >= 1, got {self.n_steps}, {self.batch_size}, {self.n_epochs}"
            )
        if not 0 < self.gamma <= 1 or not 0 <= self.gae_lambda <= 1:
            raise ValueError(f"gamma must be in (0, 1] and gae_lambda in [0, 1], got {self.gamma}, {self.gae_lambda}")
        if not self.net_arch or any(int(n) < 1 for n in self.net_arch):
            raise ValueError(f"net_arch must be a non-empty tuple of positive ints, got {self.net_arch}")
        object.__setattr__(self, "net_arch", tuple(int(n) for n in self.net_arch))


class GaussianPPO(PPO):
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
            "MultiInputPolicy",
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
            },
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            seed=seed,
            device=device,
            _init_setup_model=_init_setup_model,
        )

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict (for ``agent.json`` and ``config.json``)."""
        return dataclasses.asdict(self.config)
