"""DPPO: PPO over the denoising chain of a chunked diffusion policy, as SB3's ``OnPolicyAlgorithm``.

Diffusion Policy Policy Optimization (Ren et al. 2024, arXiv:2409.00588; reference
code github.com/irom-lab/dppo). Two nested MDPs: the environment, stepped one action
chunk (Ta steps) at a time, and inside each chunk the K' fine-tuned denoising steps,
each a Gaussian with a closed-form log-probability. PPO's ratio is taken per
denoising step; the chunk's GAE advantage is shared by its denoising steps,
discounted by ``gamma_denoising ** (K'-1-j)``; the clip range grows from
``clip_range_base`` at the noisiest step to ``clip_range`` at the last. A value
network on the observation alone is the critic; it trains alone for the first
``n_critic_warmup_iterations``. Read it as a diff of SB3's ``ppo.py`` (and
:mod:`agents.gaussian_ppo`): an ``OnPolicyAlgorithm`` whose ``learn``, ``dump_logs``,
callbacks and logger are SB3's; it overrides ``_setup_model`` (a diffusion policy, a
separate critic (:mod:`agents.critic`) and a chunk rollout buffer), ``collect_rollouts``
(one chunk and its denoising chain per env per step) and ``train`` (one PPO ratio per
denoising step). ``save``/``load`` write and read the one checkpoint format of
:mod:`agents.checkpoint`.

Two kinds of env, told apart by the action space:

* a chunk env (``Box(-1, 1, (Ta, 7))``, ``LiberoEnv(chunk_size=Ta)``, e.g. what
  ``train`` builds for this agent): one ``env.step`` per chunk. The env runs the Ta
  actions without computing the observations in between, stops at success or at its
  step limit, and returns the summed reward and ``info["chunk_steps"]``, the control
  steps that ran; a truncated chunk's reward gets ``gamma ** chunk_steps *
  V(terminal_observation)``. ``num_timesteps`` counts control steps (the sum of
  ``chunk_steps``).
* a per-step env (``Box(-1, 1, (7,))``): the chunk is executed step by step. When an
  env's episode ends inside a chunk, its remaining actions are dropped: the env
  receives :data:`HOLD_ACTION` for the rest of the chunk (its new episode thus starts
  with up to Ta-1 hold steps, counted in its step budget), and the chunk is stored as
  the episode's last, with the value of SB3's ``terminal_observation`` bootstrapped
  into its reward if the episode was truncated.

Shape legend:
    E: number of envs, B: minibatch of chunks
    K': fine-tuned denoising steps, Ta: chunk length, Da: action dimension (7)
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch
import torch.nn.functional as F
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.type_aliases import MaybeCallback
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import VecEnv
from torch import nn

from agents.agent_configs import SAMPLINGS, DiffusionPPOConfig
from agents.buffers import ChunkRolloutBatch, ChunkRolloutBuffer, denoising_discount
from agents.checkpoint import CheckpointSaveLoad
from agents.critic import ValueNetwork
from agents.diffusion_policy import DiffusionPolicy, SamplingMode
from agents.encoders import copy_scaling, obs_as_tensor
from libero_gym.env import SETTLE_ACTION
from libero_gym.errors import InvalidInputError
from libero_gym.spaces import ACTION_DIM

HOLD_ACTION = SETTLE_ACTION.astype(np.float32)
"""Sent to an env for the rest of a chunk after its episode ended inside it: no motion, gripper open."""

SelfDiffusionPPO = TypeVar("SelfDiffusionPPO", bound="DiffusionPPO")


def clip_range_schedule(n_steps: int, base: float, final: float, rate: float) -> torch.Tensor:
    """PPO clip per fine-tuned denoising step [K'], exponential from ``base`` (noisiest) to ``final`` (DPPO)."""
    if n_steps == 1:
        return torch.tensor([final])
    t = torch.linspace(0.0, 1.0, n_steps)
    return base + (final - base) * (torch.exp(rate * t) - 1) / (np.exp(rate) - 1)


class DiffusionPPO(CheckpointSaveLoad, OnPolicyAlgorithm):
    """Diffusion Policy Policy Optimization as SB3's ``OnPolicyAlgorithm``.

    Args:
        env: an SB3 ``VecEnv`` (e.g. :class:`agents.vec_env.SB3VecEnv`) or a gymnasium
            env (SB3 wraps it in ``Monitor`` + ``DummyVecEnv``); libero-gym spaces.
        config: hyper-parameters (defaults: :class:`DiffusionPPOConfig`).
        seed: seeds python, numpy, torch and the env (SB3's ``seed``).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``...
        tensorboard_log: TensorBoard log folder, or ``None``.
        verbose: SB3 verbosity (0 silent, 1 info).
        _init_setup_model: build the networks now.

    Attributes:
        policy: the :class:`DiffusionPolicy` (``policy.actor`` frozen by RL, ``policy.actor_ft`` fine-tuned).
        critic: the :class:`ValueNetwork`.

    Raises:
        InvalidInputError: the action space is neither ``Box(-1, 1, (7,))`` nor the chunk
            ``Box(-1, 1, (Ta, 7))`` with Ta = ``config.policy.horizon_steps``.
    """

    samplings: ClassVar[tuple[str, ...]] = SAMPLINGS
    """How it acts (:func:`agents.agent_configs.agent_samplings`): DPPO's evaluation, its rollouts, the x_T = 0 path."""

    policy: DiffusionPolicy  # type: ignore[assignment]

    def __init__(
        self,
        env: VecEnv | Any,
        config: DiffusionPPOConfig | None = None,
        *,
        seed: int | None = None,
        device: str | torch.device = "auto",
        tensorboard_log: str | None = None,
        verbose: int = 0,
        _init_setup_model: bool = True,
    ) -> None:
        self.config = config if config is not None else DiffusionPPOConfig()
        action_space = env.action_space
        horizon = self.config.policy.horizon_steps
        if not (
            isinstance(action_space, spaces.Box)
            and action_space.shape in ((ACTION_DIM,), (horizon, ACTION_DIM))
            and np.all(action_space.low == -1.0)
            and np.all(action_space.high == 1.0)
        ):
            raise InvalidInputError(
                f"DiffusionPPO needs the action space Box(-1, 1, ({ACTION_DIM},)) or the chunk "
                f"Box(-1, 1, ({horizon}, {ACTION_DIM})) (horizon_steps={horizon}), got {action_space}"
            )
        c = self.config
        super().__init__(
            DiffusionPolicy,  # type: ignore[arg-type]  # SB3 records it as policy_class
            env,
            learning_rate=c.actor_lr,
            n_steps=c.n_chunks,  # a rollout is n_chunks chunks per env
            gamma=c.gamma,
            gae_lambda=c.gae_lambda,
            ent_coef=0.0,  # no entropy bonus (DPPO: ent_coef 0); the denoising noise floor explores
            vf_coef=0.0,  # unused: the critic has its own optimizer (DPPO's critic_lr)
            max_grad_norm=c.max_grad_norm,  # type: ignore[arg-type]
            use_sde=False,
            sde_sample_freq=-1,
            tensorboard_log=tensorboard_log,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=(spaces.Box,),
        )
        self.deterministic_mode: SamplingMode = "deterministic"
        """What ``predict(deterministic=True)`` samples: ``deterministic`` (DPPO's evaluation) or ``zero-init``."""
        self._action_queue: np.ndarray | None = None  # predict(): current chunk per env [E, Ta, Da]
        self._queue_pos: np.ndarray | None = None  # predict(): next action index per env [E]
        self._prev_arm: np.ndarray | None = None  # rollouts: each env's last executed arm action [E, 6]
        if _init_setup_model:
            self._setup_model()

    # ------------------------------------------------------------------ set-up

    def _setup_model(self) -> None:
        self._setup_lr_schedule()
        self.set_random_seed(self.seed)
        c = self.config
        self.policy = DiffusionPolicy(self.observation_space, c.policy).to(self.device)  # type: ignore[arg-type]
        self.critic = ValueNetwork(self.observation_space, c.critic_encoder, c.critic_dims).to(self.device)  # type: ignore[arg-type]
        self.actor_optimizer = torch.optim.Adam(self.policy.actor_ft.parameters(), lr=c.actor_lr)
        self.critic_optimizer = torch.optim.Adam(self.critic.parameters(), lr=c.critic_lr)
        n_ft = c.policy.ft_denoising_steps
        self.rollout_buffer = ChunkRolloutBuffer(
            c.n_chunks, self.n_envs, self.observation_space, (n_ft + 1, *self.policy.chunk_shape), self.device  # type: ignore[arg-type]
        )
        self._clip_ranges = clip_range_schedule(n_ft, c.clip_range_base, c.clip_range, c.clip_range_rate).to(self.device)
        self._denoising_discount = denoising_discount(n_ft, c.gamma_denoising).to(self.device)

    def _get_torch_save_params(self) -> tuple[list[str], list[str]]:
        return ["policy", "critic", "actor_optimizer", "critic_optimizer"], []

    def learn(
        self: SelfDiffusionPPO,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 1,
        tb_log_name: str = "DiffusionPPO",
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfDiffusionPPO:
        """SB3's ``OnPolicyAlgorithm.learn`` (whole rollouts until ``total_timesteps`` env steps), named as SB3's PPO does."""
        return super().learn(total_timesteps, callback, log_interval, tb_log_name, reset_num_timesteps, progress_bar)

    def config_dict(self) -> dict[str, Any]:
        """The config as a JSON-able dict (for ``agent.json``); :meth:`from_config_dict` inverts it."""
        return dataclasses.asdict(self.config)

    @classmethod
    def from_config_dict(cls: type[SelfDiffusionPPO], env: VecEnv | Any, config: dict[str, Any], **kwargs: Any) -> SelfDiffusionPPO:
        """Rebuild an agent from :meth:`config_dict`'s output (``kwargs`` go to the constructor)."""
        return cls(env, DiffusionPPOConfig(**config), **kwargs)

    def load_pretrained_policy(self, state_dict: dict[str, torch.Tensor]) -> None:
        """Start fine-tuning from a behaviour-cloned policy.

        Loads a :class:`DiffusionPolicy` state dict (from ``pretrain``), copies its
        ``actor`` into ``actor_ft``, gives the critic's encoder the policy's observation
        scaling and resets the actor's optimizer.
        """
        self.policy.load_state_dict(state_dict)
        self.policy.sync_finetuned()
        # The critic sees observations scaled as the policy does (its weights start fresh).
        copy_scaling(self.policy.actor.encoder, self.critic.encoder)
        self.actor_optimizer = torch.optim.Adam(self.policy.actor_ft.parameters(), lr=self.config.actor_lr)

    # ------------------------------------------------------------------ behaviour cloning (``pretrain``)

    @property
    def bc_horizon(self) -> int:
        """Ta of the demonstrated chunks :meth:`bc_loss` takes."""
        return self.config.policy.horizon_steps

    def bc_module(self) -> nn.Module:
        """The network behaviour cloning trains (and averages): the pre-trained denoiser ``policy.actor``."""
        return self.policy.actor

    def fit_normalization(self, observations: dict[str, np.ndarray], actions: np.ndarray) -> None:
        """Fit the policy's and the critic's scalings on demonstrations ([N, ...] and [N, ..., Da])."""
        self.policy.fit_normalization(observations, actions)
        self.critic.encoder.fit_normalizer(observations)  # its own inputs (velocities may differ from the actor's)

    def bc_loss(self, observation: dict[str, torch.Tensor], actions: torch.Tensor) -> torch.Tensor:
        """The denoising loss of ``policy.actor`` on demonstrated chunks [B, Ta, Da] (env units)."""
        return self.policy.bc_loss(observation, actions)

    def end_pretraining(self) -> None:
        """RL fine-tunes a copy of the cloned denoiser: copy it into ``actor_ft``."""
        self.policy.sync_finetuned()

    # ------------------------------------------------------------------ rollouts

    @property
    def is_chunked(self) -> bool:
        """True when the agent's env steps whole chunks (action space (Ta, 7))."""
        return len(self.action_space.shape or ()) == 2

    def collect_rollouts(  # type: ignore[override]
        self, env: VecEnv, callback: BaseCallback, rollout_buffer: ChunkRolloutBuffer, n_rollout_steps: int | None = None
    ) -> bool:
        """Fill ``rollout_buffer`` with ``n_chunks`` (= ``n_rollout_steps``) chunks per env; False if a callback
        stopped training. SB3's loop, one chunk and its denoising chain per env per iteration."""
        assert self._last_obs is not None and self._last_episode_starts is not None
        rollout_buffer.reset()
        callback.on_rollout_start()
        self.policy.train(False)
        rate_sums: list[float] = []
        step_counts: list[int] = []
        while not rollout_buffer.full:
            # Plan one chunk per env, with its chain and value [E].
            plan_obs = self._last_obs
            with torch.no_grad():
                obs_tensor = obs_as_tensor(plan_obs, self.device)  # type: ignore[arg-type]
                actions, chain = self.policy.sample(obs_tensor, deterministic=False)
            actions_np = actions.cpu().numpy()  # [E, Ta, Da]
            if self.is_chunked:
                env.step_async(actions_np)  # async workers run the chunks while the critic values the plan
            with torch.no_grad():
                values = self.critic(obs_tensor)
            outcome = self._finish_chunk(env, callback) if self.is_chunked else self._execute_steps(env, callback, actions_np)
            if outcome is None:
                return False
            chunk_rewards, chunk_dones, chunk_steps = outcome
            rates = self._action_rates(actions_np, chunk_steps)  # [E]
            rate_sums.append(rates.sum())
            step_counts.append(chunk_steps.sum())
            if self.config.action_rate_penalty:
                chunk_rewards = chunk_rewards - np.float32(self.config.action_rate_penalty) * rates

            # Store the chunk; the next one starts an episode where this one ended.
            rollout_buffer.add(plan_obs, chain.cpu().numpy(), chunk_rewards, self._last_episode_starts, values.cpu().numpy())  # type: ignore[arg-type]
            self._last_episode_starts = chunk_dones

        with torch.no_grad():
            last_values = self.critic(obs_as_tensor(self._last_obs, self.device)).cpu().numpy()  # type: ignore[arg-type]
        rollout_buffer.compute_returns_and_advantage(last_values, self._last_episode_starts, self.config.chunk_gamma, self.config.gae_lambda)
        self.logger.record("rollout/action_rate", float(np.sum(rate_sums) / max(int(np.sum(step_counts)), 1)))
        callback.update_locals(locals())
        callback.on_rollout_end()
        return True

    def _finish_chunk(self, env: VecEnv, callback: BaseCallback) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The chunk step started by ``env.step_async`` on a chunk env: (rewards [E], dones [E], control steps run
        [E]), or None if stopped."""
        new_obs, rewards, dones, infos = env.step_wait()
        steps = np.array([int(info.get("chunk_steps", 0)) for info in infos])  # 0: a dropped (restarted) slot
        self.num_timesteps += int(steps.sum())
        callback.update_locals(locals())
        if not callback.on_step():
            return None
        self._update_info_buffer(infos, dones)
        chunk_rewards = np.asarray(rewards, dtype=np.float32).copy()
        # Truncated: bootstrap V(final obs), discounted by the control steps the chunk ran.
        truncated = [i for i in np.flatnonzero(dones) if infos[i].get("TimeLimit.truncated", False)]
        if truncated:
            terminal = [infos[i]["terminal_observation"] for i in truncated]
            final_obs = {key: np.stack([obs[key] for obs in terminal]) for key in new_obs}  # type: ignore[index]
            with torch.no_grad():
                final_values = self.critic(obs_as_tensor(final_obs, self.device)).cpu().numpy()
            chunk_rewards[truncated] += self.config.gamma ** steps[truncated] * final_values
        self._last_obs = new_obs  # type: ignore[assignment]
        return chunk_rewards, np.asarray(dones, dtype=bool), steps

    def _execute_steps(
        self, env: VecEnv, callback: BaseCallback, actions_np: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """The chunks [E, Ta, Da] step by step on a per-step env: (rewards [E], dones [E], steps of its own chunk
        each env ran [E]), or None if stopped."""
        n_envs, horizon = env.num_envs, self.config.policy.horizon_steps
        # Execute it step by step; an env whose episode ends stops using its chunk.
        chunk_rewards = np.zeros(n_envs, dtype=np.float32)
        chunk_dones = np.zeros(n_envs, dtype=bool)
        chunk_steps = np.zeros(n_envs, dtype=np.int64)
        for k in range(horizon):
            chunk_steps += ~chunk_dones
            step_actions = np.where(chunk_dones[:, None], HOLD_ACTION, actions_np[:, k])
            new_obs, rewards, dones, infos = env.step(step_actions)
            self.num_timesteps += n_envs
            callback.update_locals(locals())
            if not callback.on_step():
                return None
            ended = dones & ~chunk_dones  # episodes that end in this step of their own chunk
            self._update_info_buffer(infos, ended)
            chunk_rewards += np.where(chunk_dones, 0.0, rewards).astype(np.float32)
            # Truncated: bootstrap V(final obs), discounted from the chunk's start (SB3's PPO does this per step).
            truncated = [i for i in np.flatnonzero(ended) if infos[i].get("TimeLimit.truncated", False)]
            if truncated:
                final_obs = {key: np.stack([infos[i]["terminal_observation"][key] for i in truncated]) for key in new_obs}  # type: ignore[index]
                with torch.no_grad():
                    final_values = self.critic(obs_as_tensor(final_obs, self.device)).cpu().numpy()
                chunk_rewards[truncated] += self.config.gamma ** (k + 1) * final_values
            chunk_dones |= ended
            self._last_obs = new_obs  # type: ignore[assignment]
        return chunk_rewards, chunk_dones, chunk_steps

    def _action_rates(self, actions: np.ndarray, steps: np.ndarray) -> np.ndarray:
        """Sum of |a_t - a_(t-1)|^2 over the arm dims (0-5) of each env's executed chunk steps [E].

        The chunk's first action is compared with the env's previous executed action, except where the chunk
        starts an episode (``_last_episode_starts``, read before it is updated) or none is known yet (the first
        chunk after a (re)start). Env ``i`` ran ``steps[i]`` of its ``Ta`` actions (0: a restarted worker slot).

        Args:
            actions: the planned chunks [E, Ta, Da], env units.
            steps: control steps of them that ran [E].
        """
        arm = actions[..., :6].astype(np.float64)  # [E, Ta, 6]
        n_envs, horizon = arm.shape[:2]
        if self._prev_arm is None or self._prev_arm.shape[0] != n_envs:
            self._prev_arm = np.full((n_envs, 6), np.nan)
        fresh = np.isnan(self._prev_arm).any(axis=1) | np.asarray(self._last_episode_starts, dtype=bool)  # [E]
        previous = np.where(fresh[:, None], arm[:, 0], self._prev_arm)  # [E, 6]: no change at a fresh start
        changes = np.square(np.diff(np.concatenate([previous[:, None], arm], axis=1), axis=1)).sum(axis=2)  # [E, Ta]
        ran = np.arange(horizon)[None, :] < steps[:, None]  # [E, Ta]
        rates = (changes * ran).sum(axis=1)
        last = arm[np.arange(n_envs), np.clip(steps - 1, 0, horizon - 1)]  # [E, 6]
        self._prev_arm = np.where((steps > 0)[:, None], last, self._prev_arm)
        return rates.astype(np.float32)

    # ------------------------------------------------------------------ training

    def train(self) -> None:
        """PPO over the denoising chain on the current rollout (critic only during warm-up)."""
        c = self.config
        update_actor = self._n_updates >= c.n_critic_warmup_iterations
        self.policy.train(True)
        self.critic.train(True)
        buffer = self.rollout_buffer
        policy_losses, value_losses, approx_kls, clip_fractions, ratios, chunk_changes = [], [], [], [], [], []

        # Old log-probs [N*E, K'], on the very minibatches of the first epoch (DPPO computes them
        # after the rollout too): the same inputs through the same kernels make its first ratio exactly 1.
        # The first minibatch's are its own first forward pass below (no update comes before it; with one
        # minibatch per epoch, as at the defaults, this saves a whole pass).
        first_epoch = buffer.minibatch_indices(c.batch_size)
        with torch.no_grad():
            for indices in first_epoch[1:] if update_actor else []:
                batch = buffer.batch(indices)
                buffer.set_log_probs(indices, self.policy.log_prob_chain(batch.observations, batch.chains).cpu().numpy())

        continue_training = True
        for epoch in range(c.n_epochs):
            for n_batch, indices in enumerate(first_epoch if epoch == 0 else buffer.minibatch_indices(c.batch_size)):
                batch = buffer.batch(indices)
                # Critic: regress the GAE returns (optionally clipped around the rollout values, as SB3).
                values = self.critic(batch.observations)  # [B]
                if c.clip_range_vf is not None:
                    values = batch.old_values + (values - batch.old_values).clamp(-c.clip_range_vf, c.clip_range_vf)
                value_loss = 0.5 * F.mse_loss(values, batch.returns)
                self.critic_optimizer.zero_grad()
                value_loss.backward()
                self._clip_grad(self.critic)
                self.critic_optimizer.step()
                value_losses.append(value_loss.item())
                if not update_actor:
                    continue

                # Actor: one PPO ratio per fine-tuned denoising step [B, K'].
                log_probs = self.policy.log_prob_chain(batch.observations, batch.chains)
                old_log_probs = batch.old_log_probs
                if epoch == 0 and n_batch == 0:
                    old_log_probs = log_probs.detach()
                    buffer.set_log_probs(indices, old_log_probs.cpu().numpy())
                log_ratio = log_probs - old_log_probs
                ratio = log_ratio.exp()
                advantages = batch.advantages
                if c.normalize_advantage and len(advantages) > 1:
                    advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
                # The chunk's advantage, discounted along the chain: noisier steps count less.
                advantages = advantages[:, None] * self._denoising_discount  # [B, K']
                clip = self._clip_ranges  # [K'], tight at the noisiest step, clip_range at the last
                policy_loss = torch.max(-advantages * ratio, -advantages * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()

                # Early stop before a step that would move the policy too far (SB3; DPPO's target_kl).
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - log_ratio).mean().item()  # k3 estimator (Schulman's blog)
                    clip_fractions.append(((ratio - 1).abs() > clip).float().mean().item())
                    ratios.append(ratio.mean().item())
                approx_kls.append(approx_kl)
                if c.target_kl is not None and approx_kl > c.target_kl:
                    continue_training = False
                    if self.verbose >= 1:
                        print(f"Early stopping at epoch {epoch} with approx_kl {approx_kl:.3f}")
                    break
                actor_loss = policy_loss
                if c.smoothness_coef:
                    chunk_change = self._chunk_change(batch.observations, batch.chains, self._previous_chunks(indices))
                    chunk_changes.append(chunk_change.item())
                    actor_loss = policy_loss + c.smoothness_coef * chunk_change  # train/policy_gradient_loss stays PPO's
                self.actor_optimizer.zero_grad()
                actor_loss.backward()
                self._clip_grad(self.policy.actor_ft)
                self.actor_optimizer.step()
                policy_losses.append(policy_loss.item())
            if not continue_training:
                break

        # Logs: SB3 PPO's names where the metric is the same (so gaussian-ppo and diffusion-ppo plot together).
        self._n_updates += 1
        self.logger.record("train/value_loss", float(np.mean(value_losses)))
        self.logger.record("train/explained_variance", float(explained_variance(buffer.values.flatten(), buffer.returns.flatten())))
        self.logger.record("train/actor_updated", float(update_actor))
        if ratios:
            self.logger.record("train/policy_gradient_loss", float(np.mean(policy_losses)) if policy_losses else float("nan"))
            self.logger.record("train/approx_kl", float(np.mean(approx_kls)))
            self.logger.record("train/clip_fraction", float(np.mean(clip_fractions)))
            self.logger.record("train/ratio_mean", float(np.mean(ratios)))
        if chunk_changes:
            self.logger.record("train/chunk_change", float(np.mean(chunk_changes)))
        self.logger.record("train/actor_lr", self.config.actor_lr)
        self.logger.record("train/critic_lr", self.config.critic_lr)
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")

    def _previous_chunks(self, indices: np.ndarray) -> tuple[ChunkRolloutBatch, torch.Tensor] | None:
        """For the smoothness loss's joins: the chunks before those at ``indices`` and where they go in the
        minibatch [M]; None when joins are not charged."""
        if not self.config.smoothness_joins:
            return None
        previous, positions = self.rollout_buffer.previous(indices)
        return self.rollout_buffer.batch(previous), torch.as_tensor(positions, device=self.device)

    def _chunk_change(
        self,
        observations: dict[str, torch.Tensor],
        chains: torch.Tensor,
        previous: tuple[ChunkRolloutBatch, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """The smoothness loss: mean over chains and fine-tuned steps of sum_t |a_(t+1) - a_t|^2 (arm dims) of the
        predicted clean chunks [B, K', Ta, Da]; with ``previous`` (the M chunks before some of them and their
        positions [M]), plus |a_0 - previous a_(Ta-1)|^2 at those joins, both predicted by the same step."""
        arm = self.policy.predicted_chunks(observations, chains)[..., :6]  # [B, K', Ta, 6], env units
        change = (arm[..., 1:, :] - arm[..., :-1, :]).pow(2).sum(dim=(-2, -1))  # [B, K']
        if previous is not None and len(previous[1]):
            before, positions = previous
            last = self.policy.predicted_chunks(before.observations, before.chains)[..., -1, :6]  # [M, K', 6]
            join = (arm[positions, :, 0, :] - last).pow(2).sum(dim=-1)  # [M, K']
            change = change.index_add(0, positions, join)
        return change.mean()

    def _clip_grad(self, module: nn.Module) -> None:
        if self.config.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(module.parameters(), self.config.max_grad_norm)

    # ------------------------------------------------------------------ acting

    def predict_chunk(
        self, observation: dict[str, np.ndarray], deterministic: bool = False, mode: SamplingMode | None = None
    ) -> np.ndarray:
        """One action chunk per observation: [E, Ta, Da] in [-1, 1].

        ``deterministic`` samples in :attr:`deterministic_mode` (DPPO's evaluation:
        random x_T, eta = 0), else ``stochastic``; ``mode`` names one of
        :data:`~agents.diffusion_policy.SAMPLING_MODES` explicitly.
        """
        self.policy.train(False)
        mode = mode or (self.deterministic_mode if deterministic else "stochastic")
        with torch.no_grad():
            actions, _ = self.policy.sample(obs_as_tensor(observation, self.device), mode=mode)
        return actions.cpu().numpy()

    def predict(
        self,
        observation: np.ndarray | dict[str, np.ndarray],
        state: tuple[np.ndarray, ...] | None = None,
        episode_start: np.ndarray | None = None,
        deterministic: bool = False,
    ) -> tuple[np.ndarray, tuple[np.ndarray, ...] | None]:
        """SB3's ``predict``: an action of the agent's action space per env.

        On a chunk env (action space (Ta, 7)) every call plans a whole chunk
        (:meth:`predict_chunk`). On a per-step env ((7,), also what
        ``agents.checkpoint.load_agent(path)`` without an env builds) one action per env
        comes from a per-env queue of the current chunk: an env re-plans when its chunk
        is used up (every Ta calls) or when ``episode_start`` is True for it; a batch of
        another size starts afresh. Pass ``episode_start`` as SB3's ``evaluate_policy``
        does, or call with one env's observations only between episode starts.

        Args:
            observation: a Dict observation, batched [E, ...] or a single one.
            state: unused (no recurrent state; returned as ``None``).
            episode_start: [E] bools, True where an episode just began.
            deterministic: evaluation sampling (:attr:`deterministic_mode`; see :meth:`DiffusionPolicy.sample`).

        Returns:
            (actions [E, Da], or [E, Ta, Da] on a chunk env, without E for a single observation; None).
        """
        if not isinstance(observation, dict):
            raise InvalidInputError(f"DiffusionPPO.predict needs a libero-gym Dict observation, got {type(observation).__name__}")
        single = np.asarray(observation["proprio"]).ndim == 1
        batch_obs = {key: np.asarray(value)[None] if single else np.asarray(value) for key, value in observation.items()}
        if self.is_chunked:
            chunks = self.predict_chunk(batch_obs, deterministic)
            return (chunks[0] if single else chunks), None
        n_envs = len(batch_obs["proprio"])
        if self._action_queue is None or len(self._action_queue) != n_envs:
            self._action_queue = np.zeros((n_envs, *self.policy.chunk_shape), dtype=np.float32)
            self._queue_pos = np.full(n_envs, self.config.policy.horizon_steps)
        assert self._queue_pos is not None
        replan = self._queue_pos >= self.config.policy.horizon_steps
        if episode_start is not None:
            replan |= np.asarray(episode_start, dtype=bool).reshape(n_envs)
        if replan.any():
            self._action_queue[replan] = self.predict_chunk({k: v[replan] for k, v in batch_obs.items()}, deterministic)
            self._queue_pos[replan] = 0
        actions = self._action_queue[np.arange(n_envs), self._queue_pos]
        self._queue_pos += 1
        return (actions[0] if single else actions), None
