"""Data-pipeline throughput: export (frames written per second, with images) and
collection (env steps and kept frames per second, with and without image rendering).

    python benchmarks/data.py                       # prints a table
    python benchmarks/data.py --write-docs          # also updates the "Data" section of docs/benchmarks.md

Collection runs the ``random`` policy on a real LIBERO task (state-mode env; images,
when on, are rendered afterwards from the stored states, as ``collect`` does for
state-based policies). Numbers depend on the machine and on its load; compare
ratios, not absolute values.
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ.setdefault("LIBERO_GYM_ASSETS", str((REPO.parent / "shared" / "libero_assets").resolve()))
os.environ.setdefault("MUJOCO_GL", "egl")

from libero_gym import suites  # noqa: E402
from libero_gym.data import dataset as ds  # noqa: E402
from libero_gym.data.collect import CollectPlan, run_collection, shard_path, summary_path  # noqa: E402
from libero_gym.data.export import export_collection  # noqa: E402
from libero_gym.data.policies import PolicySpec  # noqa: E402

SECTION_START = "<!-- data-benchmarks:start -->"
SECTION_END = "<!-- data-benchmarks:end -->"


def bench_export(episodes: int, steps: int, image_size: int, compression: str | None) -> dict[str, float]:
    """Export a synthetic collection (random images, LIBERO sizes); frames/s and MB/s written."""
    rng = np.random.default_rng(0)
    task = suites.get_task("libero_goal", 0)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        for index in range(episodes):
            pos = rng.normal(size=(steps, 3))
            episode = ds.Episode(
                actions=rng.uniform(-1, 1, (steps, 7)), states=rng.normal(size=(steps, 79)),
                robot_states=rng.normal(size=(steps, 9)), rewards=np.zeros(steps, np.uint8),
                dones=np.zeros(steps, np.uint8),
                obs={
                    "agentview_rgb": rng.integers(0, 255, (steps, image_size, image_size, 3), dtype=np.uint8),
                    "eye_in_hand_rgb": rng.integers(0, 255, (steps, image_size, image_size, 3), dtype=np.uint8),
                    "gripper_states": rng.normal(size=(steps, 2)), "joint_states": rng.normal(size=(steps, 7)),
                    "ee_states": np.hstack([pos, pos]), "ee_pos": pos, "ee_ori": pos,
                },
                init_state=np.zeros(79), model_file="<mujoco/>", attrs={"success": True},
            )
            ds.write_dataset(shard_path(folder, index), [episode], task)
            ds.write_json_atomic(summary_path(folder, index), {
                "index": index, "seed": index, "task_id": 0, "suite": "libero_goal", "init_state_id": 0,
                "success": True, "length": steps, "kept": True, "images": True})
        start = time.perf_counter()
        result = export_collection(folder, folder / "out", compression=compression)
        seconds = time.perf_counter() - start
        size = sum(path.stat().st_size for path in result.files)
        start = time.perf_counter()
        for path in result.files:
            ds.read_dataset(path)
        read_seconds = time.perf_counter() - start
    return {"frames": result.frames, "seconds": seconds, "fps": result.frames / seconds,
            "mb_per_s": size / seconds / 1e6, "mb": size / 1e6, "read_fps": result.frames / read_seconds}


def bench_collect(images: bool, episodes: int, steps: int, workers: int, image_size: int) -> dict[str, float]:
    """Collect random-policy episodes on LIBERO-Goal task 0; env steps/s including everything."""
    with tempfile.TemporaryDirectory() as tmp:
        plan = CollectPlan(
            env_id="LIBERO-Goal-v0", task_ids=(0,), out_dir=tmp, policy=PolicySpec("random"), episodes=episodes,
            until_successes=False, keep="all", image_size=image_size, images=images, max_episode_steps=steps,
            seed=0, max_episodes=episodes, provenance={},
        )
        result = run_collection(plan, num_workers=workers, progress=False)
    frames = result.finished * steps
    per = list(result.summaries.values())
    step_s = sum(s["step_seconds"] for s in per)
    render_s = sum(s.get("render_seconds", 0.0) for s in per)
    write_s = sum(s.get("write_seconds", 0.0) for s in per)
    return {"frames": frames, "seconds": result.seconds, "fps": frames / result.seconds,
            "worker_fps": frames / (step_s + render_s + write_s), "step_fps": frames / step_s,
            "render_fps": frames / render_s if render_s else float("nan"), "write_fps": frames / write_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--episodes", type=int, default=4, help="collection episodes per configuration")
    parser.add_argument("--steps", type=int, default=50, help="steps per collected episode")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--write-docs", action="store_true", help="update docs/benchmarks.md (Data section)")
    args = parser.parse_args()

    rows = []
    for compression in (None, "lzf"):
        r = bench_export(episodes=8, steps=150, image_size=args.image_size, compression=compression)
        rows.append((f"export, images {args.image_size}px, compression {compression or 'none'}",
                     f"{r['fps']:.0f} frames/s ({r['mb_per_s']:.0f} MB/s, {r['mb']:.0f} MB, {r['frames']} frames);"
                     f" read back {r['read_fps']:.0f} frames/s"))
        print(rows[-1])
    for images in (False, True):
        r = bench_collect(images, args.episodes, args.steps, args.workers, args.image_size)
        label = f"collect, random policy, {args.workers} workers, " + (
            f"images {args.image_size}px rendered from states" if images else "no images")
        detail = f"stepping {r['step_fps']:.0f} steps/s"
        if images:
            detail += f", rendering {r['render_fps']:.1f} frames/s (2 cameras)"
        rows.append((label, f"{r['fps']:.1f} kept frames/s overall ({r['frames']} frames in {r['seconds']:.0f} s, "
                            f"worker start-up included); per worker, steady state: {r['worker_fps']:.1f} frames/s "
                            f"({detail}, writing {r['write_fps']:.0f} frames/s)"))
        print(rows[-1])

    from rich.console import Console
    from rich.table import Table

    table = Table(title="data pipeline throughput")
    table.add_column("what")
    table.add_column("result")
    for row in rows:
        table.add_row(*row)
    Console().print(table)

    if args.write_docs:
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()[0]
        body = "\n".join(
            [
                SECTION_START,
                "## Data",
                "",
                f"`python benchmarks/data.py --write-docs` ({stamp}; {os.cpu_count()} cores, load average "
                f"{load:.1f} while it ran; Python {platform.python_version()}). Export writes one LIBERO file per "
                "task from per-episode shards; collection counts every step of the kept episodes over the wall "
                "time of the whole run (worker start-up and env builds included).",
                "",
                "| what | result |",
                "| --- | --- |",
                *(f"| {what} | {result} |" for what, result in rows),
                SECTION_END,
            ]
        )
        path = REPO / "docs" / "benchmarks.md"
        text = path.read_text() if path.exists() else "# Benchmarks\n"
        if SECTION_START in text:
            text = re.sub(re.escape(SECTION_START) + ".*?" + re.escape(SECTION_END), lambda _: body, text, flags=re.S)
        else:
            text = text.rstrip() + "\n\n" + body + "\n"
        path.write_text(text)
        print(f"updated {path}")


if __name__ == "__main__":
    main()
