"""DiffusionPPO on SB3's interface: errors, chunked rollouts, PPO ratio, determinism, save/load, learning."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium import spaces
from stable_baselines3.common.callbacks import BaseCallback
from stable_baselines3.common.logger import KVWriter, Logger
from stable_baselines3.common.monitor import Monitor
from stable_baselines3.common.vec_env import DummyVecEnv

from agents.diffusion_policy import DiffusionPolicyConfig
from agents.diffusion_ppo import HOLD_ACTION, DiffusionPPO, DiffusionPPOConfig, clip_range_schedule
from agents.encoders import EncoderConfig
from libero_gym.errors import InvalidInputError
from libero_gym.testing import FakeLiberoEnv

SMALL_POLICY = DiffusionPolicyConfig(
    horizon_steps=4, denoising_steps=10, ddim_steps=5, ft_denoising_steps=3, mlp_dims=(64, 64),
    encoder=EncoderConfig(state_dims=(64,), image_channels=(8, 16), groups=4),
)  # fmt: skip
SMALL = DiffusionPPOConfig(
    policy=SMALL_POLICY, n_chunks=5, batch_size=8, n_epochs=2, n_critic_warmup_iterations=0,
    critic_dims=(64,), critic_encoder=EncoderConfig(state_dims=(64,), image_channels=(8, 16), groups=4),
)  # fmt: skip



def make_vec_env(n_envs: int = 2, obs_mode: str = "state", seed: int | None = None, **env_kwargs: Any) -> DummyVecEnv:
    env = DummyVecEnv([lambda: Monitor(FakeLiberoEnv(obs_mode, **env_kwargs)) for _ in range(n_envs)])
    if seed is not None:
        env.seed(seed)
    return env


class RecordingWriter(KVWriter):
    """Keeps every logged key/value, dump after dump."""

    def __init__(self) -> None:
        self.records: list[dict[str, Any]] = []

    def write(self, key_values: dict[str, Any], key_excluded: dict[str, Any], step: int = 0) -> None:
        self.records.append(dict(key_values))


# ---------------------------------------------------------------- construction

@pytest.mark.parametrize(
    "action_space, match",
    [
        (spaces.Discrete(3), "Box"),
        (spaces.Box(-1, 1, (6,), np.float32), r"\(7,\)"),
        (spaces.Box(-2, 2, (7,), np.float32), "Box"),
        (spaces.Box(-1, 1, (3, 7), np.float32), "horizon_steps=4"),  # a chunk of another length
    ],
)
def test_rejects_unfit_action_space(action_space: spaces.Space[Any], match: str) -> None:
    env = FakeLiberoEnv("state")
    env.action_space = action_space
    with pytest.raises(InvalidInputError, match=match):
        DiffusionPPO(env, SMALL)


def test_config_round_trips_through_json() -> None:
    model = DiffusionPPO(make_vec_env(), SMALL, seed=0, device="cpu")
    text = json.dumps(model.config_dict())
    rebuilt = DiffusionPPO.from_config_dict(make_vec_env(), json.loads(text), seed=0, device="cpu")
    assert rebuilt.config == SMALL
    assert DiffusionPPOConfig(**json.loads(text)) == SMALL  # what the checkpoint loader does


def test_clip_range_grows_along_the_chain() -> None:
    clip = clip_range_schedule(10, 1e-3, 0.01, 3.0)
    assert clip[0].item() == pytest.approx(1e-3) and clip[-1].item() == pytest.approx(0.01)
    assert torch.all(clip[1:] > clip[:-1])


# ---------------------------------------------------------------- rollouts

class ConstantCritic(torch.nn.Module):
    """V = 1 everywhere during the rollout (its one parameter only moves in the update after it)."""

    def __init__(self) -> None:
        super().__init__()
        self.value = torch.nn.Parameter(torch.ones(()))

    def forward(self, observation: dict[str, torch.Tensor]) -> torch.Tensor:
        return self.value * torch.ones(observation["proprio"].shape[0])


def test_chunked_rollout_episode_ends_inside_a_chunk() -> None:
    """Horizon 10 with Ta = 4: the third chunk holds 2 real steps, then HOLD_ACTION in the new episode."""
    seen_actions: list[np.ndarray] = []

    class Spy(gym.Wrapper):
        def step(self, action: np.ndarray) -> Any:
            seen_actions.append(np.array(action))
            return self.env.step(action)

    # success_radius 0: never succeeds, so every episode is truncated at 10 steps.
    env = DummyVecEnv([lambda: Monitor(Spy(FakeLiberoEnv("state", max_episode_steps=10, success_radius=0.0)))])
    config = dataclasses.replace(SMALL, n_chunks=5, gamma=0.9)
    model = DiffusionPPO(env, config, seed=0, device="cpu")
    model.critic = ConstantCritic()  # V = 1 everywhere, to read the bootstrap off the rewards
    model.learn(total_timesteps=1)
    buffer = model.rollout_buffer
    assert model.num_timesteps == 5 * 4  # env steps, holds included
    # Chunks: steps 1-4, 5-8, 9-10 (+2 holds), 3-6 and 7-10 of the second episode.
    np.testing.assert_array_equal(buffer.episode_starts[:, 0], [1, 0, 0, 1, 0])
    np.testing.assert_allclose(buffer.rewards[:, 0], [0, 0, 0.9**2, 0, 0.9**4], rtol=1e-6)
    np.testing.assert_array_equal(seen_actions[10], HOLD_ACTION)
    np.testing.assert_array_equal(seen_actions[11], HOLD_ACTION)
    assert not np.array_equal(seen_actions[9], HOLD_ACTION)
    assert [info["l"] for info in model.ep_info_buffer] == [10, 10]
    # The last chunk ended its episode: no bootstrap beyond the rollout either.
    assert model._last_episode_starts.tolist() == [True]


def _executed_rates(episodes: list[np.ndarray], chunk_steps: list[list[int]]) -> list[float]:
    """Per chunk, the sum of |a_t - a_(t-1)|^2 (arm dims) over its steps, t - 1 within the same episode."""
    rates = []
    for actions, steps in zip(episodes, chunk_steps):
        changes = np.concatenate([[0.0], np.square(np.diff(actions[:, :6].astype(np.float64), axis=0)).sum(axis=1)])
        bounds = np.cumsum([0, *steps])
        rates += [float(changes[a:b].sum()) for a, b in zip(bounds[:-1], bounds[1:])]
    return rates


@pytest.mark.parametrize("chunked", [False, True])
def test_action_rate_penalty_charges_each_chunk_its_executed_changes(chunked: bool) -> None:
    """The smoothness term: a chunk's reward loses penalty x sum |a_t - a_(t-1)|^2 over the steps that ran,
    joined to the previous chunk within an episode, never across an episode start or to unexecuted actions
    (the same episodes as above: 10-step limit, a chunk cut after 2 steps, then a new episode)."""
    from tests.agents.conftest import fake_vec

    def rollout(penalty: float) -> tuple[np.ndarray, list[np.ndarray], DiffusionPPO]:
        env = (fake_vec(1, chunk_size=4, max_episode_steps=10, success_radius=0.0) if chunked
               else DummyVecEnv([lambda: Monitor(FakeLiberoEnv("state", max_episode_steps=10, success_radius=0.0))]))  # fmt: skip
        model = DiffusionPPO(env, dataclasses.replace(SMALL, n_chunks=5, gamma=0.9, action_rate_penalty=penalty),
                             seed=0, device="cpu")  # fmt: skip
        model.critic = ConstantCritic()
        planned: list[np.ndarray] = []
        sample = model.policy.sample

        def spy(*args: Any, **kwargs: Any) -> Any:
            actions, chain = sample(*args, **kwargs)
            planned.append(actions.cpu().numpy()[0])  # [Ta, Da]
            return actions, chain

        model.policy.sample = spy  # type: ignore[method-assign]
        _, callback = model._setup_learn(20)
        model.collect_rollouts(model.env, callback, model.rollout_buffer)
        env.close()
        return model.rollout_buffer.rewards[:, 0].copy(), planned, model

    plain, planned, _ = rollout(0.0)
    penalised, planned_again, model = rollout(0.5)
    for a, b in zip(planned, planned_again):  # same seed: the same chunks
        np.testing.assert_array_equal(a, b)
    episodes = [np.concatenate([planned[0], planned[1], planned[2][:2]]), np.concatenate(planned[3:5])]
    rates = _executed_rates(episodes, [[4, 4, 2], [4, 4]])
    assert all(rate > 0 for rate in rates)
    np.testing.assert_allclose(penalised, plain - 0.5 * np.asarray(rates, dtype=np.float32), rtol=1e-5, atol=1e-6)
    # the last executed arm action carries into the next rollout's first chunk
    np.testing.assert_array_equal(model._prev_arm[0], planned[4][3, :6])


def test_action_rate_penalty_must_be_non_negative() -> None:
    with pytest.raises(ValueError, match="action_rate_penalty must be >= 0"):
        dataclasses.replace(SMALL, action_rate_penalty=-0.1)


@pytest.mark.parametrize("coef", [0.0, 10.0])
def test_smoothness_loss_smooths_the_predicted_chunks(coef: float) -> None:
    """With the PPO term silenced (zero advantages), ``smoothness_coef`` alone moves the denoiser: it lowers the
    within-chunk change of the chunks it predicts on the rollout's chains; at 0 the actor does not move at all."""
    env = make_vec_env(2, seed=0)
    model = DiffusionPPO(env, dataclasses.replace(SMALL, n_epochs=20, actor_lr=1e-3, smoothness_coef=coef), seed=0, device="cpu")
    _, callback = model._setup_learn(40)
    model.collect_rollouts(model.env, callback, model.rollout_buffer)
    buffer = model.rollout_buffer
    buffer.advantages[:] = 0.0
    every = buffer.batch(np.arange(buffer.n_chunks * buffer.n_envs))
    with torch.no_grad():
        before = model._chunk_change(every.observations, every.chains).item()
        weights = [p.clone() for p in model.policy.actor_ft.parameters()]
    model.train()
    with torch.no_grad():
        after = model._chunk_change(every.observations, every.chains).item()
        moved = any(not torch.equal(a, b) for a, b in zip(weights, model.policy.actor_ft.parameters()))
    env.close()
    assert before > 0
    if coef:
        assert moved and after < 0.9 * before, (before, after)
        assert model.logger.name_to_value["train/chunk_change"] > 0
    else:
        assert not moved and after == before
        assert "train/chunk_change" not in model.logger.name_to_value


def test_smoothness_loss_is_the_mean_squared_step_change_of_the_predicted_arm_actions() -> None:
    env = make_vec_env(1, seed=0)
    model = DiffusionPPO(env, SMALL, seed=0, device="cpu")
    obs = {k: torch.as_tensor(v) for k, v in env.reset().items()}
    with torch.no_grad():
        _, chain = model.policy.sample(obs)  # [1, K'+1, Ta, Da]
        chunks = model.policy.predicted_chunks(obs, chain).numpy()[0]  # [K', Ta, Da]
        loss = model._chunk_change(obs, chain).item()
    env.close()
    assert chunks.shape == (SMALL_POLICY.ft_denoising_steps, 4, 7)
    expected = np.mean([np.square(np.diff(chunk[:, :6], axis=0)).sum() for chunk in chunks])
    np.testing.assert_allclose(loss, expected, rtol=1e-5)


def test_smoothness_loss_with_joins_adds_the_change_from_the_previous_predicted_chunk() -> None:
    """``smoothness_joins``: each chunk with a predecessor in its episode also pays |a_0 - previous a_(Ta-1)|^2
    between the two chunks the same denoising step predicts; chunks that start an episode or the rollout do not."""
    env = make_vec_env(2, seed=0, max_episode_steps=8)  # 2-chunk episodes: some chunks start one
    model = DiffusionPPO(env, dataclasses.replace(SMALL, smoothness_coef=1.0, smoothness_joins=True), seed=0, device="cpu")
    _, callback = model._setup_learn(40)
    model.collect_rollouts(model.env, callback, model.rollout_buffer)
    env.close()
    buffer = model.rollout_buffer
    indices = np.random.default_rng(0).permutation(buffer.n_chunks * buffer.n_envs)
    batch = buffer.batch(indices)
    with torch.no_grad():
        loss = model._chunk_change(batch.observations, batch.chains, model._previous_chunks(indices)).item()
        inside = model._chunk_change(batch.observations, batch.chains).item()
        every = buffer.batch(np.arange(buffer.n_chunks * buffer.n_envs))
        arm = model.policy.predicted_chunks(every.observations, every.chains).numpy()[..., :6]  # [N*E, K', Ta, 6]
    arm = arm.reshape(buffer.n_chunks, buffer.n_envs, *arm.shape[1:])
    total = np.square(np.diff(arm, axis=-2)).sum(axis=(-2, -1))  # [N, E, K']
    joins = 0
    for step in range(1, buffer.n_chunks):
        for e in range(buffer.n_envs):
            if not buffer.episode_starts[step, e]:
                total[step, e] += np.square(arm[step, e, :, 0] - arm[step - 1, e, :, -1]).sum(axis=-1)
                joins += 1
    assert 0 < joins < (buffer.n_chunks - 1) * buffer.n_envs  # some joins, and some episode starts inside
    np.testing.assert_allclose(loss, total.mean(), rtol=1e-5)
    assert loss > inside


def test_smoothness_loss_with_joins_smooths_the_joins() -> None:
    """With the PPO term silenced, the joined loss lowers the change across joins of the predicted chunks."""
    env = make_vec_env(2, seed=0)
    config = dataclasses.replace(SMALL, n_epochs=20, actor_lr=1e-3, smoothness_coef=10.0, smoothness_joins=True)
    model = DiffusionPPO(env, config, seed=0, device="cpu")
    _, callback = model._setup_learn(40)
    model.collect_rollouts(model.env, callback, model.rollout_buffer)
    env.close()
    buffer = model.rollout_buffer
    buffer.advantages[:] = 0.0
    indices = np.arange(buffer.n_chunks * buffer.n_envs)
    batch = buffer.batch(indices)

    def join_change() -> float:
        with torch.no_grad():
            joined = model._chunk_change(batch.observations, batch.chains, model._previous_chunks(indices)).item()
            return joined - model._chunk_change(batch.observations, batch.chains).item()

    before = join_change()
    model.train()
    after = join_change()
    assert before > 0 and after < 0.9 * before, (before, after)


def test_smoothness_coef_must_be_non_negative() -> None:
    with pytest.raises(ValueError, match="smoothness_coef must be >= 0"):
        dataclasses.replace(SMALL, smoothness_coef=-1.0)
    with pytest.raises(ValueError, match="smoothness_joins needs smoothness_coef > 0"):
        dataclasses.replace(SMALL, smoothness_joins=True)


class StepCounter(BaseCallback):
    """Counts env.step calls (one on_step each)."""

    def _on_step(self) -> bool:
        return True


def test_chunk_env_rollout_one_step_per_chunk() -> None:
    """The same episodes on a chunk env (Ta = 4, horizon 10): one env.step per chunk, the env stops
    the chunk at the limit (no hold actions), num_timesteps counts control steps, and the truncated
    chunk bootstraps gamma ** chunk_steps * V(terminal obs)."""
    from tests.agents.conftest import fake_vec

    env = fake_vec(1, chunk_size=4, max_episode_steps=10, success_radius=0.0)
    model = DiffusionPPO(env, dataclasses.replace(SMALL, n_chunks=5, gamma=0.9), seed=0, device="cpu")
    assert model.is_chunked
    model.critic = ConstantCritic()
    counter = StepCounter()
    model.learn(total_timesteps=1, callback=counter)
    buffer = model.rollout_buffer
    assert counter.n_calls == 5  # one env step per chunk
    assert model.num_timesteps == 4 + 4 + 2 + 4 + 4  # control steps, the cut chunk ran 2
    np.testing.assert_array_equal(buffer.episode_starts[:, 0], [1, 0, 0, 1, 0])
    np.testing.assert_allclose(buffer.rewards[:, 0], [0, 0, 0.9**2, 0, 0], rtol=1e-6)
    assert [info["l"] for info in model.ep_info_buffer] == [10]  # in control steps, as on a (7,) env
    env.close()


def test_predict_on_chunk_env_and_per_step_after_load(tmp_path: Any) -> None:
    """A chunk-env agent predicts whole chunks; its checkpoint loads without an env (collect) as a
    per-step policy serving the same chunk, and on a chunk or per-step env (eval)."""
    from agents.checkpoint import load_agent, read_meta, save_checkpoint
    from libero_gym.env_config import EnvConfig
    from tests.agents.conftest import fake_vec

    env = fake_vec(2, chunk_size=4)
    model = DiffusionPPO(env, SMALL, seed=0, device="cpu")
    model.deterministic_mode = "zero-init"  # chunks that depend on the observation only
    obs = env.reset()
    chunks, state = model.predict(obs, deterministic=True)
    assert chunks.shape == (2, 4, 7) and state is None
    np.testing.assert_array_equal(chunks, model.predict_chunk(obs, deterministic=True))
    single = {key: value[0] for key, value in obs.items()}
    assert model.predict(single, deterministic=True)[0].shape == (4, 7)

    info = EnvConfig("LIBERO-Goal-v0", (0,), chunk_size=4)
    path = save_checkpoint(model, tmp_path / "ckpt", agent="diffusion-ppo", env=info)
    assert read_meta(path)["action_space"]["shape"] == [4, 7] and read_meta(path)["env"]["chunk_size"] == 4
    standalone, _ = load_agent(path, device="cpu")
    standalone.deterministic_mode = "zero-init"
    assert standalone.action_space.shape == (7,)
    for k in range(4):  # the per-env queue serves the chunk step by step
        action, _ = standalone.predict(single, episode_start=np.array([k == 0]), deterministic=True)
        np.testing.assert_allclose(action, chunks[0, k], atol=1e-6)
    on_chunks, _ = load_agent(path, fake_vec(2, chunk_size=4), device="cpu")
    on_chunks.deterministic_mode = "zero-init"
    np.testing.assert_array_equal(on_chunks.predict(obs, deterministic=True)[0], chunks)
    on_steps, _ = load_agent(path, fake_vec(2), device="cpu")
    on_steps.deterministic_mode = "zero-init"
    np.testing.assert_array_equal(on_steps.predict(obs, deterministic=True)[0], chunks[:, 0])
    env.close()


def test_learn_logs_sb3_metrics_and_calls_callbacks() -> None:
    class CountSteps(BaseCallback):
        def __init__(self) -> None:
            super().__init__()
            self.steps = self.rollouts = 0

        def _on_step(self) -> bool:
            self.steps += 1
            return True

        def _on_rollout_end(self) -> None:
            self.rollouts += 1

    model = DiffusionPPO(make_vec_env(2, max_episode_steps=8), SMALL, seed=0, device="cpu")
    writer = RecordingWriter()
    model.set_logger(Logger(None, [writer]))
    callback = CountSteps()
    model.learn(total_timesteps=2 * 5 * 4 * 2, callback=callback)
    assert model.num_timesteps == 80 and callback.steps == 40 and callback.rollouts == 2
    last = writer.records[-1]
    for key in ("rollout/ep_rew_mean", "rollout/ep_len_mean", "rollout/success_rate", "train/policy_gradient_loss",
                "train/value_loss", "train/approx_kl", "train/clip_fraction", "train/explained_variance", "train/ratio_mean", "rollout/action_rate"):  # fmt: skip
        assert key in last, key
    assert last["time/total_timesteps"] == 80


def test_callback_can_stop_training() -> None:
    class StopAtOnce(BaseCallback):
        def _on_step(self) -> bool:
            return False

    model = DiffusionPPO(make_vec_env(), SMALL, seed=0, device="cpu")
    model.learn(total_timesteps=1000, callback=StopAtOnce())
    assert model.num_timesteps == 2


def test_ratio_is_exactly_one_before_the_first_update() -> None:
    model = DiffusionPPO(make_vec_env(3), SMALL, seed=0, device="cpu")
    model.learn(total_timesteps=1)  # one rollout and its update: the policy is no longer the initial one
    writer = RecordingWriter()
    model.set_logger(Logger(None, [writer]))
    model.collect_rollouts(model.env, model._init_callback(None), model.rollout_buffer)
    # One epoch of one minibatch: train/ratio_mean is the ratio before any step on this rollout.
    model.config = dataclasses.replace(SMALL, batch_size=10_000, n_epochs=1)
    model.train()
    model.logger.dump()
    assert writer.records[-1]["train/ratio_mean"] == 1.0
    # Several minibatches: train() stores the old log-probs of each first-epoch minibatch the same way.
    buffer = model.rollout_buffer
    for indices in buffer.minibatch_indices(batch_size=4):
        batch = buffer.batch(indices)
        with torch.no_grad():
            buffer.set_log_probs(indices, model.policy.log_prob_chain(batch.observations, batch.chains).numpy())
        batch = buffer.batch(indices)
        log_probs = model.policy.log_prob_chain(batch.observations, batch.chains)  # with autograd, as in train()
        assert torch.equal((log_probs - batch.old_log_probs).exp(), torch.ones_like(log_probs))


def test_critic_warmup_leaves_the_actor_untouched() -> None:
    config = dataclasses.replace(SMALL, n_critic_warmup_iterations=1)
    model = DiffusionPPO(make_vec_env(), config, seed=0, device="cpu")
    actor_before = [p.clone() for p in model.policy.actor_ft.parameters()]
    critic_before = [p.clone() for p in model.critic.parameters()]
    model.learn(total_timesteps=1)
    assert all(torch.equal(a, b) for a, b in zip(actor_before, model.policy.actor_ft.parameters()))
    assert not all(torch.equal(a, b) for a, b in zip(critic_before, model.critic.parameters()))
    model.learn(total_timesteps=1, reset_num_timesteps=False)
    assert not all(torch.equal(a, b) for a, b in zip(actor_before, model.policy.actor_ft.parameters()))


@pytest.mark.parametrize("obs_mode", ["pixels", "both"])
def test_learns_from_pixels_runs(obs_mode: str) -> None:
    """Images go through SB3's VecTransposeImage (channel-first) into the FiLM-ResNet."""
    config = dataclasses.replace(SMALL, n_chunks=2, n_epochs=1)
    model = DiffusionPPO(make_vec_env(2, obs_mode, image_size=32), config, seed=0, device="cpu")
    assert model.observation_space["agentview_image"].shape == (3, 32, 32)
    model.learn(total_timesteps=1)
    obs = model.env.reset()
    assert model.predict_chunk(obs, deterministic=True).shape == (2, 4, 7)
    # A raw gymnasium observation (channel-last, unbatched) works too.
    raw, _ = FakeLiberoEnv(obs_mode, image_size=32).reset(seed=0)
    action, state = model.predict(raw, deterministic=True)
    assert action.shape == (7,) and state is None


# ---------------------------------------------------------------- acting, determinism, save/load

def test_predict_follows_sb3_contract_with_chunk_queue() -> None:
    model = DiffusionPPO(make_vec_env(2), SMALL, seed=0, device="cpu")
    model.deterministic_mode = "zero-init"  # chunks that depend on the observation only
    obs = model.env.reset()
    chunk = model.predict_chunk(obs, deterministic=True)  # [2, Ta, 7]
    starts = np.ones(2, dtype=bool)
    for k in range(4):  # the queue serves the chunk step by step, whatever the observations
        actions, state = model.predict(obs, episode_start=starts, deterministic=True)
        np.testing.assert_array_equal(actions, chunk[:, k])
        assert state is None
        starts = np.zeros(2, dtype=bool)
        obs, *_ = model.env.step(actions)
    # After Ta actions it re-plans from the current observation; episode_start forces it too.
    actions, _ = model.predict(obs, deterministic=True)
    np.testing.assert_array_equal(actions, model.predict_chunk(obs, deterministic=True)[:, 0])
    fresh = model.env.reset()
    actions, _ = model.predict(fresh, episode_start=np.array([True, False]), deterministic=True)
    # (a batch of one vs of two: equal up to float summation order)
    np.testing.assert_allclose(actions[0], model.predict_chunk(fresh, deterministic=True)[0, 0], atol=1e-6)


def _train(seed: int) -> DiffusionPPO:
    model = DiffusionPPO(make_vec_env(2, max_episode_steps=12), SMALL, seed=seed, device="cpu")
    model.learn(total_timesteps=2 * 5 * 4 * 2)
    return model


def test_overlapped_async_rollouts_equal_the_plain_loop() -> None:
    """On async workers the chunks are sent before the critic runs (``step_async``) and collected after;
    the run is bit for bit the sync (plain) loop's: chains, rewards, values, parameters."""
    from gymnasium.vector import AsyncVectorEnv, SyncVectorEnv

    from agents.vec_env import SB3VecEnv

    def run(vector_cls: Any) -> DiffusionPPO:
        fns = [lambda: FakeLiberoEnv("state", chunk_size=4, max_episode_steps=10) for _ in range(2)]
        env = SB3VecEnv(vector_cls(fns))
        env.seed(11)
        try:
            model = DiffusionPPO(env, SMALL, seed=3, device="cpu")
            model.learn(total_timesteps=2 * 2 * SMALL.n_chunks * 4)  # two rollouts and two updates
        finally:
            env.close()
        return model

    plain, overlapped = run(SyncVectorEnv), run(AsyncVectorEnv)
    for name in ("chains", "rewards", "values", "episode_starts", "log_probs"):
        np.testing.assert_array_equal(getattr(plain.rollout_buffer, name), getattr(overlapped.rollout_buffer, name), name)
    assert plain.rollout_buffer.episode_starts.any()  # episodes ended inside the rollouts
    for name, params in plain.get_parameters().items():
        for key, value in params.items():
            if torch.is_tensor(value):
                assert torch.equal(value, overlapped.get_parameters()[name][key]), (name, key)


def test_same_seed_same_actions_and_parameters() -> None:
    torch.use_deterministic_algorithms(True)
    try:
        first, second, other = _train(seed=3), _train(seed=3), _train(seed=4)
    finally:
        torch.use_deterministic_algorithms(False)
    for name, params in first.get_parameters().items():
        if name.endswith("optimizer"):
            continue
        for key, value in params.items():
            assert torch.equal(value, second.get_parameters()[name][key]), (name, key)
    np.testing.assert_array_equal(first.rollout_buffer.chains, second.rollout_buffer.chains)
    assert not np.array_equal(first.rollout_buffer.chains, other.rollout_buffer.chains)
    obs = first.env.reset()
    torch.manual_seed(0)
    stochastic_first = first.predict_chunk(obs)
    torch.manual_seed(0)
    np.testing.assert_array_equal(stochastic_first, second.predict_chunk(obs))


def _seeded(predict: Any, *args: Any, **kwargs: Any) -> Any:
    """``predict`` from a fixed torch RNG state (deterministic sampling starts from a random x_T)."""
    torch.manual_seed(1234)
    return predict(*args, **kwargs)


def test_set_parameters_round_trip_gives_identical_deterministic_predict() -> None:
    trained = _train(seed=5)
    params = trained.get_parameters()
    assert set(params) == {"policy", "critic", "actor_optimizer", "critic_optimizer"}
    blob = {name: {k: v.clone() if torch.is_tensor(v) else v for k, v in state.items()} for name, state in params.items()}
    fresh = DiffusionPPO(make_vec_env(2), SMALL, seed=99, device="cpu")
    obs = make_vec_env(2, seed=7).reset()
    assert not np.array_equal(
        _seeded(fresh.predict_chunk, obs, deterministic=True), _seeded(trained.predict_chunk, obs, deterministic=True)
    )
    fresh.set_parameters(blob)
    for mode in ("deterministic", "stochastic", "zero-init"):
        np.testing.assert_array_equal(_seeded(fresh.predict_chunk, obs, mode=mode), _seeded(trained.predict_chunk, obs, mode=mode))
    actions, _ = _seeded(fresh.predict, obs, episode_start=np.ones(2, bool), deterministic=True)
    expected, _ = _seeded(trained.predict, obs, episode_start=np.ones(2, bool), deterministic=True)
    np.testing.assert_array_equal(actions, expected)


def test_save_load_zip_round_trip(tmp_path: Any) -> None:
    trained = _train(seed=6)
    path = tmp_path / "dppo.zip"
    trained.save(path)
    loaded = DiffusionPPO.load(path, env=make_vec_env(2), device="cpu")
    assert loaded.config == trained.config and loaded.num_timesteps == trained.num_timesteps
    obs = make_vec_env(2, seed=8).reset()
    np.testing.assert_array_equal(
        _seeded(loaded.predict_chunk, obs, deterministic=True), _seeded(trained.predict_chunk, obs, deterministic=True)
    )


# ---------------------------------------------------------------- learning

class ShapedReward(gym.Wrapper):
    """FakeLiberoEnv's sparse success reward minus 0.1 x the distance to the goal (m) at every step."""

    def step(self, action: np.ndarray) -> Any:
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward - 0.1 * float(np.linalg.norm(obs["object"][7:10])), terminated, truncated, info


LEARN_ENV = {"max_episode_steps": 40, "success_radius": 0.06, "goal_range": 0.2}
"""Goals up to 20 cm per axis, 6 cm radius, 40 steps: the untrained policy succeeds in ~5% of episodes."""
LEARN_CONFIG = DiffusionPPOConfig(
    policy=DiffusionPolicyConfig(
        horizon_steps=4, denoising_steps=10, ddim_steps=5, ft_denoising_steps=5, mlp_dims=(128, 128),
        encoder=EncoderConfig(state_dims=(128, 128)),
    ),
    n_chunks=50, batch_size=400, n_epochs=10, gamma=0.99, critic_dims=(128, 128),
    critic_encoder=EncoderConfig(state_dims=(128,)),
    # From scratch, not fine-tuning: 10x DPPO's clip ranges and a larger actor step, or nothing moves in a minute.
    actor_lr=1e-3, clip_range=0.1, clip_range_base=0.01, n_critic_warmup_iterations=2,
)  # fmt: skip


def test_learns_on_fake_env() -> None:
    """From an untrained policy, 96k env steps (30 iterations) raise the deterministic success rate clearly."""
    from tests.agents.test_diffusion_policy import evaluate

    env = DummyVecEnv([lambda: Monitor(ShapedReward(FakeLiberoEnv("state", **LEARN_ENV))) for _ in range(16)])
    model = DiffusionPPO(env, LEARN_CONFIG, seed=0, device="cpu")
    before = evaluate(model, LEARN_ENV, n_episodes=50)
    model.learn(total_timesteps=96_000)
    after = evaluate(model, LEARN_ENV, n_episodes=50)
    print(f"DiffusionPPO on FakeLiberoEnv: deterministic success {before:.2f} -> {after:.2f}")
    assert before <= 0.4  # an untrained chain from random x_T wanders onto the goal now and then
    assert after >= max(0.9, before + 0.4)
