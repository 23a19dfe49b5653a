"""What a policy did to the objects of a task, episode by episode: how high it lifted each, how far it moved them.

For each init state given, one episode of a checkpoint's policy (``predict``, deterministic or stochastic,
on a per-step state env, up to the suite's step limit); per body whose name contains ``--bodies``: the highest lift above its start,
the horizontal distance from its start at the end, and the gripper's distance to it at the end; plus the
steps the gripper was commanded closed. Enough to tell a grasp that closed on nothing (nothing lifted), a
drop (lifted, then far from the gripper) and a wrong object from one another.

Usage::

    python scripts/object_trace.py runs/method_s24/spatial6/bc_diffusion/checkpoint --env LIBERO-Spatial-v0 \\
        --task-id 6 --init-states 0 1 2 3 4 5 --bodies bowl
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project beside this script
from agents.checkpoint import load_agent  # noqa: E402
from libero_gym.env import LiberoEnv  # noqa: E402
from libero_gym.registration import resolve_env  # noqa: E402

GRIP_SITE = "gripper0_grip_site"


def trace(model: object, env: LiberoEnv, init_state: int, bodies: str, deterministic: bool) -> dict[str, object]:
    """One episode from ``init_state``; the summary printed per line."""
    obs, _ = env.reset(options={"init_state_id": init_state})
    model_ = env.sim.model
    names = [n for n in (model_.body_id2name(b) for b in range(model_.nbody)) if n and bodies in n and n.endswith("_main")]
    if not names:
        raise SystemExit(f"no object body (*_main) with {bodies!r} in its name in this task")
    ids = [model_.body_name2id(n) for n in names]
    data = env.sim.data
    start = data.body_xpos[ids].copy()  # (n, 3)
    lift = np.zeros(len(ids))
    closed, steps, info, episode_start = 0, 0, {}, True
    while True:
        action, _ = model.predict(  # type: ignore[attr-defined]
            {k: np.asarray(v)[None] for k, v in obs.items()}, episode_start=np.array([episode_start]), deterministic=deterministic
        )
        episode_start = False
        obs, _, terminated, truncated, info = env.step(action[0])
        steps += 1
        closed += int(action[0][-1] > 0)
        lift = np.maximum(lift, data.body_xpos[ids][:, 2] - start[:, 2])
        if terminated or truncated or steps >= env.step_limit:  # the suite's limit (gym.make's TimeLimit)
            break
    end = data.body_xpos[ids]
    grip = data.site_xpos[model_.site_name2id(GRIP_SITE)]
    return {
        "init_state": init_state,
        "success": bool(info.get("is_success", False)),
        "steps": steps,
        "gripper_closed_steps": closed,
        "max_lift_cm": {n: round(100 * float(v), 1) for n, v in zip(names, lift)},
        "moved_cm": {n: round(100 * float(np.linalg.norm(e[:2] - s[:2])), 1) for n, e, s in zip(names, end, start)},
        "gripper_to_body_cm": {n: round(100 * float(np.linalg.norm(grip - e)), 1) for n, e in zip(names, end)},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path, help="a checkpoint or run folder (state observations)")
    parser.add_argument("--env", required=True, help="e.g. LIBERO-Spatial-v0")
    parser.add_argument("--task-id", type=int, required=True)
    parser.add_argument("--init-states", type=int, nargs="+", required=True)
    parser.add_argument("--bodies", default="", help="substring of the body names to follow (e.g. bowl); all objects if empty")
    parser.add_argument("--sampling", choices=("deterministic", "stochastic"), default="deterministic")
    args = parser.parse_args()
    model, _ = load_agent(args.checkpoint, env_id=args.env)
    suite, (task_id,) = resolve_env(args.env, (args.task_id,))
    env = LiberoEnv(suite=suite, task_id=task_id)
    try:
        for init_state in args.init_states:
            print(json.dumps(trace(model, env, init_state, args.bodies, args.sampling == "deterministic")), flush=True)
    finally:
        env.close()


if __name__ == "__main__":
    main()
