"""Learning curves of several runs on one plot: training-rollout success vs env steps.

Reads each run folder's ``logs/progress*.csv`` (SB3's logger; a resumed run's
``progress-resumed-*.csv`` continue it) and plots ``rollout/success_rate`` (the last
100 finished episodes) against ``time/total_timesteps``.

Usage::

    python scripts/plot_curves.py --out docs/figures/goal0_curves.png --title "LIBERO-Goal task 0" \\
        --run "DiffusionPPO=runs/method/goal0/rl_diffusion" --run "Gaussian PPO=runs/method/goal0/rl_gaussian" \\
        --hline "diffusion BC, stochastic eval=0.42"
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project beside this script
from agents.pipeline.report import learning_curve as curve  # noqa: E402  (one reader of the SB3 CSV logs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", action="append", default=[], help="LABEL=RUN_DIR (repeatable)")
    parser.add_argument("--hline", action="append", default=[],
                        help="LABEL=VALUE[@N], a dotted reference line in the colour of the N-th --run")
    parser.add_argument("--title", default="")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for index, spec in enumerate(args.run):
        label, _, folder = spec.partition("=")
        steps, success = curve(Path(folder))
        ax.plot(steps, success, label=label, color=colours[index % len(colours)])
    for index, spec in enumerate(args.hline):
        label, _, value = spec.partition("=")
        value, _, colour = value.partition("@")
        ax.axhline(float(value), ls=":", color=colours[int(colour or index) % len(colours)], label=label)
    ax.set_xlabel("env steps (control steps)")
    ax.set_ylabel("training-rollout success (last 100 episodes)")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(args.title)
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
