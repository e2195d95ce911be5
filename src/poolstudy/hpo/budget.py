"""Which trials of a study count toward its budget.

COMPLETE, PRUNED and FAIL trials count. A trial left RUNNING by a process that no longer
exists (a killed sweep) is marked FAIL with ``interrupted`` set and does not count: it is
redone. Trials are ranked by number, so several workers sharing one study agree on which
trials are inside the budget; one asked beyond it is marked FAIL with ``over_budget``.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass
from pathlib import Path

import optuna
from optuna.trial import FrozenTrial, TrialState

from poolstudy.jobfolder import STATUS_FILE, write_status

log = logging.getLogger(__name__)

WORKER_ATTR = "poolstudy_worker"
DISCARDED_ATTRS = ("interrupted", "over_budget")


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _alive_here(worker: str | None) -> bool | None:
    """True/False for a worker on this host, None when it ran elsewhere (can't tell)."""
    if not worker or ":" not in worker:
        return None
    host, pid = worker.rsplit(":", 1)
    if host != socket.gethostname():
        return None
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def discarded(trial: FrozenTrial) -> bool:
    return trial.state == TrialState.FAIL and any(trial.user_attrs.get(a) for a in DISCARDED_ATTRS)


def register_worker(study: optuna.Study) -> None:
    """Record this process on the study before it asks for trials (see reclaim_interrupted)."""
    study.set_user_attr(f"{WORKER_ATTR}:{worker_id()}", True)


def _discard(study: optuna.Study, storage: optuna.storages.BaseStorage, trial: FrozenTrial, reason: str,
             trials_dir: Path | None) -> None:
    """Mark a RUNNING trial failed with ``interrupted`` (not counted, redone) and say so in its folder."""
    study_id = storage.get_study_id_from_name(study.study_name)
    trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, trial.number)
    storage.set_trial_user_attr(trial_id, "interrupted", True)
    storage.set_trial_user_attr(trial_id, "interrupt_reason", reason[:500])
    study.tell(trial.number, state=TrialState.FAIL)
    job_dir = trials_dir / str(trial.number) if trials_dir is not None else None
    if job_dir is not None and job_dir.is_dir() and not (job_dir / STATUS_FILE).exists():
        write_status(job_dir, {"status": "interrupted", "error": reason,
                               "note": "not counted toward the budget; redone as a new trial"})


def reclaim_interrupted(study: optuna.Study, storage: optuna.storages.BaseStorage,
                        trials_dir: Path | None = None) -> int:
    """Mark RUNNING trials whose worker process is gone as failed+interrupted; returns how many.

    A trial without a worker attribute was asked by a process killed before it could label
    it; it is orphaned when every worker ever registered on the study is known to be dead.
    """
    n = 0
    prefix = f"{WORKER_ATTR}:"
    workers = [key[len(prefix):] for key in study.user_attrs if key.startswith(prefix)]
    all_workers_dead = bool(workers) and all(_alive_here(w) is False for w in workers)
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = trial.user_attrs.get(WORKER_ATTR)
        dead = _alive_here(owner) is False if owner else all_workers_dead
        if dead:
            _discard(study, storage, trial, "its process was killed", trials_dir)
            log.warning("Trial %d of %s was left running by a killed process; it will be redone.",
                        trial.number, study.study_name)
            n += 1
    return n


def mark_interrupted(study: optuna.Study, storage: optuna.storages.BaseStorage, reason: str,
                     trials_dir: Path | None = None) -> list[int]:
    """Mark this process's RUNNING trials of ``study`` failed+interrupted at once; returns their numbers."""
    mine = [t for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
            if t.user_attrs.get(WORKER_ATTR) == worker_id()]
    for trial in mine:
        _discard(study, storage, trial, reason, trials_dir)
    return [t.number for t in mine]


@dataclass
class Budget:
    complete: int
    pruned: int
    failed: int
    running: int
    n_trials: int

    @property
    def finished(self) -> int:
        return self.complete + self.pruned + self.failed

    @property
    def remaining(self) -> int:
        return max(0, self.n_trials - self.finished - self.running)


def budget(study: optuna.Study, n_trials: int) -> Budget:
    trials = [t for t in study.get_trials(deepcopy=False) if not discarded(t)]
    count = lambda state: sum(t.state == state for t in trials)  # noqa: E731
    return Budget(count(TrialState.COMPLETE), count(TrialState.PRUNED), count(TrialState.FAIL),
                  count(TrialState.RUNNING) + count(TrialState.WAITING), n_trials)


def within_budget(study: optuna.Study, trial_number: int, n_trials: int) -> bool:
    """Whether ``trial_number`` is among the first ``n_trials`` counted trials of the study."""
    counted = sorted(t.number for t in study.get_trials(deepcopy=False) if not discarded(t))
    return trial_number in counted[:n_trials]
