"""The ``generate`` pipeline (``cli.py generate``): from nothing to a VLA dataset, per task, in one resumable command.

Per task (``OUT/tasks/<suite>_<index>/``), in order:

=============  ===========================================================================  =================
stage          what runs (the library command, as ``cli.py`` names it)                       output
=============  ===========================================================================  =================
``demos``      ``collect --policy scripted --until-successes``: N expert demonstrations     ``demos/``
``bc``         ``pretrain``: behaviour cloning of the agent's policy on them                 ``bc/checkpoint``
``bc_eval``    ``eval``: the BC start's success, sampled as the rollouts sample             ``bc_eval.json``
``rl``         ``train --init-from bc --target-success``: fine-tuning until the rolling     ``rl/``
               success reaches the target or the env-step budget is spent
``rl_eval``    ``eval``: the fine-tuned policy over the init states, deterministic,         ``rl_eval.json``
               stochastic and (if another) as the rollouts sample
``rollouts``   ``collect --policy checkpoint --until-successes``: K successful episodes,    ``rollouts/``
               images rendered from the stored states
``export``     ``export --only-success``: one LIBERO-layout HDF5 per task; with             ``export/``
               ``--formats hdf5 lerobot`` also ``export --format lerobot`` from that file   ``export/lerobot/``
=============  ===========================================================================  =================

``--source scripted`` runs only ``rollouts`` (the scripted expert) and ``export``: the
expert's data, the stand-in for human demonstrations in the paper's comparison.
After the tasks, ``report.md`` and its figures are computed from the files written
(:mod:`agents.pipeline.report`).

Each stage builds the typed config of its library command (``CollectConfig``, ``PretrainConfig``,
``EvalConfig``, ``TrainConfig``, ``ExportConfig``: :mod:`agents.pipeline.stages`) and runs it in a child
process, ``python -m agents.stage COMMAND TASK/configs/STAGE.json`` (:mod:`agents.stage`); the task's
``log.txt`` shows before each the equivalent ``cli.py`` command line. ``--agent NAME`` and its ``--agent.*``
flags are the agent's typed settings, as in ``train`` (defaults: :data:`GENERATE_AGENTS`, where Gaussian PPO
has its fine-tuning settings); ``bc`` and ``rl`` both get them.

Modules: :mod:`~agents.pipeline.config` (the settings), :mod:`~agents.pipeline.manifest`,
:mod:`~agents.pipeline.stages`, :mod:`~agents.pipeline.runner`, :mod:`~agents.pipeline.report`,
:mod:`~agents.pipeline.command` (:func:`generate`).

Resumable at stage granularity: ``OUT/manifest.json`` records each task's finished
stages, their settings, wall time and outputs (written atomically by this process
only). Rerunning the same command continues: finished stages are skipped, the stage
in flight starts again (``rl`` from its newest checkpoint, ``demos``/``rollouts`` from
their finished episodes). A setting that changes a finished stage's result is refused
with its name unless ``--restart-from STAGE`` discards that stage and every later one.

Parallel: tasks run concurrently, ``--max-workers // --envs-per-task`` at a time, each
stage with ``--envs-per-task`` env worker processes.

``--backend ray``: the stages with env workers (demos, bc_eval, rl, rollouts) run with
``backend="ray"`` and the cluster's address, so their workers are Ray actors spread over one
cluster: the one of ``--ray-address``, or a local Ray that ``generate`` starts in its own
process (once; the stages join it by address) and shuts down when it ends, also on
Ctrl-C/SIGTERM. Without ``--max-workers``, tasks run ``cluster CPUs // --envs-per-task``
at a time. The stage processes themselves (the learner of ``rl``, ``pretrain``, ``export``,
the collection loops) run on this machine; actors of ``collect`` write their episodes into
OUT themselves, so on several machines OUT must be on a filesystem every node mounts at
the same path (docs/faults.md, "Ray backend"). A failed task is reported with its
reason (the last line of its ``log.txt``) and the others go on. Stage processes die
with this one (Linux ``PR_SET_PDEATHSIG``), so a SIGKILL loses only the stages in
flight; SIGINT/SIGTERM stop them through their own clean shutdown (``train`` saves a
checkpoint).
"""


from agents.pipeline.command import generate
from agents.pipeline.config import GENERATE_AGENTS, GenerateConfig, expand_config_file, resolve_tasks

__all__ = ["GENERATE_AGENTS", "GenerateConfig", "expand_config_file", "generate", "resolve_tasks"]
