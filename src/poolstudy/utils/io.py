"""Atomic file writes: a reader never sees a half-written file."""

from __future__ import annotations

import errno
import json
import os
import tempfile
from pathlib import Path
from typing import Any


_UMASK = os.umask(0)
os.umask(_UMASK)

# A full disk (ENOSPC) and an exhausted quota (EDQUOT) need the same action from the user.
_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 10_000 else f"{n} bytes"


class NoSpaceError(OSError):
    """Writing ``path`` failed for want of space; the file was left as it was before (atomic write).

    ``needed`` is the size in bytes of what was being written, ``free`` the bytes the file system
    reported free to this user afterwards (None when it cannot tell).
    """

    def __init__(self, path: Path, needed: int, free: int | None, cause: OSError):
        self.path, self.needed, self.free = path, needed, free
        free_text = f"{_megabytes(free)} free" if free is not None else "free space unknown"
        kind = "disk quota exceeded" if cause.errno != errno.ENOSPC else "no space left on the device"
        super().__init__(cause.errno, (
            f"{kind} of {path.parent} while writing {path.name} ({_megabytes(needed)} needed, {free_text}); "
            f"{path.name} was left as it was (written atomically, nothing half-written). Free space on that disk "
            f"or use a folder on another one"))

    def __str__(self) -> str:
        return self.strerror


def free_bytes(folder: Path) -> int | None:
    try:
        stat = os.statvfs(folder)
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and a rename.

    Raises NoSpaceError (an OSError) when the disk or quota is full; ``path`` is then unchanged.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; results are meant to be shared
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(exc, OSError) and exc.errno in _NO_SPACE and not isinstance(exc, NoSpaceError):
            raise NoSpaceError(path, len(data), free_bytes(path.parent), exc) from exc
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, allow_nan=True) + "\n")
