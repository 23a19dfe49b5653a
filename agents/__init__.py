"""RL agents for libero-gym on Stable-Baselines3's ``BaseAlgorithm`` interface.

Modules (SB3's layout: what every agent shares once, the agents side by side):

- :mod:`agents.registry`: agents by CLI name (``gaussian-ppo``, ``diffusion-ppo``),
  :func:`register_agent`, any SB3 class as ``module:Class``.
- :mod:`agents.vec_env`: the gymnasium.vector -> SB3 ``VecEnv`` adapter.
- :mod:`agents.gaussian_ppo`, :mod:`agents.diffusion_ppo`: the two built-ins.
- :mod:`agents.checkpoint`: the one checkpoint format (agent.json + params.pt).
- :mod:`agents.train`, :mod:`agents.pretrain`, :mod:`agents.evaluate`: the
  ``train``/``pretrain``/``eval`` commands (configs in :mod:`agents.commands`).

Importing the package is cheap (no torch): heavy modules load when used.
"""

from agents.registry import available_agents, register_agent, resolve_agent

__all__ = ["available_agents", "register_agent", "resolve_agent"]
