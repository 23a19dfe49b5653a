"""Chunk rollout buffer: GAE per chunk against a direct computation, batches, denoising discount."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from gymnasium import spaces

from agents.buffers import ChunkRolloutBuffer, denoising_discount

N_CHUNKS, N_ENVS, CHAIN = 6, 2, (3, 4, 7)


def _space() -> spaces.Dict:
    return spaces.Dict({"proprio": spaces.Box(-1, 1, (5,), np.float32), "task_index": spaces.Discrete(3)})


def _filled(rng: np.random.Generator) -> ChunkRolloutBuffer:
    buffer = ChunkRolloutBuffer(N_CHUNKS, N_ENVS, _space(), CHAIN)
    starts = np.array([[1, 1], [0, 0], [0, 1], [1, 0], [0, 0], [0, 1]], dtype=bool)
    for step in range(N_CHUNKS):
        obs = {"proprio": rng.normal(size=(N_ENVS, 5)).astype(np.float32), "task_index": np.array([step % 3, 1])}
        buffer.add(obs, rng.normal(size=(N_ENVS, *CHAIN)), rng.random(N_ENVS), starts[step], rng.normal(size=N_ENVS))
    buffer.set_log_probs(np.arange(N_CHUNKS * N_ENVS), np.arange(N_CHUNKS * N_ENVS * 2, dtype=np.float32).reshape(-1, 2))
    return buffer


def _reference_gae(buffer: ChunkRolloutBuffer, last_values: np.ndarray, dones: np.ndarray, gamma: float, lam: float) -> np.ndarray:
    """Advantages env by env, episode by episode, from the definition sum_l (gamma lam)^l delta_{t+l}."""
    advantages = np.zeros((N_CHUNKS, N_ENVS))
    for env in range(N_ENVS):
        for t in range(N_CHUNKS):
            total, weight = 0.0, 1.0
            for u in range(t, N_CHUNKS):
                ends = dones[env] if u == N_CHUNKS - 1 else buffer.episode_starts[u + 1, env]
                next_value = last_values[env] if u == N_CHUNKS - 1 else buffer.values[u + 1, env]
                delta = buffer.rewards[u, env] + gamma * next_value * (1 - ends) - buffer.values[u, env]
                total += weight * delta
                if ends:
                    break
                weight *= gamma * lam
            advantages[t, env] = total
    return advantages


@pytest.mark.parametrize("lam", [0.0, 0.95, 1.0])
def test_gae_matches_definition(lam: float) -> None:
    buffer = _filled(np.random.default_rng(0))
    last_values, dones = np.array([0.5, -0.3]), np.array([False, True])
    gamma = 0.999**4
    buffer.compute_returns_and_advantage(last_values, dones, gamma, lam)
    expected = _reference_gae(buffer, last_values, dones, gamma, lam)
    np.testing.assert_allclose(buffer.advantages, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(buffer.returns, buffer.advantages + buffer.values, rtol=1e-6)


def test_batches_cover_every_chunk_once_with_aligned_fields() -> None:
    buffer = _filled(np.random.default_rng(1))
    buffer.compute_returns_and_advantage(np.zeros(N_ENVS), np.zeros(N_ENVS, bool), 0.99, 0.95)
    batches = list(buffer.get(batch_size=5))
    assert [len(b.returns) for b in batches] == [5, 5, 2]
    chains = torch.cat([b.chains for b in batches])
    assert chains.shape == (N_CHUNKS * N_ENVS, *CHAIN)
    flat_chains = torch.as_tensor(buffer.chains.reshape(-1, *CHAIN))
    # Every stored chunk appears exactly once, and its other fields travel with it.
    for batch in batches:
        for row in range(len(batch.returns)):
            index = int(torch.nonzero((flat_chains == batch.chains[row]).flatten(1).all(1))[0])
            step, env = divmod(index, N_ENVS)
            assert batch.returns[row] == pytest.approx(float(buffer.returns[step, env]))
            assert torch.equal(batch.observations["proprio"][row], torch.as_tensor(buffer.observations["proprio"][step, env]))
            assert int(batch.observations["task_index"][row]) == buffer.observations["task_index"][step, env]
            assert batch.old_log_probs[row].tolist() == [2 * index, 2 * index + 1]
    assert sorted(torch.cat([b.chains[:, 0, 0, 0] for b in batches]).tolist()) == sorted(flat_chains[:, 0, 0, 0].tolist())


def test_denoising_discount_weights_last_step_one() -> None:
    discount = denoising_discount(4, 0.9)
    torch.testing.assert_close(discount, torch.tensor([0.9**3, 0.9**2, 0.9, 1.0]))


def test_previous_chunk_is_the_same_envs_chunk_before_within_its_episode() -> None:
    buffer = _filled(np.random.default_rng(2))
    every = np.arange(N_CHUNKS * N_ENVS)
    previous, positions = buffer.previous(every[::-1])  # any order; positions index the order given
    expected = [
        (step * N_ENVS + env, (step - 1) * N_ENVS + env)
        for step in range(1, N_CHUNKS)
        for env in range(N_ENVS)
        if not buffer.episode_starts[step, env]
    ]
    got = sorted((int(every[::-1][p]), int(q)) for p, q in zip(positions, previous))
    assert got == sorted(expected)
    # episode starts ([1,1],[0,0],[0,1],[1,0],[0,0],[0,1]) leave env 0 four joins and env 1 three
    assert len(expected) == 7
    chunk = buffer.batch(previous[:1]).chains
    np.testing.assert_array_equal(chunk.numpy()[0], buffer.chains.reshape(-1, *CHAIN)[previous[0]])
