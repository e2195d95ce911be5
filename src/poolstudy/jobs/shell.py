"""The Hydra task function's shell: how one job starts and ends, whatever happens inside it.

Start: take the job folder's lock (``poolstudy.jobs.lock``), check that the folder holds no other
configuration's results and save the snapshot (``poolstudy.jobs.folder``), reuse finished
metrics of this very configuration. End, for every way a job can end:

============================  ===========  ==============================  ===========  ==========
how it ended                  status.json  printed                         single run   multirun
============================  ===========  ==============================  ===========  ==========
finished / reused             (none)       -                               exit 0       goes on
refused (folder in use or     (none: the   one message naming the folder   exit 2       goes on,
another configuration's)      folder is                                                 summary,
                              not ours)                                                 exit 1
invalid (bad config/data)     invalid      one message naming the key      exit 2       same
failed (diverged, disk full,  failed       one message; an unexpected      exit 1       same
any other exception)                       error's traceback in train.log
pruned (HPO)                  pruned       -                               -            goes on
interrupted (Ctrl-C,          interrupted  one line: where it stopped,     exit 130 /   stops
SIGTERM, launcher ended)                   what the checkpoint holds, the  143
                                           command that resumes
============================  ===========  ==============================  ===========  ==========

Every outcome of a multirun job is also reported to the launching process
(``poolstudy.jobs.multirun``), which prints the summary. An interrupted HPO trial or final run
(``hpo.role`` set) prints nothing itself: the HPO sweeper prints the one line (which trial, what is
redone, the command that resumes); its train.log and status.json still tell where it stopped.
"""

from __future__ import annotations

import logging
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from poolstudy.errors import PoolStudyError, TrainingDivergedError
from poolstudy.jobs import multirun
from poolstudy.jobfolder import CHECKPOINT_FILE, LOG_FILE, METRICS_FILE, STATUS_FILE, write_status
from poolstudy.jobs.folder import JobFolderError, prepare
from poolstudy.jobs.interrupt import (JobInterrupted, JobProgress, LauncherGone, cause_of, exit_code,
                                      handle_sigterm, main_process_command)
from poolstudy.jobs.lock import FolderBusyError, JobLock
from poolstudy.jobs.run import train_and_evaluate
from poolstudy.tracking import job_trackers
from poolstudy.utils.io import NoSpaceError

log = logging.getLogger("poolstudy")


def threads_per_job(parallel_jobs: int, cpus: int | None = None) -> int:
    """Torch threads for each of ``parallel_jobs`` concurrent jobs on ``cpus`` cores."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, parallel_jobs))


def _share_cores(cfg: DictConfig, hydra_cfg) -> None:
    """Under a parallel launcher, split the cores between its jobs (unless trainer.threads is set)."""
    n_jobs = hydra_cfg.launcher.get("n_jobs")
    if cfg.trainer.get("threads") is None and isinstance(n_jobs, int) and n_jobs != 1:
        import torch

        parallel = (os.cpu_count() or 1) if n_jobs < 0 else n_jobs
        torch.set_num_threads(threads_per_job(parallel))


def _pruning_hook(cfg: DictConfig):
    hpo = cfg.get("hpo")
    if hpo and hpo.get("role") == "trial":
        from poolstudy.hpo.reporting import TrialReporter

        return TrialReporter(hpo)
    return None


def _to_log_file(level: int, message: str, exc: BaseException | None = None) -> None:
    """Write to the job's train.log only (not the console): tracebacks are for debugging, not for the user."""
    text = message
    if exc is not None:
        text += "\n" + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)).rstrip()
    record = logging.LogRecord("poolstudy", level, __file__, 0, text, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


class _Job:
    """One job's folder, mode and reporting."""

    def __init__(self, cfg: DictConfig):
        self.hydra_cfg = HydraConfig.get()
        self.folder = Path(self.hydra_cfg.runtime.output_dir)
        self.multirun = self.hydra_cfg.mode == RunMode.MULTIRUN
        self.num = self.hydra_cfg.job.get("num") if self.multirun else None
        self.epochs = cfg.trainer.get("epochs")
        self.claimed = False  # the folder was checked to be this job's: only then may status.json be written
        # a trial or final run of the HPO sweeper, which reports a Ctrl-C itself, as one line naming the
        # trial, what is redone and the resume command
        self.sweeper_reports = self.multirun and (cfg.get("hpo") or {}).get("role") in ("trial", "final")

    def report(self, status: str, reason: str = "") -> None:
        multirun.record(self.folder, self.num, status, reason)

    def write_status(self, record: dict[str, Any]) -> str:
        """Write status.json; returns a note for the message when that was impossible or not allowed."""
        if not self.claimed:
            return f" (nothing was written in {self.folder}: it was not yet checked to belong to this job)"
        try:
            write_status(self.folder, record)
            return ""
        except OSError as exc:
            return f" ({STATUS_FILE} could not be written either: {exc})"

    def resume_command(self) -> str:
        info = multirun.of_job(self.folder)
        if info is not None and info.resume:
            return info.resume
        return main_process_command(self.multirun, str(self.folder))

    def stop(self, status: str, message: str, code: int, reason: str | None = None) -> None:
        """End a job that did not finish: one message, then exit (single run) or go on (multirun).

        ``reason`` is the gist for the multirun's summary (default: the message).
        """
        self.report(status, reason or message)
        if not self.multirun:
            print(f"error: {message}", file=sys.stderr)
            sys.exit(code)
        where = "" if str(self.folder) in message else f" ({self.folder})"
        print(f"error: job {self.num}{where} {status}: {message}", file=sys.stderr)


def _checkpoint_epoch(folder: Path) -> int | None:
    path = folder / CHECKPOINT_FILE
    if not path.is_file():
        return None
    try:
        import torch

        return int(torch.load(path, map_location="cpu", weights_only=True)["epoch"])
    except Exception:
        return None


def _interrupted(job: _Job, exc: KeyboardInterrupt, progress: JobProgress) -> JobInterrupted:
    """Record and report an interrupted job; the exception to raise in its place."""
    saved = _checkpoint_epoch(job.folder)  # the file is the truth, whatever moment the interrupt hit
    if saved is not None and progress.phase != "done":
        progress.saved_epoch = saved
    cause = cause_of(exc)
    where = progress.where()
    note = job.write_status({"status": "interrupted", "error": f"stopped by {cause} {where}", **progress.record()})
    message = (f"interrupted: {job.folder} stopped by {cause} {where}; {progress.kept()}{note}. "
               f"Resume with: {job.resume_command()}")
    job.report("interrupted", f"stopped by {cause} {where}")
    if not job.sweeper_reports or isinstance(exc, LauncherGone):  # one Ctrl-C, one line on the terminal
        print(message, file=sys.stderr)
    _to_log_file(logging.WARNING, message)
    return JobInterrupted(message, exit_code(exc), str(job.folder))


def run_job(cfg: DictConfig) -> float | None:
    """Run one job; returns its final validation accuracy (what sweepers optimise), None if it did not finish.

    See the module docstring for what each ending records, prints and returns. An interrupt is
    raised on as JobInterrupted (a KeyboardInterrupt carrying the exit status), so a multirun or
    HPO sweep stops and its sweeper sees the KeyboardInterrupt.
    """
    job = _Job(cfg)
    handle_sigterm()  # also in launcher workers (joblib); submitit installs its own handler, which stays
    _share_cores(cfg, job.hydra_cfg)
    progress = JobProgress(epochs=int(job.epochs) if isinstance(job.epochs, int) else 0)
    watch = multirun.LauncherWatch(str(job.hydra_cfg.launcher.get("_target_", "")))
    try:
        # job_trackers: the logger=... experiment trackers (poolstudy.tracking); a job that ends with an exception
        # ends their runs too
        with JobLock(job.folder), watch, job_trackers(cfg, job.folder) as trackers:
            done = prepare(job.folder, cfg)
            job.claimed = True
            trackers.start()
            if done is not None:
                log.info("%s already holds a complete %s made with this configuration; not training again.",
                         job.folder, METRICS_FILE)
                trackers.finish(done, job.folder / METRICS_FILE)  # logged unless the tracker has this record
                job.report("reused")
                return done["val_acc"]
            metrics = train_and_evaluate(cfg, job.folder, _pruning_hook(cfg), progress, trackers)
            job.report("complete")
            return metrics["val_acc"]
    except optuna.TrialPruned as exc:
        job.write_status({"status": "pruned", "error": str(exc)})
        job.report("pruned", str(exc))
        log.info("job %s %s", job.num, exc)
        return None
    except (FolderBusyError, JobFolderError) as exc:  # the folder is not this job's to write: nothing recorded there
        job.stop("refused", str(exc), 2)
        return None
    except PoolStudyError as exc:
        note = job.write_status({"status": "invalid", "error": str(exc)})
        _to_log_file(logging.ERROR, f"invalid: {exc}")
        job.stop("invalid", f"{exc}{note}", 2)
        return None
    except (TrainingDivergedError, NoSpaceError) as exc:
        note = job.write_status({"status": "failed", "error": str(exc)})
        _to_log_file(logging.ERROR, f"failed: {exc}")
        job.stop("failed", f"{exc}{note}", 1)
        return None
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, the launcher's end
        interrupted = _interrupted(job, exc, progress)
        if isinstance(exc, LauncherGone):  # nobody is left to collect this process's results
            logging.shutdown()
            os._exit(interrupted.exit_code)
        raise interrupted from None
    except Exception as exc:  # a bug or an environment problem: recorded, the traceback kept in train.log
        error = f"{type(exc).__name__}: {str(exc).strip() or '(no message)'}"
        note = job.write_status({"status": "failed", "error": error})
        _to_log_file(logging.ERROR, f"failed with an unexpected error: {error}", exc)
        job.stop("failed", f"the job in {job.folder} failed with an unexpected error, {error}. It is recorded in "
                 f"{STATUS_FILE}; the traceback is in {job.folder / LOG_FILE}{note}.", 1, error)
        return None
