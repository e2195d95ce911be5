"""Stopping a job on request: Ctrl-C, SIGTERM, or the end of the process that launched it.

Every stop request becomes a KeyboardInterrupt subclass in the job's main thread, so the job
unwinds through its ``finally`` blocks (an epoch in progress is dropped; the checkpoint of the
last finished epoch stays as it was, being written atomically). The job then records
``status.json`` (``interrupted``, where it stopped), prints one line with the command that
resumes it, and raises JobInterrupted, which carries the exit status (130 for SIGINT, 143 for
SIGTERM) up through Hydra's launcher and sweeper to train.py.
"""

from __future__ import annotations

import os
import shlex
import signal
import sys
import threading
from dataclasses import dataclass
from typing import Any


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread by the handler that train.py installs."""

    exit_code = 143
    cause = "SIGTERM"


class LauncherGone(KeyboardInterrupt):
    """The process that launched this job (a joblib or submitit-local multirun) has ended."""

    exit_code = 143

    def __init__(self, cause: str):
        super().__init__(cause)
        self.cause = cause


class JobInterrupted(KeyboardInterrupt):
    """A job stopped on request after recording where; ``str()`` is the line already printed."""

    def __init__(self, message: str, exit_code: int, folder: str):
        super().__init__(message)
        self.message, self.exit_code, self.folder = message, exit_code, folder


def exit_code(exc: BaseException) -> int:
    return int(getattr(exc, "exit_code", 130))


def cause_of(exc: BaseException) -> str:
    return str(getattr(exc, "cause", "Ctrl-C (SIGINT)"))


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated()


def handle_sigterm() -> None:
    """SIGTERM (kill, timeout, a launcher stopping its workers) stops a job like Ctrl-C.

    Only where SIGTERM has its default action and only from the main thread: submitit installs
    its own handler (to requeue preempted SLURM jobs), which is left alone.
    """
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _raise_terminated)


@dataclass
class JobProgress:
    """Where a job stands, kept current by the training code for the message of an interrupted job."""

    epochs: int
    phase: str = "setup"     # setup, data, model, training, evaluation, done
    epoch: int = 0           # the epoch in progress
    saved_epoch: int = 0     # epochs held by the checkpoint
    checkpoints: bool = True

    def where(self) -> str:
        if self.phase == "training":
            return f"during epoch {self.epoch} of {self.epochs}"
        if self.phase == "evaluation":
            return f"after its {self.epochs} epochs, during the final evaluation"
        if self.phase == "done":
            return "after writing metrics.json"
        return f"before training ({self.phase})"

    def kept(self) -> str:
        if self.phase == "done":
            return "the job is finished; a re-run reuses its metrics"
        if not self.checkpoints:
            return "checkpoints are off (checkpoint.enabled=false), so a re-run starts from epoch 1"
        if self.saved_epoch == 0:
            return "no epoch had finished, so there is no checkpoint and a re-run starts from epoch 1"
        if self.saved_epoch >= self.epochs:
            return f"checkpoint.pt holds all {self.epochs} epochs, so a re-run only evaluates"
        held = f"epochs 1-{self.saved_epoch}" if self.saved_epoch > 1 else "epoch 1"
        return f"checkpoint.pt holds {held} of {self.epochs}, so a re-run continues with epoch {self.saved_epoch + 1}"

    def record(self) -> dict[str, Any]:
        return {"phase": self.phase, "epoch": self.epoch, "epochs": self.epochs, "checkpoint_epoch": self.saved_epoch}


def command_line(argv: list[str], dir_key: str, folder: str, multirun: bool) -> str:
    """The command ``argv`` (train.py's), with ``dir_key`` fixed to ``folder`` so that it finds its output again."""
    args = [a for a in argv[1:] if not a.startswith(f"{dir_key}=")]
    flags = ["-m"] if multirun and not {"-m", "--multirun"} & set(args) else []
    script = os.path.relpath(argv[0]) if os.path.isabs(argv[0]) and not os.path.relpath(argv[0]).startswith("..") \
        else argv[0]
    return "python " + shlex.join([script, *flags, *args, f"{dir_key}={folder}"])


def main_process_command(multirun: bool, folder: str) -> str:
    """The resume command built from this process's own command line (single runs, in-process launchers)."""
    return command_line(sys.argv, "hydra.sweep.dir" if multirun else "hydra.run.dir", folder, multirun)
