"""Job side of pruning: report validation accuracy per epoch to the job's Optuna trial."""

from __future__ import annotations

import logging
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import optuna
from hydra.utils import instantiate

from poolstudy.hpo.storage import open_storage, url_in_job

log = logging.getLogger(__name__)

PRUNER_ATTR = "poolstudy_pruner"


@contextmanager
def storage_call() -> Iterator[None]:
    """Hold Ctrl-C and SIGTERM until the storage calls inside have finished, then let them act.

    Interrupted midway, a call leaves its statement or transaction open on this process's own
    connection, and an SQLite storage file stays locked against the sweeper, which marks the trial
    interrupted right after (it waited, then failed with "database is locked" and a traceback).
    A second Ctrl-C acts at once (a storage that does not answer must not hold the job). Only in
    the main thread, where Python runs signal handlers.
    """
    held = [sig for sig in (signal.SIGINT, signal.SIGTERM) if signal.getsignal(sig) is not None]
    if threading.current_thread() is not threading.main_thread():
        held = []
    caught: list[int] = []

    def hold(signum, frame) -> None:
        caught.append(signum)
        if signum == signal.SIGINT and caught.count(signum) > 1:
            raise KeyboardInterrupt

    previous = {sig: signal.signal(sig, hold) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(caught):
            signal.raise_signal(sig)  # the job's own handler now: KeyboardInterrupt, Terminated, ...


class TrialReporter:
    """Reports each epoch's validation accuracy and raises optuna.TrialPruned when told to.

    Works from any process that reaches the storage (basic, joblib or SLURM launchers): the
    job reconnects to its study and trial by name and number.
    """

    def __init__(self, hpo: Mapping[str, Any]):
        url = url_in_job(hpo["storage"])
        with storage_call():
            storage = open_storage(url)
            study_id = storage.get_study_id_from_name(hpo["study_name"])
            pruner_cfg = storage.get_study_user_attrs(study_id).get(PRUNER_ATTR)
            pruner = instantiate(pruner_cfg) if pruner_cfg else optuna.pruners.NopPruner()
            study = optuna.load_study(study_name=hpo["study_name"], storage=storage, pruner=pruner)
            trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, int(hpo["trial"]))
            self.trial = optuna.trial.Trial(study, trial_id)
            self.active = storage.get_trial(trial_id).state == optuna.trial.TrialState.RUNNING
        if not self.active:  # e.g. a finished trial's snapshot re-run by hand
            log.warning("Trial %s of %s is already finished; not reporting to it.", hpo["trial"], hpo["study_name"])

    def __call__(self, epoch: int, val_acc: float) -> None:
        if not self.active:
            return
        with storage_call():
            self.trial.report(val_acc, step=epoch)
            prune = self.trial.should_prune()
        if prune:
            raise optuna.TrialPruned(f"pruned after epoch {epoch} at validation accuracy {val_acc:.4f}")
