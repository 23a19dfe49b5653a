"""RL agents for libero-gym on Stable-Baselines3's ``BaseAlgorithm`` interface.

Modules (SB3's layout: what every agent shares once, the agents side by side):

- :mod:`agents.registry`: agents by CLI name (``gaussian-ppo``, ``diffusion-ppo``),
  :func:`register_agent`, any SB3 class as ``module:Class``, the factory ``build_agent``.
- :mod:`agents.agent_configs`: the agents' hyper-parameters (light; typed CLI flags).
- :mod:`agents.vec_env`: the gymnasium.vector -> SB3 ``VecEnv`` adapter.
- :mod:`agents.gaussian_ppo`, :mod:`agents.diffusion_ppo` (+ :mod:`agents.diffusion_policy`,
  :mod:`agents.critic`): the two built-ins side by side.
- :mod:`agents.checkpoint`: the one checkpoint format (agent.json + params.pt), with
  :mod:`agents.space_codec` and :mod:`agents.rng_state`; :mod:`agents.run_folder`: a run's
  log and checkpoint rotation.
- :mod:`agents.train`, :mod:`agents.pretrain`, :mod:`agents.evaluate`: the
  ``train``/``pretrain``/``eval`` commands (configs in :mod:`agents.configs`).
- :mod:`agents.policy`: a trained agent as a ``collect`` policy.
- :mod:`agents.pipeline`: the ``generate`` pipeline (demos -> BC -> RL -> rollouts -> export -> report),
  each stage a library command run from its typed config by ``python -m agents.stage``
  (:mod:`agents.stage`; the commands' run-and-print functions: :mod:`agents.commands`).

Importing the package is cheap (no torch): heavy modules load when used.
"""

from agents.registry import available_agents, register_agent, resolve_agent

__all__ = ["available_agents", "register_agent", "resolve_agent"]
