"""Permission bits for files written through a temporary name then renamed.

``tempfile.mkstemp`` creates its file with mode 0600 and ``mkdtemp`` its folder
with 0700, whatever the umask, so a file written there and ``os.replace``-d onto
its target keeps a mode that no other user or group can read. A plain ``open()``
gives 0666 and ``mkdir`` 0777, both less the process umask (0644 and 0755 under
the usual umask 022). :func:`set_default_mode` puts that mode on a temporary
before it is renamed, so atomic writes end up with the mode a normal write gives.

Used by the dataset writer (:mod:`libero_gym.data.dataset`) and by the agents'
checkpoints; this module imports nothing of the project.
"""

from __future__ import annotations

import os
from pathlib import Path

FILE_BASE_MODE = 0o666
"""What ``open()`` asks the kernel for (``O_CREAT`` with Python's default mode) before the umask."""
DIR_BASE_MODE = 0o777
"""What ``os.mkdir`` asks for before the umask."""


def current_umask() -> int:
    """The process umask, read without changing it where the OS allows.

    Linux (>= 4.7) reports it in ``/proc/self/status``; elsewhere it is read by
    setting and restoring it (``os.umask`` has no read-only form), which is
    process-wide for an instant.
    """
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def default_mode(*, directory: bool = False) -> int:
    """The mode a plain ``open()`` (or ``mkdir`` with ``directory=True``) would give now."""
    return (DIR_BASE_MODE if directory else FILE_BASE_MODE) & ~current_umask()


def set_default_mode(path: str | os.PathLike[str]) -> None:
    """Give ``path`` (a file or folder) the mode a plain ``open()``/``mkdir`` would have."""
    target = Path(path)
    os.chmod(target, default_mode(directory=target.is_dir()))
