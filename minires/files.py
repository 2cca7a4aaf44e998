"""Atomic file writes, and the cleanup of what a killed write leaves behind.

Every file minires writes (checkpoints, safetensors files, downloads) first goes to a
temporary file in the destination folder, named ``.<name>.<pid>-<host>-<random>.tmp``.
Only once it is complete and on disk (``fsync``) is it renamed over the destination
(``os.replace``, atomic on one filesystem): a reader sees the old file or the new one,
never half of one, and an error midway removes the temporary file.

A process killed mid-write (SIGKILL, the out-of-memory killer, a power cut) cannot
remove its temporary file. The next write into the same folder does: it removes the
temporary files of this naming scheme whose writer is gone (same machine, that process
id no longer running, untouched for a minute) or that nobody has written to for a day.
Other files are never touched, whatever their names.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import socket
import time
import uuid

# A writer whose process is gone may still be finishing on another machine that shares
# the folder under the same host name, or in another PID namespace: wait this long.
DEAD_WRITER_GRACE_S = 60.0
# Whoever wrote it, a temporary file unchanged for this long is abandoned.
ABANDONED_AFTER_S = 24 * 3600.0

_TEMP = re.compile(r"^\..+\.(?P<pid>\d+)-(?P<host>[0-9a-f]{8})-[0-9a-f]{8}\.tmp$")
# The names earlier minires versions used: mr.save's and the downloader's (mkstemp).
_LEGACY = (re.compile(r"^\..+\.[0-9a-f]{12}\.tmp$"), re.compile(r"^\..+\.[a-z0-9_]{8}\.part$"))


def _host_tag() -> str:
    return hashlib.sha1(socket.gethostname().encode("utf-8", "replace")).hexdigest()[:8]


def temporary_path(path) -> str:
    """A fresh temporary name next to ``path`` that ``remove_stale_temporaries`` knows."""
    path = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(path)
    return os.path.join(folder, f".{name}.{os.getpid()}-{_host_tag()}-{uuid.uuid4().hex[:8]}.tmp")


def _process_is_gone(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except (PermissionError, OverflowError, OSError):
        return False  # it exists (another user's), or the id is not a real process id
    return False


def is_stale_temporary(name: str, age_s: float) -> bool:
    """Whether a file ``name`` last modified ``age_s`` seconds ago is a dead write's leftover."""
    match = _TEMP.match(name)
    if match is not None:
        if age_s >= ABANDONED_AFTER_S:
            return True
        return (age_s >= DEAD_WRITER_GRACE_S and match["host"] == _host_tag()
                and _process_is_gone(int(match["pid"])))
    return any(p.match(name) for p in _LEGACY) and age_s >= ABANDONED_AFTER_S


def remove_stale_temporaries(folder) -> list:
    """Remove the leftovers of killed writes in ``folder``; returns the names removed."""
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith("."):
            continue
        with contextlib.suppress(OSError):
            if not entry.is_file(follow_symlinks=False):
                continue
            if is_stale_temporary(entry.name, now - entry.stat(follow_symlinks=False).st_mtime):
                os.remove(entry.path)
                removed.append(entry.name)
    return removed


def fsync_folder(folder: str) -> None:
    """Make a rename inside ``folder`` durable (POSIX; a no-op elsewhere)."""
    if os.name == "posix":
        with contextlib.suppress(OSError):
            fd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)


def atomic_write(path, write) -> None:
    """Call ``write(file)`` on a temporary file next to ``path``, then rename it over ``path``.

    The rename happens only after the data reached the disk (``fsync``). On any error,
    KeyboardInterrupt included, the temporary file is removed and ``path`` is untouched.
    """
    path = os.path.abspath(os.fspath(path))
    folder = os.path.dirname(path)
    remove_stale_temporaries(folder)
    tmp = temporary_path(path)
    try:
        with open(tmp, "xb") as file:  # 'x': never clobber; honours the umask
            write(file)
            file.flush()
            os.fsync(file.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.remove(tmp)
        raise
    fsync_folder(folder)
