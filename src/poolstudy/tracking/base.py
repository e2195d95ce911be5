"""The tracker protocol and the guard that keeps a tracker's failure from touching a job's result.

A tracker mirrors one job into an experiment tracker (MLflow, TensorBoard). It is told four things:
the job started (``start``), an epoch finished (``log_epoch``, the epoch's history record), the job
finished and its ``metrics.json`` is written (``finish``; for a job that reused a finished record
too), or the job ended without a result (``end``). ``metrics.json`` is always written before
``finish`` runs, so a tracker can never lose or delay a result.

:class:`Trackers` runs each call of each tracker inside a guard: the first exception of a tracker
(an unreachable server, a locked database, a full disk) becomes one warning naming the tracker and
the job folder, and that tracker is left out for the rest of the job; the job and the other trackers
go on.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger("poolstudy.tracking")

# The states a job can end in without metrics.json (poolstudy.jobs.shell): each tracker maps them to its own.
ENDINGS = ("failed", "invalid", "interrupted", "pruned")


@dataclass
class JobContext:
    """What every tracker knows about the job it mirrors.

    ``config``: the job's configuration, flattened to dotted keys (values as in the snapshot, resolved
    where the job resolved them). ``folder``: the job folder (absolute). ``experiment``: the experiment
    (MLflow) the job belongs to. ``group``: the HPO study the job belongs to, None outside HPO. ``name``:
    a short run name. ``tags``: the labels of the job (see :func:`poolstudy.tracking.record.job_tags`).
    """

    config: dict[str, Any]
    folder: Path
    experiment: str
    name: str
    group: str | None = None
    tags: dict[str, str] = field(default_factory=dict)
    sweep_dir: Path | None = None  # the multirun's folder (a lock file for parent runs lives there)


class Tracker(Protocol):
    name: str  # the logger option: "mlflow", "tensorboard"

    def start(self, job: JobContext) -> None: ...

    def log_epoch(self, record: dict[str, Any]) -> None: ...

    def finish(self, metrics: dict[str, Any], metrics_file: Path) -> None: ...

    def end(self, status: str, reason: str) -> None: ...


class Trackers:
    """The job's trackers, each call guarded (see the module docstring). Empty: every call does nothing."""

    def __init__(self, trackers: list[Tracker], job: JobContext | None = None):
        self.active = list(trackers)
        self.job = job
        self.folder = job.folder if job is not None else Path(".")
        self.started = False
        self.failed: dict[str, str] = {}  # tracker name -> the warning given

    def __bool__(self) -> bool:
        return bool(self.active)

    def _each(self, what: str, call: Callable[[Tracker], None]) -> None:
        for tracker in list(self.active):
            try:
                call(tracker)
            except Exception as exc:  # noqa: BLE001 - any failure of a tracker is reported, never raised
                self.active.remove(tracker)
                reason = str(exc).strip().splitlines()[0] if str(exc).strip() else "(no message)"
                message = (f"logger {tracker.name} failed while {what} ({type(exc).__name__}: {reason[:300]}); "
                           f"the job goes on and its results are in {self.folder / 'metrics.json'} as always; "
                           f"nothing more is sent to {tracker.name} for this job.")
                self.failed[tracker.name] = message
                log.warning(message)
                _close_quietly(tracker)

    def start(self) -> None:
        self.started = True
        self._each("starting the run", lambda t: t.start(self.job))

    def log_epoch(self, record: dict[str, Any]) -> None:
        self._each(f"logging epoch {record.get('epoch')}", lambda t: t.log_epoch(record))

    def finish(self, metrics: dict[str, Any], metrics_file: Path) -> None:
        self._each("logging the final results", lambda t: t.finish(metrics, metrics_file))

    def end(self, status: str, reason: str = "") -> None:
        if self.started:
            self._each(f"recording that the job ended {status}", lambda t: t.end(status, reason))

    def close(self) -> None:
        for tracker in self.active:
            _close_quietly(tracker)


def _close_quietly(tracker: Tracker) -> None:
    close = getattr(tracker, "close", None)
    if close is None:
        return
    try:
        close()
    except Exception:  # noqa: BLE001 - already reported once
        pass
