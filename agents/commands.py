"""The ``train``, ``pretrain`` and ``eval`` commands: each runs its library function and prints its summary.

What ``cli.py`` runs after parsing a command line, and what ``python -m agents.stage`` runs from a config
file (:mod:`agents.stage`); torch and SB3 are imported only when a command runs.
"""

from __future__ import annotations

from agents.configs import EvalConfig, PretrainConfig, TrainConfig


def run_train(config: TrainConfig) -> int:
    """Run :func:`agents.train.train` and print its summary."""
    from agents.train import print_summary, train

    print_summary(train(config))
    return 0


def run_pretrain(config: PretrainConfig) -> int:
    """Run :func:`agents.pretrain.pretrain` and print its summary."""
    from agents.pretrain import pretrain, print_summary

    print_summary(pretrain(config))
    return 0


def run_eval(config: EvalConfig) -> int:
    """Run :func:`agents.evaluate.evaluate` and print the table."""
    from agents.evaluate import evaluate, print_results

    print_results(evaluate(config))
    return 0
