"""Two facts about the operating system that several parts need: whether a process still lives,
and an OS error said in one line with what went wrong and where."""

from __future__ import annotations

import errno
import os


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # it exists, owned by someone else
        return True
    return True


def os_problem(exc: OSError, path: str | os.PathLike | None = None) -> str:
    """One line for an OS error: what went wrong and where (disk full, read-only, permissions)."""
    where = path or exc.filename or "?"
    if exc.errno == errno.ENOSPC:
        return f"no space left on the device holding {where}"
    if exc.errno == errno.EROFS:
        return f"{where} is on a read-only file system"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"no permission to write {where}"
    return f"{exc.strerror or exc} ({where})"
