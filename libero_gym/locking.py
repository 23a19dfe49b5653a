"""One writer per output folder: an OS lock that a killed process releases.

Two commands writing the same folder (two ``collect --out D`` started at once, a
``train --resume R`` run twice) would each report success while overwriting or
deleting the other's files. Every command that writes a run or output folder
holds :func:`folder_lock` on it for as long as it writes: ``collect``, ``export``,
``train`` and ``pretrain`` (see ``cli.py``). The second command fails at once with
:class:`FolderInUseError` (one line on the CLI, exit 2) naming the folder and the
holder's PID, before it writes anything there.

The lock is ``fcntl.flock`` on ``FOLDER/.lock`` (:data:`LOCK_NAME`), which also holds
the holder's PID for the message. The kernel drops the lock when its holder exits,
however it exits (SIGKILL, OOM kill, a crash): no stale lock to clean up by hand. A
``flock`` belongs to one open file description, so a second ``folder_lock`` on the
same folder fails even within one process. On NFS, Linux emulates ``flock`` with
byte-range locks, which the server arbitrates across machines.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from libero_gym.errors import InvalidInputError, LiberoGymError

LOCK_NAME = ".lock"
"""The lock file inside a locked folder (removed again when the lock is released)."""
_PID_READ_TRIES = 5
# A holder writes its PID right after it takes the lock; a reader that comes within that
# instant finds the file empty and retries this many times, _PID_READ_PAUSE_S apart.
_PID_READ_PAUSE_S = 0.02


class FolderInUseError(LiberoGymError):
    """Another process holds the folder's lock (another command is writing there)."""


@contextlib.contextmanager
def folder_lock(path: str | os.PathLike[str], what: str = "folder") -> Iterator[Path]:
    """Hold the exclusive lock of folder ``path`` for the ``with`` block.

    The folder (and missing parents) is created if needed; folders created here are
    removed again on exit if they are still empty then (a command that refused its
    input leaves nothing behind). Nothing else in the folder is touched, whether the
    lock is taken or not.

    Args:
        path: the folder to lock.
        what: what the folder is, for the error message (``"run folder"``, ...).

    Yields:
        The lock file's path.

    Raises:
        FolderInUseError: another process (or another ``folder_lock`` in this one)
            holds the lock; nothing was written.
        InvalidInputError: ``path`` is a file, or cannot be created.
    """
    folder = Path(path)
    created = _make_folder(folder)
    lock_path = folder / LOCK_NAME
    try:
        fd = _acquire(lock_path, folder, what)
    except BaseException:
        _remove_empty(created)
        raise
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield lock_path
    finally:
        # Unlink while still holding the lock, then release it: a process that opened the
        # old file meanwhile sees it was unlinked (_acquire compares inodes) and retries.
        with contextlib.suppress(FileNotFoundError):
            lock_path.unlink()
        os.close(fd)
        _remove_empty(created)


def _acquire(lock_path: Path, folder: Path, what: str) -> int:
    """Open and lock ``lock_path``; the descriptor holding the lock."""
    while True:
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as error:
            os.close(fd)
            if error.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                raise
            pid = _read_pid(lock_path)
            holder = f"PID {pid}" if pid else "PID unknown"
            raise FolderInUseError(
                f"{what} {str(folder)!r} is in use by another process ({holder}); wait for it to end or "
                "choose another folder"
            ) from None
        try:
            same_file = os.fstat(fd).st_ino == os.stat(lock_path).st_ino
        except FileNotFoundError:
            same_file = False
        if same_file:
            return fd
        os.close(fd)  # the previous holder unlinked it as we opened it: lock the new one


def _read_pid(lock_path: Path) -> int | None:
    for _ in range(_PID_READ_TRIES):
        with contextlib.suppress(OSError, ValueError):
            return int(lock_path.read_text().strip())
        time.sleep(_PID_READ_PAUSE_S)
    return None


def _make_folder(folder: Path) -> list[Path]:
    """Create ``folder`` and its missing parents; the ones created, deepest first."""
    missing = []
    current = folder.absolute()
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise InvalidInputError(f"{str(folder)!r} is not a folder (a file is in the way)") from None
    except PermissionError as error:
        raise InvalidInputError(f"cannot create {str(folder)!r}: {error.strerror}") from None
    return missing


def _remove_empty(created: list[Path]) -> None:
    """Remove the folders this lock created, deepest first, as long as they are empty."""
    for folder in created:
        try:
            folder.rmdir()
        except OSError:  # not empty (the command wrote there), or already gone
            return
