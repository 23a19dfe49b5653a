"""libero-gym: the 130 LIBERO manipulation tasks as Gymnasium environments.

``import libero_gym`` registers every env id (cheaply: the simulator is only
imported by the process that steps an env) and writes LIBERO's config file, so
that importing ``libero.libero`` afterwards never prompts (see
:func:`libero_gym.libero_config.prepare_libero_import`)::

    import gymnasium as gym, libero_gym
    env = gym.make("LIBERO-Goal-v0", task_id=3, obs_mode="pixels")
    envs = gym.make_vec("LIBERO-Goal-v0", num_envs=8, vectorization_mode="async")
"""

from __future__ import annotations

from libero_gym.libero_config import prepare_libero_import
from libero_gym.registration import all_env_ids, register_envs
from libero_gym.suites import MAX_EPISODE_STEPS, SUITES, TASKS, Task, get_suite, get_task

__version__ = "0.1.0"

register_envs()
prepare_libero_import()

__all__ = [
    "MAX_EPISODE_STEPS",
    "SUITES",
    "TASKS",
    "Task",
    "__version__",
    "all_env_ids",
    "get_suite",
    "get_task",
    "register_envs",
]
