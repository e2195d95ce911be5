"""Job side of pruning: report validation accuracy per epoch to the job's Optuna trial."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import optuna
from hydra.utils import instantiate

from poolstudy.hpo.storage import open_storage, url_in_job

log = logging.getLogger(__name__)

PRUNER_ATTR = "poolstudy_pruner"


class TrialReporter:
    """Reports each epoch's validation accuracy and raises optuna.TrialPruned when told to.

    Works from any process that reaches the storage (basic, joblib or SLURM launchers): the
    job reconnects to its study and trial by name and number.
    """

    def __init__(self, hpo: Mapping[str, Any]):
        storage = open_storage(url_in_job(hpo["storage"]))
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
        self.trial.report(val_acc, step=epoch)
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned after epoch {epoch} at validation accuracy {val_acc:.4f}")
