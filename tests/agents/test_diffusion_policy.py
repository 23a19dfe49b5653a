"""Diffusion policy: per-step likelihoods, sampling, the fine-tuned copy, encoders, behaviour cloning."""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pytest
import torch
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.diffusion_policy import DiffusionPolicy, DiffusionPolicyConfig, cosine_alphas_cumprod
from agents.diffusion_ppo import DiffusionPPO, DiffusionPPOConfig
from agents.encoders import EncoderConfig, obs_as_tensor
from libero_gym.testing import STEP_SCALE, FakeLiberoEnv

SMALL = DiffusionPolicyConfig(
    horizon_steps=4, denoising_steps=10, ddim_steps=5, ft_denoising_steps=3, mlp_dims=(64, 64),
    encoder=EncoderConfig(state_dims=(64,), image_channels=(8, 16), groups=4),
)  # fmt: skip



def _observations(obs_mode: str = "state", n: int = 6, seed: int = 0, **env_kwargs: Any) -> tuple[FakeLiberoEnv, dict[str, np.ndarray]]:
    env = FakeLiberoEnv(obs_mode, **env_kwargs)
    samples = [env.reset(seed=seed + i)[0] for i in range(n)]
    return env, {key: np.stack([np.asarray(s[key]) for s in samples]) for key in samples[0]}


def _normalised_policy(config: Any) -> tuple[DiffusionPolicy, dict[str, torch.Tensor]]:
    """A policy from seed 0 with an action normaliser fitted to fixed data, and a batch of observations."""
    env, obs = _observations()
    torch.manual_seed(0)
    policy = DiffusionPolicy(env.observation_space, config)
    policy.action_normalizer.fit(np.random.default_rng(0).uniform(-0.3, 0.5, (50, 7)))
    return policy, obs_as_tensor(obs, "cpu")


def test_log_probs_equal_torch_normal() -> None:
    torch.manual_seed(0)
    env, obs = _observations()
    policy = DiffusionPolicy(env.observation_space, SMALL)
    obs_t = obs_as_tensor(obs, "cpu")
    _, chain = policy.sample(obs_t)
    mean, std = policy.chain_distribution(obs_t, chain)
    assert mean.shape == std.shape == (6, 3, 4, 7)
    reference = torch.distributions.Normal(mean, std).log_prob(chain[:, 1:])  # [B, K', Ta, Da]
    expected = reference.clamp(SMALL.logprob_min, SMALL.logprob_max).mean(dim=(-2, -1))
    torch.testing.assert_close(policy.log_prob_chain(obs_t, chain), expected, rtol=0, atol=1e-6)
    # Without the clamp, the log-probability is Normal's exactly.
    unclamped = DiffusionPolicy(env.observation_space, dataclasses.replace(SMALL, logprob_min=-1e9, logprob_max=1e9))
    unclamped.load_state_dict(policy.state_dict())
    torch.testing.assert_close(unclamped.log_prob_chain(obs_t, chain), reference.mean(dim=(-2, -1)), rtol=0, atol=1e-6)


def test_eta_one_ddim_is_ddpm_posterior_with_floored_std() -> None:
    """With S = K and eta = 1, each step's std is DDPM's posterior std (floored at min_logprob_std)."""
    config = dataclasses.replace(SMALL, ddim_steps=10, ft_denoising_steps=10)
    env, obs = _observations()
    policy = DiffusionPolicy(env.observation_space, config)
    alpha_bar = cosine_alphas_cumprod(10)
    alpha_bar_prev = torch.cat([torch.ones(1, dtype=torch.float64), alpha_bar[:-1]])
    posterior_std = ((1 - alpha_bar_prev) / (1 - alpha_bar) * (1 - alpha_bar / alpha_bar_prev)).sqrt()  # t = 0..K-1
    torch.testing.assert_close(policy.sigma, posterior_std.flip(0).float())
    obs_t = obs_as_tensor(obs, "cpu")
    _, chain = policy.sample(obs_t)
    _, std = policy.chain_distribution(obs_t, chain)
    expected = posterior_std.flip(0).float().clamp(min=config.min_logprob_std)
    torch.testing.assert_close(std[0, :, 0, 0], expected)


def test_sample_shapes_range_and_chain() -> None:
    torch.manual_seed(1)
    env, obs = _observations()
    policy = DiffusionPolicy(env.observation_space, SMALL)
    actions, chain = policy.sample(obs_as_tensor(obs, "cpu"))
    assert actions.shape == (6, 4, 7) and chain.shape == (6, SMALL.ft_denoising_steps + 1, 4, 7)
    assert actions.abs().max() <= 1.0
    torch.testing.assert_close(actions, chain[:, -1].clamp(-1, 1))


def _sample_with_step_mean_std(
    policy: DiffusionPolicy, obs_t: dict[str, torch.Tensor], mode: str
) -> tuple[torch.Tensor, torch.Tensor]:
    """``DiffusionPolicy.sample`` as it was before its coefficients were precomputed: every step through
    ``_step_mean_std`` with [B] index tensors (the path ``chain_distribution`` still takes)."""
    config = policy.config
    batch = obs_t["proprio"].shape[0]
    x = (torch.zeros if mode == "zero-init" else torch.randn)((batch, *policy.chunk_shape))
    explore = mode == "stochastic"
    eta = 1.0 if explore or (mode == "deterministic" and config.ddim_steps == config.denoising_steps) else 0.0
    min_std = config.min_sampling_std if explore else 1e-4
    base = policy.actor.encode(obs_t) if policy.first_ft_step > 0 else None
    ft = policy.actor_ft.encode(obs_t)
    chain = []
    for i in range(config.ddim_steps):
        finetuned = i >= policy.first_ft_step
        if i == policy.first_ft_step:
            chain.append(x)
        net, features = (policy.actor_ft, ft) if finetuned else (policy.actor, base)
        mean, std = policy._step_mean_std(net, x, torch.full((batch,), i, dtype=torch.long), features, eta)
        if eta == 0.0:
            x = mean
        else:
            noise = torch.randn_like(x).clamp(-config.randn_clip, config.randn_clip)
            last = i == config.ddim_steps - 1
            x = mean if (last and not explore) else mean + std.clamp(min=min_std) * noise
        if finetuned:
            chain.append(x)
    return policy.action_normalizer.unnormalize(x.clamp(-1.0, 1.0)).clamp(-1.0, 1.0), torch.stack(chain, dim=1)


@pytest.mark.parametrize("ddim_steps, predict_epsilon", [(5, True), (10, True), (5, False)])
@pytest.mark.parametrize("mode", ["stochastic", "deterministic", "zero-init"])
def test_sample_is_bitwise_the_step_by_step_chain(mode: str, ddim_steps: int, predict_epsilon: bool) -> None:
    """The precomputed per-step coefficients change no bit of the sampled chains (a pure speed-up)."""
    config = dataclasses.replace(SMALL, ddim_steps=ddim_steps, predict_epsilon=predict_epsilon)
    policy, obs_t = _normalised_policy(config)
    with torch.no_grad():
        torch.manual_seed(3)
        actions, chain = policy.sample(obs_t, mode=mode)  # type: ignore[arg-type]
        torch.manual_seed(3)
        ref_actions, ref_chain = _sample_with_step_mean_std(policy, obs_t, mode)
    assert torch.equal(chain, ref_chain) and torch.equal(actions, ref_actions)


def test_sampling_modes() -> None:
    """zero-init is a function of the observation; deterministic starts from random x_T (DPPO's evaluation)
    and differs from stochastic only by the exploration noise."""
    env, obs = _observations()
    policy = DiffusionPolicy(env.observation_space, SMALL)
    obs_t = obs_as_tensor(obs, "cpu")
    torch.manual_seed(0)
    first, _ = policy.sample(obs_t, mode="zero-init")
    torch.manual_seed(1)
    second, _ = policy.sample(obs_t, mode="zero-init")
    assert torch.equal(first, second)
    # One observation alone gets the same chunk as inside a batch.
    alone, _ = policy.sample({k: v[2:3] for k, v in obs_t.items()}, mode="zero-init")
    torch.testing.assert_close(alone[0], first[2])
    # deterministic: the same x_T gives the same chunk, another x_T another one; SB3's flag selects it.
    torch.manual_seed(2)
    a, _ = policy.sample(obs_t, deterministic=True)
    torch.manual_seed(2)
    b, _ = policy.sample(obs_t, mode="deterministic")
    torch.manual_seed(3)
    c, _ = policy.sample(obs_t, mode="deterministic")
    torch.manual_seed(2)
    stochastic, _ = policy.sample(obs_t, deterministic=False)
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, first)
    assert not torch.equal(a, stochastic)
    with pytest.raises(ValueError, match="mode must be one of"):
        policy.sample(obs_t, mode="greedy")  # type: ignore[arg-type]


def test_only_the_last_steps_use_and_train_the_finetuned_copy() -> None:
    torch.manual_seed(2)
    env, obs = _observations()
    policy = DiffusionPolicy(env.observation_space, SMALL)
    obs_t = obs_as_tensor(obs, "cpu")
    _, chain = policy.sample(obs_t)
    policy.log_prob_chain(obs_t, chain).sum().backward()
    assert all(p.grad is None for p in policy.actor.parameters())
    assert all(p.grad is not None for p in policy.actor_ft.parameters())
    # The early (S - K' = 2) steps run the pre-trained actor: changing it changes the sample...
    before, _ = policy.sample(obs_t, mode="zero-init")
    with torch.no_grad():
        policy.actor.output.bias.add_(0.5)
    after, _ = policy.sample(obs_t, mode="zero-init")
    assert not torch.equal(before, after)
    # ...and sync_finetuned copies it into the fine-tuned network.
    policy.sync_finetuned()
    for p, q in zip(policy.actor.parameters(), policy.actor_ft.parameters(), strict=True):
        assert torch.equal(p, q)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="ddim_steps must divide"):
        DiffusionPolicyConfig(denoising_steps=20, ddim_steps=6)
    with pytest.raises(ValueError, match="ft_denoising_steps"):
        DiffusionPolicyConfig(ddim_steps=5, ft_denoising_steps=6)


# ---------------------------------------------------------------- behaviour cloning

def proportional_controller(obs: dict[str, np.ndarray]) -> np.ndarray:
    """The known controller: move toward the goal at up to full speed, gripper closed. [E, 7]."""
    to_goal = obs["object"][:, 7:10]
    action = np.zeros((len(to_goal), 7), dtype=np.float32)
    action[:, :3] = np.clip(to_goal / STEP_SCALE, -1.0, 1.0)
    action[:, 6] = 1.0
    return action


BC_ENV = {"max_episode_steps": 30, "success_radius": 0.03, "goal_range": 0.25}
"""Radius 3 cm, goals up to 25 cm per axis: an untrained policy essentially never succeeds."""


def _bc_demos(n_episodes: int, horizon: int) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """(obs, action chunk) pairs from every step of the controller's episodes; chunks padded with the last action."""
    observations: list[dict[str, np.ndarray]] = []
    chunks: list[np.ndarray] = []
    env = FakeLiberoEnv("state", **BC_ENV)
    for episode in range(n_episodes):
        obs, _ = env.reset(seed=episode)
        episode_obs, episode_actions, done = [], [], False
        while not done:
            action = proportional_controller({k: np.asarray(v)[None] for k, v in obs.items()})[0]
            episode_obs.append(obs)
            episode_actions.append(action)
            obs, _, terminated, truncated, _ = env.step(action)
            done = terminated or truncated
        padded = np.concatenate([episode_actions, [episode_actions[-1]] * (horizon - 1)])
        observations += episode_obs
        chunks += [padded[t : t + horizon] for t in range(len(episode_actions))]
    stacked = {key: np.stack([np.asarray(o[key]) for o in observations]) for key in observations[0]}
    return stacked, np.stack(chunks)


def evaluate(model: DiffusionPPO, env_kwargs: dict[str, Any], n_episodes: int = 40, seed: int = 10_000, n_envs: int = 8) -> float:
    """Success rate of ``predict(deterministic=True)`` over a fixed set of seeded episodes."""
    env = DummyVecEnv([lambda: FakeLiberoEnv("state", **env_kwargs) for _ in range(n_envs)])
    env.seed(seed)
    obs, starts, successes = env.reset(), np.ones(n_envs, dtype=bool), []
    while len(successes) < n_episodes:
        actions, _ = model.predict(obs, episode_start=starts, deterministic=True)
        obs, _, starts, infos = env.step(actions)
        successes += [infos[i]["is_success"] for i in np.flatnonzero(starts)]
    env.close()
    return float(np.mean(successes[:n_episodes]))


def test_bc_reproduces_the_proportional_controller() -> None:
    torch.manual_seed(0)
    config = DiffusionPPOConfig(policy=dataclasses.replace(SMALL, mlp_dims=(128, 128), encoder=EncoderConfig(state_dims=(128,))))
    model = DiffusionPPO(FakeLiberoEnv("state", **BC_ENV), config, seed=0, device="cpu")
    untrained = evaluate(model, BC_ENV)
    obs, chunks = _bc_demos(n_episodes=60, horizon=config.policy.horizon_steps)
    model.fit_normalization(obs, chunks)  # what `pretrain` does first
    obs_t, chunks_t = obs_as_tensor(obs, "cpu"), torch.as_tensor(chunks)
    optimizer = torch.optim.Adam(model.policy.actor.parameters(), lr=1e-3)
    losses = []
    for _ in range(1500):
        index = torch.randint(0, len(chunks_t), (256,))
        loss = model.policy.bc_loss({k: v[index] for k, v in obs_t.items()}, chunks_t[index])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.load_pretrained_policy(model.policy.state_dict())  # what `pretrain` -> `train --init-from` does
    final_loss = float(np.mean(losses[-100:]))
    success = evaluate(model, BC_ENV)  # DPPO's deterministic: random x_T, eta = 0
    model.deterministic_mode = "zero-init"
    zero_init = evaluate(model, BC_ENV)  # the chunk as a function of the observation
    print(
        f"BC: denoising loss {np.mean(losses[:100]):.3f} -> {final_loss:.3f}; success {untrained:.2f} -> "
        f"{success:.2f} (deterministic), {zero_init:.2f} (zero-init)"
    )
    assert final_loss < 0.1
    assert untrained <= 0.1
    # The mapping is learned (zero-init); from random starts 1500 steps leave it at ~0.4-0.55 here.
    assert zero_init >= 0.8
    assert success >= 0.3


def _dppo_reference_sample(
    policy: DiffusionPolicy, obs_t: dict[str, torch.Tensor], config: DiffusionPolicyConfig, deterministic: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """DPPO's DDPM sampler and log-probabilities (irom-lab/dppo, model/diffusion: p_mean_var with the
    posterior coefficients, x0 clamped, std floored at min_sampling_denoising_std, noise clipped,
    log-probs with the std floored at min_logprob_denoising_std, clamped to [-5, 2], averaged over the chunk),
    written independently of DiffusionPolicy, on its fixed weights."""
    K = config.denoising_steps
    alpha_bar = cosine_alphas_cumprod(K).float()
    alpha_bar_prev = torch.cat([torch.ones(1), alpha_bar[:-1]])
    betas = 1 - alpha_bar / alpha_bar_prev
    coef_x0 = betas * alpha_bar_prev.sqrt() / (1 - alpha_bar)
    coef_xt = (1 - alpha_bar_prev) * (1 - betas).sqrt() / (1 - alpha_bar)
    posterior_std = (betas * (1 - alpha_bar_prev) / (1 - alpha_bar)).sqrt()
    batch = obs_t["proprio"].shape[0]
    features = policy.actor_ft.encode(obs_t)
    x = torch.randn(batch, config.horizon_steps, 7)
    chain, log_probs = [x], []
    for t in range(K - 1, -1, -1):
        eps = policy.actor_ft(x, torch.full((batch,), t), features)
        x0 = ((x - (1 - alpha_bar[t]).sqrt() * eps) / alpha_bar[t].sqrt()).clamp(-config.denoised_clip, config.denoised_clip)
        mean = coef_x0[t] * x0 + coef_xt[t] * x
        noise = torch.randn_like(x).clamp(-config.randn_clip, config.randn_clip)
        if deterministic:  # DPPO's forward(deterministic=True), DDPM: the posterior std, floored at 1e-4, 0 at t = 0
            std = torch.zeros(()) if t == 0 else posterior_std[t].clamp(min=1e-4)
        else:
            std = posterior_std[t].clamp(min=config.min_sampling_std)
        x_next = mean + std * noise
        dist = torch.distributions.Normal(mean, posterior_std[t].clamp(min=config.min_logprob_std))
        log_probs.append(dist.log_prob(x_next).clamp(config.logprob_min, config.logprob_max).mean(dim=(-2, -1)))
        x = x_next
        chain.append(x)
    actions = policy.action_normalizer.unnormalize(x.clamp(-1, 1)).clamp(-1, 1)
    return actions, torch.stack(chain, dim=1), torch.stack(log_probs, dim=1)


def test_sampler_matches_dppo_on_fixed_weights() -> None:
    """DDPM (S = K, all steps fine-tuned), normalised actions: same chain, actions and per-step log-probs as DPPO's."""
    config = dataclasses.replace(SMALL, ddim_steps=10, ft_denoising_steps=10)
    policy, obs_t = _normalised_policy(config)
    with torch.no_grad():
        torch.manual_seed(7)
        actions, chain = policy.sample(obs_t, mode="stochastic")
        torch.manual_seed(7)
        ref_actions, ref_chain, ref_log_probs = _dppo_reference_sample(policy, obs_t, config)
        log_probs = policy.log_prob_chain(obs_t, chain)
    torch.testing.assert_close(chain, ref_chain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(actions, ref_actions, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(log_probs, ref_log_probs, rtol=1e-4, atol=1e-4)
    # DPPO's deterministic evaluation: random x_T, the chain's own noise, no exploration floor.
    with torch.no_grad():
        torch.manual_seed(8)
        actions, chain = policy.sample(obs_t, mode="deterministic")
        torch.manual_seed(8)
        ref_actions, ref_chain, _ = _dppo_reference_sample(policy, obs_t, config, deterministic=True)
    torch.testing.assert_close(chain, ref_chain, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(actions, ref_actions, rtol=1e-4, atol=1e-5)
