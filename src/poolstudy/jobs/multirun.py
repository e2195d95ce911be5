"""What each job of a multirun ended with, told to the process that launched the multirun.

Jobs may run in that process (Hydra's basic launcher), in joblib workers, in submitit processes or
on other SLURM nodes, so they report through files: the launching process creates a ledger folder
in the sweep dir (``.outcomes/<host>-<pid>-<ns>/``) and names it, with its host and PID and the
command that resumes the multirun, in the environment variable POOLSTUDY_MULTIRUN, which every
launcher passes on to its jobs. Each job writes one small JSON file there; at the end the
launching process lists the jobs that did not finish, removes the ledger and exits non-zero.

The same record lets a job started by a local launcher watch that launcher (LauncherWatch): when
the launching process ends (SIGTERM, SIGKILL, a closed terminal), its jobs stop instead of training
on unobserved, and their folders' locks are released.
"""

from __future__ import annotations

import _thread
import json
import logging
import os
import select
import shutil
import signal
import socket
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from poolstudy.jobs.interrupt import LauncherGone
from poolstudy.utils.io import atomic_write_json

log = logging.getLogger(__name__)

ENV = "POOLSTUDY_MULTIRUN"
LEDGER_DIR = ".outcomes"
OK_STATES = ("complete", "reused", "pruned")


@dataclass
class Multirun:
    sweep_dir: str   # absolute
    ledger: str      # absolute
    host: str
    pid: int
    resume: str      # the command that re-runs (and so resumes) this multirun
    made_sweep_dir: bool = False  # the sweep dir did not exist before: removed again if nothing else lands there


def start(sweep_dir: str | os.PathLike, resume: str) -> Multirun:
    """Called in the launching process before any job starts; exports the record to the jobs."""
    sweep = Path(sweep_dir).absolute()
    ledger = sweep / LEDGER_DIR / f"{socket.gethostname()}-{os.getpid()}-{time.time_ns()}"
    info = Multirun(str(sweep), str(ledger), socket.gethostname(), os.getpid(), resume, not sweep.exists())
    ledger.mkdir(parents=True, exist_ok=True)
    os.environ[ENV] = json.dumps(asdict(info))
    return info


def current() -> Multirun | None:
    try:
        return Multirun(**json.loads(os.environ[ENV]))
    except (KeyError, TypeError, ValueError):
        return None


def of_job(job_dir: str | os.PathLike) -> Multirun | None:
    """The multirun ``job_dir`` belongs to, if this process was started by one (its folder is in the sweep dir)."""
    info = current()
    if info is None:
        return None
    try:
        Path(job_dir).absolute().relative_to(info.sweep_dir)
    except ValueError:  # a record left over in the environment by another multirun of this process
        return None
    return info


def record(job_dir: str | os.PathLike, job_num: Any, status: str, reason: str = "") -> None:
    """Report a job's end to its multirun's launching process (no-op outside a multirun)."""
    info = of_job(job_dir)
    if info is None or not Path(info.ledger).is_dir():  # no multirun, or its launcher has already finished
        return
    entry = {"folder": str(Path(job_dir).absolute()), "num": job_num, "status": status, "reason": reason}
    try:
        atomic_write_json(Path(info.ledger) / f"{job_num}-{os.getpid()}.json", entry)
    except OSError as exc:  # the job's own folder says what happened; the summary will miss this one line
        log.warning("Could not report this job's outcome to the multirun (%s).", exc)


def finish(info: Multirun) -> list[dict[str, Any]]:
    """The jobs' reports in job order; removes the ledger and the environment record."""
    entries = []
    ledger = Path(info.ledger)
    for path in ledger.glob("*.json"):
        try:
            entries.append(json.loads(path.read_text()))
        except (OSError, ValueError):
            continue
    shutil.rmtree(ledger, ignore_errors=True)
    for folder in (ledger.parent, Path(info.sweep_dir)) if info.made_sweep_dir else (ledger.parent,):
        try:
            folder.rmdir()  # only when empty: no other multirun's ledger, no job (a sweep stopped before any)
        except OSError:
            break
    if os.environ.get(ENV) == json.dumps(asdict(info)):
        del os.environ[ENV]
    return sorted(entries, key=lambda e: (not isinstance(e.get("num"), int), e.get("num") or 0, e["folder"]))


def one_line(reason: str, folder: str = "", limit: int = 200) -> str:
    """The gist of a job's message: without the folder it starts with and what the full message says to do."""
    line = " ".join(reason.split())
    if folder and line.startswith(folder + " "):
        line = line[len(folder) + 1:]
    line = line.split(". Nothing was written")[0]
    return line if len(line) <= limit else line[: limit - 3] + "..."


def summary(entries: list[dict[str, Any]]) -> str | None:
    """The message for the jobs that did not finish, or None when all did."""
    bad = [e for e in entries if e.get("status") not in OK_STATES]
    if not bad:
        return None
    lines = [f"error: {len(bad)} of {len(entries)} jobs of this multirun did not finish (the full messages are "
             "above; a failed job's status.json and train.log say more; a refused job wrote nothing in its folder):"]
    lines += [f"  {e['folder']}: {e['status']}: {one_line(e.get('reason', ''), e['folder'])}" for e in bad]
    return "\n".join(lines)


class LauncherWatch:
    """While a job runs in a process started by a local launcher, stop it when that launcher ends.

    Enters as a no-op in the launching process itself, for jobs on another host (SLURM) and when
    there is no multirun. On Linux the launcher is watched through a pidfd (no PID reuse races);
    elsewhere by polling its PID every second. The stop is a LauncherGone raised in the main thread.
    """

    def __init__(self, launcher_target: str = ""):
        self.info = current()
        self.active = bool(self.info and self.info.host == socket.gethostname() and self.info.pid != os.getpid()
                           and "slurm" not in launcher_target.lower()
                           and threading.current_thread() is threading.main_thread())
        self.gone = False
        self._stop = threading.Event()
        self._previous: Any = None

    def _on_sigint(self, signum: int, frame: Any) -> None:
        if self.gone:
            raise LauncherGone(f"the end of its launcher (PID {self.info.pid})")
        if callable(self._previous):
            return self._previous(signum, frame)
        if self._previous == signal.SIG_IGN:
            return None
        raise KeyboardInterrupt

    def _launcher_alive(self) -> bool:
        try:
            os.kill(self.info.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    def _watch(self, pidfd: int | None) -> None:
        if pidfd is not None:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while not self._stop.is_set() and not poller.poll(1000):
                pass
            os.close(pidfd)
        else:
            while not self._stop.wait(1.0) and self._launcher_alive():
                pass
        if self._stop.is_set():
            return
        self.gone = True
        _thread.interrupt_main(signal.SIGINT)
        # the main thread reacts at its next bytecode; a C call that never returns is cut short
        if not self._stop.wait(60):
            os._exit(LauncherGone.exit_code)

    def __enter__(self) -> "LauncherWatch":
        if not self.active:
            return self
        pidfd = None
        try:
            pidfd = os.pidfd_open(self.info.pid)
        except ProcessLookupError:
            raise LauncherGone(f"the end of its launcher (PID {self.info.pid}) before it started") from None
        except (AttributeError, OSError):  # no pidfd here: poll the PID
            if not self._launcher_alive():
                raise LauncherGone(f"the end of its launcher (PID {self.info.pid}) before it started") from None
        self._previous = signal.signal(signal.SIGINT, self._on_sigint)
        threading.Thread(target=self._watch, args=(pidfd,), name="launcher-watch", daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.active:
            self._stop.set()
            if self._previous is not None:
                signal.signal(signal.SIGINT, self._previous)
