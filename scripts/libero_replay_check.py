"""Rebuild and replay LIBERO-layout datasets the way LIBERO's own tooling does.

Does, per file and demo, what LIBERO's ``scripts/create_dataset.py`` (and the
converters built on it) do, with LIBERO's and robosuite's code only:

1. ``env_kwargs = env_args["env_kwargs"]``, ``bddl_file_name`` from ``data.attrs``;
   ``env = TASK_MAPPING[problem_name](**env_kwargs)``;
2. per demo: ``env.reset()``, ``env.reset_from_xml_string(postprocess_model_xml(model_file, {}))``,
   ``env.sim.reset()``, ``env.sim.set_state_from_flattened(states[0])``, ``env.sim.forward()``;
3. ``env.step(action)`` for every stored action (robosuite's own step), comparing
   the state before each action with the stored ``states[t]`` and checking
   ``env._check_success()`` after each step.

The one addition: a ``bddl_file_name`` that does not exist as recorded (a dataset
from another machine) is relocated under this machine's LIBERO BDDL folder by its
part after ``bddl_files/``, as every consumer of LIBERO's released files does
(their paths point at the authors' machines). The path our exports record
(``libero/libero/bddl_files/...``, as LIBERO's released files) resolves as is
from the root of a LIBERO checkout or ``site-packages``.

It also checks ``robosuite.make(env_name, ...)``'s registry (robomimic's way)
names the same class as ``TASK_MAPPING[problem_name]``.

Usage::

    python scripts/libero_replay_check.py FILE.hdf5 [FILE.hdf5 ...] [--json OUT.json] [--max-demos N]

Prints one line per demo and a summary; exit code 0 when every replayed demo
that was recorded as a success succeeds again, 1 otherwise.

Our demos record the env reset's settle steps as their first steps
(``settle_steps`` attribute; ``states[0]`` is LIBERO's init state), so this plain
replay starts where the recording started and reproduces it bit for bit. Older
exports started after the settle steps; ``--settled-robot-state`` gives those (and
only those) robosuite's Python-side robot state after settling, to separate what a
replay cannot restore from what the ``model_file`` reload changes.

State error: per step, the largest absolute difference over ``qpos`` and ``qvel``
of the flattened state (``states[t][1:]``; entry 0 is the simulation time), and
over ``qpos`` alone (m for positions, rad for angles, quaternion components).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

BDDL_FOLDER = "bddl_files"
OPEN_GRIPPER_COMMAND = np.array([1.0, -1.0])
"""robosuite's Panda gripper command after a few "open" actions (LIBERO's settle steps)."""


def _setup_libero() -> None:
    """Make ``libero.libero`` importable without prompts: LIBERO's config and asset folder.

    A LIBERO install with its assets needs nothing; on a libero-gym machine this
    writes LIBERO's config file and points LIBERO at ``$LIBERO_GYM_ASSETS``.
    """
    try:
        from libero_gym.libero_config import import_libero
    except ImportError:
        return
    import_libero()


def _bddl_file(recorded: str) -> tuple[str, bool]:
    """(path to use, whether it had to be relocated)."""
    if os.path.exists(recorded):
        return recorded, False
    from libero.libero import get_libero_path

    suffix = recorded.split(BDDL_FOLDER + "/")[-1]
    return os.path.join(get_libero_path("bddl_files"), suffix), True


def _attr(value: Any) -> Any:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _settle_robot_state(env: Any) -> None:
    """Give robosuite's Python-side robot state the values it has after LIBERO's settle steps.

    For demos that start after the settle steps (older exports). Two pieces of state
    live outside the MuJoCo state (so outside any dataset): the Panda gripper's
    smoothed command (``gripper.current_action``, integrated from the sign of each
    gripper action; LIBERO's settle steps ``[0]*6 + [-1]`` saturate it at "open", a
    rebuilt env starts it at 0) and the controller's cached kinematics
    (``controller.new_update``: after ``set_state_from_flattened`` the first
    ``set_goal`` would otherwise reuse the end-effector pose and Jacobians of the
    reset pose). A third, MuJoCo's solver warm start (``data.qacc_warmstart``), is
    not restored (``sim.reset()`` zeroes it). Only for measuring: LIBERO's scripts do
    not do this.
    """
    for robot in env.robots:
        # PandaGripper.format_action: clip(current + [-1, 1] * speed * sign(action)); open (-1) saturates at:
        robot.gripper.current_action = OPEN_GRIPPER_COMMAND.copy()
        robot.controller.new_update = True


def replay_file(path: Path, max_demos: int | None = None, settled_robot_state: bool = False) -> list[dict[str, Any]]:
    """Replay the demos of one file LIBERO's way; one result dict per demo.

    Args:
        path: the HDF5 file.
        max_demos: replay at most this many demos.
        settled_robot_state: for demos without recorded settle steps, after setting
            ``states[0]`` also restore robosuite's Python-side robot state
            (:func:`_settle_robot_state`), to measure what the reload changes.
    """
    import h5py
    import libero.libero.utils.utils as libero_utils
    from libero.libero.envs import TASK_MAPPING
    from robosuite.environments.base import REGISTERED_ENVS

    results = []
    with h5py.File(path, "r") as file:
        data = file["data"]
        env_args = json.loads(_attr(data.attrs["env_args"]))
        env_kwargs = env_args["env_kwargs"]
        problem_name = env_args["problem_name"]
        bddl_file_name, relocated = _bddl_file(_attr(data.attrs["bddl_file_name"]))
        libero_utils.update_env_kwargs(env_kwargs, bddl_file_name=bddl_file_name)
        robomimic_class = REGISTERED_ENVS.get(env_args["env_name"])
        env = TASK_MAPPING[problem_name](**env_kwargs)
        try:
            demos = sorted((k for k in data if k.startswith("demo_")), key=lambda k: int(k[5:]))
            for name in demos[:max_demos]:
                group = data[name]
                clock = time.perf_counter()
                env.reset()
                model_xml = libero_utils.postprocess_model_xml(_attr(group.attrs["model_file"]), {})
                states = group["states"][()]
                actions = group["actions"][()]
                env.reset_from_xml_string(model_xml)
                env.sim.reset()
                env.sim.set_state_from_flattened(states[0])
                env.sim.forward()
                settle_steps = int(group.attrs.get("settle_steps", 0))
                if settled_robot_state and settle_steps == 0:
                    _settle_robot_state(env)
                errors, success, first_success = [], False, None
                for t, action in enumerate(actions):
                    state = env.sim.get_state().flatten()
                    errors.append(np.abs(state[1:] - states[t][1:]))
                    env.step(action)
                    if not success and env._check_success():
                        success, first_success = True, t
                err = np.stack(errors)
                nq = env.sim.model.nq  # flattened state: time, qpos (nq), qvel (nv)
                recorded = group.attrs.get("success")
                results.append(
                    {
                        "file": str(path),
                        "demo": name,
                        "problem_name": problem_name,
                        "bddl_relocated": relocated,
                        "robomimic_class_matches": robomimic_class is TASK_MAPPING[problem_name],
                        "steps": int(len(actions)),
                        "settle_steps": settle_steps,
                        "success": success,
                        "first_success_step": first_success,
                        "recorded_success": None if recorded is None else bool(recorded),
                        "step_max_error": err.max(axis=1).tolist(),
                        "step_max_qpos_error": err[:, :nq].max(axis=1).tolist(),
                        "mean_abs_error": float(err.mean()),
                        "final_max_error": float(err[-1].max()),
                        "seconds": time.perf_counter() - clock,
                    }
                )
        finally:
            env.close()
    return results


def summarize(results: list[dict[str, Any]]) -> dict[str, Any]:
    """Success rate and state-error percentiles over all demos and steps."""
    steps = np.concatenate([np.asarray(r["step_max_error"]) for r in results])
    qpos_steps = np.concatenate([np.asarray(r["step_max_qpos_error"]) for r in results])
    demo_max = np.asarray([max(r["step_max_error"]) for r in results])
    expected = [r for r in results if r["recorded_success"] is not False]
    return {
        "demos": len(results),
        "successes": sum(r["success"] for r in results),
        "success_rate": sum(r["success"] for r in expected) / max(1, len(expected)),
        "steps": int(steps.size),
        "step_max_error_percentiles": {
            str(q): float(np.percentile(steps, q)) for q in (50, 90, 99, 100)
        },
        "step_max_qpos_error_percentiles": {
            str(q): float(np.percentile(qpos_steps, q)) for q in (50, 90, 99, 100)
        },
        "demo_max_error_percentiles": {str(q): float(np.percentile(demo_max, q)) for q in (50, 90, 100)},
        "demo_max_qpos_error_percentiles": {
            str(q): float(np.percentile([max(r["step_max_qpos_error"]) for r in results], q)) for q in (50, 90, 100)
        },
        "mean_abs_error": float(np.mean([r["mean_abs_error"] for r in results])),
        "exact_demos": int(np.sum(demo_max == 0.0)),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="+", type=Path, help="LIBERO-layout HDF5 files")
    parser.add_argument("--json", type=Path, default=None, help="write per-demo results and the summary here")
    parser.add_argument("--max-demos", type=int, default=None, help="replay at most this many demos per file")
    parser.add_argument(
        "--settled-robot-state", action="store_true",
        help="for demos without recorded settle steps (older exports), also restore robosuite's gripper "
        "command and controller cache as after the settle steps (not what LIBERO does)",
    )
    args = parser.parse_args(argv)
    _setup_libero()
    results = []
    for path in args.files:
        for result in replay_file(path, args.max_demos, args.settled_robot_state):
            results.append(result)
            print(
                f"{Path(result['file']).name} {result['demo']}: steps={result['steps']} "
                f"success={result['success']} (recorded {result['recorded_success']}) "
                f"max_err={max(result['step_max_error']):.3g} final_err={result['final_max_error']:.3g} "
                f"{result['seconds']:.1f}s",
                flush=True,
            )
    summary = summarize(results)
    print(json.dumps(summary, indent=2))
    if args.json is not None:
        args.json.write_text(json.dumps({"summary": summary, "demos": results}))
    failed = [r for r in results if r["recorded_success"] is not False and not r["success"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
