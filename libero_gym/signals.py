"""SIGTERM handled like Ctrl-C, and how worker processes treat both signals.

Slurm (``scancel``, the time limit) and Kubernetes (pod deletion) stop a job with
SIGTERM and kill it some seconds later. Python's default for SIGTERM is to die at
once, so a long command would save nothing and its worker processes would spill
``BrokenPipeError`` tracebacks. :func:`sigterm_raises` makes SIGTERM raise
:class:`Terminated`, a ``KeyboardInterrupt``: every code path that keeps its work
on Ctrl-C (``train`` checkpoints, ``collect`` stops its workers) does the same on
SIGTERM, and the CLI exits with :data:`EXIT_TERMINATED` and one line.

Workers (:func:`quiet_worker_signals`) leave both signals to their parent: they
ignore SIGINT (a terminal's Ctrl-C reaches the whole process group; the parent
stops its workers itself) and keep SIGTERM's default, so that
``Process.terminate()`` stops them and a SIGTERM sent to the whole process group
(Slurm) ends them silently; the parent then reaps them.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from types import FrameType
from typing import Any

EXIT_INTERRUPTED = 130
"""Exit code after Ctrl-C: 128 + SIGINT (2), the shell convention."""
EXIT_TERMINATED = 143
"""Exit code after SIGTERM: 128 + SIGTERM (15), the shell convention (Slurm and Kubernetes read it so)."""


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by the first SIGTERM while :func:`sigterm_raises` is active.

    A ``KeyboardInterrupt`` subclass, so every ``except KeyboardInterrupt`` cleanup path
    runs for it as for Ctrl-C.
    """


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """Within the block, the first SIGTERM raises :class:`Terminated`; later ones are ignored.

    Ignoring the repeats lets the cleanup that the first one started (a checkpoint,
    stopping workers) finish; a scheduler that loses patience sends SIGKILL anyway.
    The handler is a Python function, not ``SIG_IGN``: an ignored disposition would be
    inherited by any process started with ``exec`` during the cleanup (a restarted
    forkserver), whose workers ``terminate()`` could then not stop. The previous
    handler is restored on exit. Outside the main thread this does nothing (Python
    only delivers signals there).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    raised = False

    def handler(signum: int, frame: FrameType | None) -> None:
        nonlocal raised
        if not raised:
            raised = True
            raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def quiet_worker_signals() -> None:
    """In a worker process: ignore SIGINT, default SIGTERM (see the module docstring).

    Call it first thing in the worker. With the ``fork`` start method a worker would
    otherwise inherit its parent's handlers (and raise :class:`Terminated` itself).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)


def run_command(function: Callable[[Any], Any], config: Any) -> int:
    """Run a command's library function the way every entry point does; returns the exit code.

    SIGTERM raises (:func:`sigterm_raises`); a user error (:class:`~libero_gym.errors.LiberoGymError`,
    gymnasium's) is one ``error:`` line and 2; SIGTERM and Ctrl-C stop through the command's own
    cleanup, then one line and :data:`EXIT_TERMINATED` / :data:`EXIT_INTERRUPTED`.
    """
    import sys

    from gymnasium import error as gym_error

    from libero_gym.errors import LiberoGymError

    try:
        with sigterm_raises():
            result = function(config)
    except (LiberoGymError, gym_error.Error) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except Terminated:
        print("terminated", file=sys.stderr)
        return EXIT_TERMINATED
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(result) if isinstance(result, int) else 0
