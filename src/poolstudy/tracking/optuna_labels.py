"""What the HPO sweeper stores in its Optuna studies for optuna-dashboard (docs/tracking.md):
the objective's name, and on each trial its job folder, grid cell and role as user attributes."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

OBJECTIVE = "val_acc"  # the sweeper maximises the final validation accuracy (poolstudy.jobs.shell.run_job's return)
JOB_DIR_ATTR, CELL_ATTR, ROLE_ATTR = "job_dir", "cell", "role"


def name_objective(study: Any) -> None:
    """``study.set_metric_names(["val_acc"])`` once (dashboards label the objective with it)."""
    if list(study.metric_names or []) == [OBJECTIVE]:
        return
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # ExperimentalWarning: set_metric_names is marked experimental
        study.set_metric_names([OBJECTIVE])


def cell_labels(identity: dict[str, Any], grid: list[str], swept: set[str]) -> dict[str, Any]:
    """The cell a study trains: its variant and dataset, and the grid values of other swept keys."""
    labels = {key: identity.get(key) for key in ("arch", "downsample", "dataset")}
    for override in grid:
        key, _, value = override.partition("=")
        if key.lstrip("+~") in swept:
            labels[key.lstrip("+~")] = value
    return labels


def label_trial(trial: Any, job_dir: Path, cell: dict[str, Any], role: str = "trial") -> None:
    trial.set_user_attr(JOB_DIR_ATTR, str(Path(job_dir).absolute()))
    trial.set_user_attr(CELL_ATTR, cell)
    trial.set_user_attr(ROLE_ATTR, role)
