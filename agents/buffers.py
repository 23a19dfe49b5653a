"""Rollout storage at the action-chunk level, with GAE per chunk (DPPO's two-level MDP).

One entry per (chunk, env): the observation the chunk was planned from, the
fine-tuned part of its denoising chain, the rewards summed over the Ta executed
steps, the critic's value and, set by the algorithm before its update, the old
per-step log-probabilities. Advantages are
computed per chunk by GAE (Schulman et al. 2016) with the per-chunk discount
``gamma ** Ta``; :func:`denoising_discount` spreads them over the denoising steps.

Shape legend:
    N: chunks per env in one rollout (``n_chunks``), E: number of envs
    B: minibatch size, K': fine-tuned denoising steps, Ta: chunk length, Da: action dim
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

import numpy as np
import torch
from gymnasium import spaces


class ChunkRolloutBatch(NamedTuple):
    """A minibatch of B chunks (tensors on the training device)."""

    observations: dict[str, torch.Tensor]
    """Observations the chunks were planned from, each [B, ...]."""
    chains: torch.Tensor
    """Fine-tuned part of the denoising chains [B, K'+1, Ta, Da]."""
    old_values: torch.Tensor
    """Critic values at rollout time [B]."""
    old_log_probs: torch.Tensor
    """Per-denoising-step log-probabilities at rollout time [B, K']."""
    advantages: torch.Tensor
    """GAE advantages per chunk [B]."""
    returns: torch.Tensor
    """Value targets, advantages + old values [B]."""


def denoising_discount(n_steps: int, gamma_denoising: float) -> torch.Tensor:
    """Discount of each fine-tuned denoising step, ``gamma_denoising ** (K'-1-j)`` for j = 0..K'-1 [K'].

    The last step (closest to the executed action) gets weight 1; noisier steps,
    further from the reward in the denoising MDP, get less (DPPO, eq. 4.3).
    """
    return gamma_denoising ** torch.arange(n_steps - 1, -1, -1, dtype=torch.float32)


class ChunkRolloutBuffer:
    """Fixed-size storage of N chunks for each of E envs, SB3's ``RolloutBuffer`` at the chunk level.

    Args:
        n_chunks: N, chunks per env per rollout.
        n_envs: E.
        observation_space: the (flat) Dict observation space.
        chain_shape: (K'+1, Ta, Da).
        device: where :meth:`get` puts the batches.
    """

    def __init__(
        self,
        n_chunks: int,
        n_envs: int,
        observation_space: spaces.Dict,
        chain_shape: tuple[int, int, int],
        device: torch.device | str = "cpu",
    ) -> None:
        self.n_chunks, self.n_envs, self.device = n_chunks, n_envs, device
        size = (n_chunks, n_envs)
        self.observations = {
            key: np.zeros(size + space.shape, dtype=space.dtype) for key, space in observation_space.spaces.items()
        }
        self.chains = np.zeros(size + tuple(chain_shape), dtype=np.float32)
        self.log_probs = np.zeros(size + (chain_shape[0] - 1,), dtype=np.float32)
        self.rewards = np.zeros(size, dtype=np.float32)
        self.episode_starts = np.zeros(size, dtype=np.float32)
        self.values = np.zeros(size, dtype=np.float32)
        self.advantages = np.zeros(size, dtype=np.float32)
        self.returns = np.zeros(size, dtype=np.float32)
        self.pos = 0

    @property
    def full(self) -> bool:
        return self.pos == self.n_chunks

    def reset(self) -> None:
        self.pos = 0

    def add(
        self,
        observation: dict[str, np.ndarray],
        chain: np.ndarray,
        reward: np.ndarray,
        episode_start: np.ndarray,
        value: np.ndarray,
    ) -> None:
        """Store one chunk per env: obs [E, ...], chain [E, K'+1, Ta, Da], reward/start/value [E]."""
        for key, array in self.observations.items():
            array[self.pos] = np.asarray(observation[key]).reshape(array.shape[1:])
        self.chains[self.pos] = chain
        self.rewards[self.pos] = reward
        self.episode_starts[self.pos] = episode_start
        self.values[self.pos] = value
        self.pos += 1

    def compute_returns_and_advantage(self, last_values: np.ndarray, dones: np.ndarray, gamma: float, gae_lambda: float) -> None:
        """GAE over the chunks of each env (SB3's ``RolloutBuffer`` recursion).

        Args:
            last_values: V of the observation after the last chunk [E].
            dones: whether the last chunk ended its episode [E].
            gamma: discount per chunk (``gamma_step ** Ta``). Rewards of truncated
                episodes already include the bootstrapped value of their final observation.
            gae_lambda: GAE's lambda.
        """
        last_gae = np.zeros(self.n_envs, dtype=np.float32)
        for step in reversed(range(self.n_chunks)):
            if step == self.n_chunks - 1:
                next_non_terminal, next_values = 1.0 - dones.astype(np.float32), last_values
            else:
                next_non_terminal, next_values = 1.0 - self.episode_starts[step + 1], self.values[step + 1]
            delta = self.rewards[step] + gamma * next_values * next_non_terminal - self.values[step]
            last_gae = delta + gamma * gae_lambda * next_non_terminal * last_gae
            self.advantages[step] = last_gae
        self.returns = self.advantages + self.values

    def minibatch_indices(self, batch_size: int) -> list[np.ndarray]:
        """A shuffled split of the N*E flat chunk indices into minibatches (the last one may be smaller)."""
        order = np.random.permutation(self.n_chunks * self.n_envs)
        return [order[start : start + batch_size] for start in range(0, len(order), batch_size)]

    def get(self, batch_size: int) -> Iterator[ChunkRolloutBatch]:
        """Shuffled minibatches covering every stored chunk once."""
        for indices in self.minibatch_indices(batch_size):
            yield self.batch(indices)

    def set_log_probs(self, indices: np.ndarray, log_probs: np.ndarray) -> None:
        """Store the old log-probabilities [len(indices), K'] of the chunks at flat ``indices``."""
        self.log_probs.reshape(-1, self.log_probs.shape[-1])[indices] = log_probs

    def previous(self, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The chunks just before the chunks at flat ``indices`` in the same env's episode: (their flat indices
        [M], the positions in ``indices`` [M] of the chunks they precede). A chunk that starts an episode or the
        rollout has none."""
        step, env = np.divmod(np.asarray(indices), self.n_envs)
        has_previous = step > 0
        has_previous[has_previous] = self.episode_starts[step[has_previous], env[has_previous]] == 0
        (positions,) = np.nonzero(has_previous)
        return np.asarray(indices)[positions] - self.n_envs, positions

    def batch(self, indices: np.ndarray) -> ChunkRolloutBatch:
        """The chunks at flat indices (chunk-major: ``step * E + env``)."""
        def flat(array: np.ndarray) -> torch.Tensor:
            return torch.as_tensor(array.reshape(-1, *array.shape[2:])[indices], device=self.device)

        return ChunkRolloutBatch(
            observations={key: flat(array) for key, array in self.observations.items()},
            chains=flat(self.chains),
            old_values=flat(self.values),
            old_log_probs=flat(self.log_probs),
            advantages=flat(self.advantages),
            returns=flat(self.returns),
        )
