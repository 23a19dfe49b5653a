"""Files written atomically: a reader sees the old file or the new one, never half of either.

:func:`atomic_path` for any writer (HDF5 exports, episode shards), :func:`write_json_atomic`
for JSON (collection manifests, run configs and summaries, evaluation results).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from libero_gym.file_modes import set_default_mode


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success move it over ``path``.

    The temporary file is fsynced, given the mode a plain ``open()`` would give
    (0644 under umask 022, not ``mkstemp``'s 0600), then ``os.replace``-d onto the
    target (atomic on POSIX within one folder), then the folder is fsynced. A failure or a kill
    at any point leaves the previous ``path`` untouched (and at worst a
    ``.<name>.tmp-*`` file, which :func:`remove_stale_temporaries` cleans).
    """
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.tmp-", dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        set_default_mode(tmp)  # mkstemp made it 0600; a plain open() gives 0666 & ~umask
        os.replace(tmp, target)
        _fsync_dir(target.parent)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_json_atomic(path: str | os.PathLike[str], payload: Any, *, sort_keys: bool = True) -> None:
    """Write ``payload`` as indented JSON (numpy values and paths as JSON), atomically: the one JSON writer
    of the project (manifests, summaries, run configs, evaluation results)."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(payload, indent=2, sort_keys=sort_keys, default=json_default) + "\n")


def remove_stale_temporaries(folder: str | os.PathLike[str]) -> int:
    """Delete temporaries left by killed writers in ``folder``; returns how many."""
    count = 0
    for tmp in Path(folder).glob(".*.tmp-*"):
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
            count += 1
    return count


def json_default(value: Any) -> Any:
    """``json.dumps``'s ``default``: numpy scalars and arrays, paths."""
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def jsonable(value: Any) -> Any:
    """``value`` with paths as strings and tuples as lists, recursively (a config dataclass's ``asdict``)."""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (tuple, list)):
        return [jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    return value
