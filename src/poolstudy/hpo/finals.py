"""Final runs (``<study>/final/seed<k>``) belong to the study's current best trial.

When an extended or resumed study finds a new best trial, the final runs of the previous best
are moved aside to ``<study>/superseded/trial<N>/seed<k>`` (kept, never deleted, never reported
as tuned results) before the new best is retrained.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import optuna
import yaml
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from poolstudy.jobfolder import CONFIG_SNAPSHOT, METRICS_FILE, read_record

log = logging.getLogger(__name__)

SUPERSEDED = "superseded"


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The completed trial with the best value; among equal values the earliest, so a later trial
    that only ties does not supersede the final runs already trained."""
    complete = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if t.value is not None]
    if not complete:
        return None
    sign = -1 if study.direction == StudyDirection.MINIMIZE else 1
    return max(complete, key=lambda t: (sign * t.value, -t.number))


def trial_of(job_dir: Path) -> int | None:
    """The trial a final run retrains: ``metrics.json`` "hpo".trial, else its snapshot's hpo.trial."""
    metrics = read_record(job_dir / METRICS_FILE)
    try:
        trial = (metrics.get("hpo") or {}).get("trial") if metrics is not None else None
        if trial is not None:
            return int(trial)
    except (AttributeError, TypeError, ValueError):
        pass
    try:
        snapshot = yaml.safe_load((job_dir / CONFIG_SNAPSHOT).read_text()) or {}
        trial = (snapshot.get("hpo") or {}).get("trial")
        return None if trial is None else int(trial)
    except (OSError, ValueError, yaml.YAMLError, AttributeError):
        return None


def set_aside_stale_finals(study_dir: Path, best_trial: int) -> list[tuple[Path, Path]]:
    """Move every ``final/<run>`` that does not retrain ``best_trial`` to ``superseded/trial<N>/<run>``.

    Returns the (from, to) pairs. A name already taken there gets a ``.1``, ``.2``... suffix.
    """
    moved = []
    final_dir = study_dir / "final"
    if not final_dir.is_dir():
        return moved
    for run in sorted(p for p in final_dir.iterdir() if p.is_dir()):
        trial = trial_of(run)
        if trial == best_trial:
            continue
        target_dir = study_dir / SUPERSEDED / (f"trial{trial}" if trial is not None else "trial-unknown")
        target_dir.mkdir(parents=True, exist_ok=True)
        target, n = target_dir / run.name, 0
        while target.exists():
            n += 1
            target = target_dir / f"{run.name}.{n}"
        os.rename(run, target)
        moved.append((run, target))
        log.warning("%s: %s retrained trial %s, but the best trial is now %d; moved to %s (kept, not reported).",
                    study_dir.name, run.relative_to(study_dir), trial, best_trial, target.relative_to(study_dir))
    return moved


def final_results(study_dir: Path, best_trial: int | None) -> list[dict[str, Any]]:
    """Test metrics of the completed final runs of ``best_trial`` under ``study_dir/final``."""
    results = []
    if best_trial is None:
        return results
    for metrics_file in sorted((study_dir / "final").glob("*/metrics.json")):
        try:
            m = json.loads(metrics_file.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(m, dict) or m.get("status") != "complete":
            continue
        trial = (m.get("hpo") or {}).get("trial")
        if trial != best_trial:
            continue
        results.append({"seed": m["seed"], "trial": trial, "val_acc": m["val_acc"], "test_acc": m["test_acc"],
                        "test_acc_raw": m.get("test_acc_raw"), "dir": str(metrics_file.parent)})
    return results
