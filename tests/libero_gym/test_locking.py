"""``folder_lock``: one writer per folder; a second one fails at once and touches nothing.

The competing holders are real processes (``flock`` locks belong to an open file
description, so only another process shows what another command would see).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from libero_gym.errors import InvalidInputError, LiberoGymError
from libero_gym.locking import LOCK_NAME, FolderInUseError, folder_lock

REPO = Path(__file__).resolve().parents[2]
HOLDER = (
    "import sys\n"
    "from libero_gym.locking import folder_lock\n"
    "with folder_lock(sys.argv[1], 'run folder'):\n"
    "    print('locked', flush=True)\n"
    "    sys.stdin.read()\n"
)
"""A process that holds the lock of folder argv[1] until its stdin closes."""


@contextlib.contextmanager
def hold_lock(folder: Path) -> Iterator[subprocess.Popen[str]]:
    """Another process holding ``folder``'s lock for the ``with`` block (released when it ends)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(folder)], env=env, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "locked", "the holder did not lock"
        yield proc
    finally:
        if proc.poll() is None:
            proc.communicate(timeout=30)  # closes its stdin: it releases the lock and exits


def _snapshot(root: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes()) for p in root.rglob("*") if p.is_file()}


def test_lock_writes_its_pid_and_cleans_up(tmp_path: Path) -> None:
    folder = tmp_path / "new" / "run"
    with folder_lock(folder, "run folder") as lock_file:
        assert lock_file == folder / LOCK_NAME
        assert lock_file.read_text().strip() == str(os.getpid())
    assert not (tmp_path / "new").exists(), "folders the lock created (and nothing else wrote to) stay behind"

    with folder_lock(folder) as lock_file:
        (folder / "result.txt").write_text("kept")
    assert not lock_file.exists() and (folder / "result.txt").read_text() == "kept"


def test_folder_in_use_by_another_process(tmp_path: Path) -> None:
    folder = tmp_path / "out"
    with hold_lock(folder) as holder:
        (folder / "episode.json").write_text("{}")
        before = _snapshot(folder)
        with pytest.raises(FolderInUseError) as caught, folder_lock(folder, "collection folder"):
            pytest.fail("the second lock was granted")
        message = str(caught.value)
        assert isinstance(caught.value, LiberoGymError) and "\n" not in message
        assert f"collection folder '{folder}'" in message and f"PID {holder.pid}" in message, message
        assert _snapshot(folder) == before, "a refused lock touched the folder"
    with folder_lock(folder):  # released when the holder ended
        pass


def test_lock_of_a_killed_process_is_free(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    with hold_lock(folder) as holder:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=30)
    assert (folder / LOCK_NAME).read_text().strip() == str(holder.pid)  # its lock file stays, its lock does not
    with folder_lock(folder) as lock_file:
        assert lock_file.read_text().strip() == str(os.getpid())


def test_second_lock_in_the_same_process_fails(tmp_path: Path) -> None:
    with folder_lock(tmp_path), pytest.raises(FolderInUseError, match=f"PID {os.getpid()}"), folder_lock(tmp_path):
        pass


def test_a_refused_lock_leaves_no_folder_behind(tmp_path: Path) -> None:
    """The error raised inside the block (a command refusing its input) removes the folders the lock made."""
    folder = tmp_path / "a" / "b"
    with pytest.raises(InvalidInputError), folder_lock(folder):
        raise InvalidInputError("bad input")
    assert not (tmp_path / "a").exists()


def test_a_file_in_the_way_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(InvalidInputError, match="not a folder"), folder_lock(tmp_path / "file"):
        pass
