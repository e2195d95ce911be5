"""One process per job folder: an exclusive ``flock`` on ``<folder>/.lock`` while the job runs.

The kernel releases the lock when the process ends, however it ends (SIGKILL included), so a
killed or requeued job (SLURM requeue starts the new attempt after the old process is gone) takes
it again without any cleanup. The lock file stays; it holds the PID and host of the last holder,
which a refused process names. On NFS, Linux implements ``flock`` with the server's byte-range
locks (NFSv4, or v3 with lockd), so it also holds across nodes. Where the file system supports no
locks at all, the job runs unlocked with a warning.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import socket
import time
from pathlib import Path

from poolstudy.errors import PoolStudyError
from poolstudy.jobfolder import LOCK_FILE

log = logging.getLogger(__name__)

_UNSUPPORTED = {errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL}


class FolderBusyError(PoolStudyError):
    """Another process holds the job folder's lock: it is training (or evaluating) that job right now."""


class JobLock:
    """``with JobLock(folder):`` holds the folder's lock; raises FolderBusyError when another process has it."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self.path = self.folder / LOCK_FILE
        self._fd: int | None = None

    def holder(self) -> str:
        """Who holds the lock, as recorded in the lock file."""
        try:
            record = json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            record = {}
        if not isinstance(record, dict) or "pid" not in record:
            return "another process (it has not recorded its PID yet)"
        since = f", running since {record['since']}" if record.get("since") else ""
        return f"process {record['pid']} on host {record.get('host', '?')}{since}"

    def acquire(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                raise FolderBusyError(
                    f"{self.folder} is in use by {self.holder()} (it holds {self.path.name}); two processes must "
                    "never train one job folder at once. Nothing was "
                    "written. Wait for it to finish (a re-run then reuses or resumes its results) or stop that "
                    "process; the lock is released as soon as it ends.") from None
            if exc.errno in _UNSUPPORTED:
                log.warning("%s: the file system supports no file locks (%s); this job runs without protection "
                            "against a second process training the same folder.", self.path, exc.strerror)
                return
            raise
        self._fd = fd
        record = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(record) + "\n").encode(), 0)

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing the descriptor drops the flock
            self._fd = None

    def __enter__(self) -> "JobLock":
        self.acquire()
        return self

    def __exit__(self, *exc) -> None:
        self.release()
