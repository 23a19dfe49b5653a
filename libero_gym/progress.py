"""The one progress bar of the commands (``collect``, ``train``, ``pretrain``): rich, with a stats text.

    bar = ProgressBar("collect", total=50)
    bar.update(completed=3, stats="episodes 3  successes 2")
    bar.close()
"""

from __future__ import annotations

from typing import Any


class ProgressBar:
    """``label  [bar]  M/N  stats  elapsed  [remaining]`` on stderr; ``enabled=False`` makes every call a no-op.

    Args:
        label: what runs (rich markup allowed).
        total: the count at completion.
        completed: the count already done (a resumed run).
        remaining: also show the estimated time remaining.
        enabled: show it at all (the commands' ``--no-progress``).
    """

    def __init__(self, label: str, total: int, *, completed: int = 0, remaining: bool = False,
                 enabled: bool = True) -> None:
        self._progress: Any = None
        if not enabled:
            return
        from rich.progress import (  # rich: only when a bar is shown
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        columns: list[Any] = [
            TextColumn(label),
            BarColumn(bar_width=20),  # leaves room for the numbers on an 80-column terminal
            MofNCompleteColumn(),
            TextColumn("{task.fields[stats]}"),
            TimeElapsedColumn(),
        ]
        if remaining:
            columns.append(TimeRemainingColumn())
        self._progress = Progress(*columns, transient=False)
        self._task = self._progress.add_task(label, total=total, completed=completed, stats="")
        self._progress.start()

    def update(self, *, completed: int | None = None, advance: int = 0, stats: str | None = None) -> None:
        """Set the count (or advance it) and the stats text."""
        if self._progress is None:
            return
        fields: dict[str, Any] = {} if stats is None else {"stats": stats}
        self._progress.update(self._task, completed=completed, advance=advance or None, **fields)

    def close(self) -> None:
        """Stop drawing (the last state stays on screen)."""
        if self._progress is not None:
            self._progress.stop()
            self._progress = None
