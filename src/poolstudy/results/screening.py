"""Which jobs may enter the tables: a number must belong to the config, data and trial it is labelled with.

A job is excluded (from every table, figure and HPO curve; listed with the reason) when

- its config snapshot disagrees with the ``metrics.json`` beside it: the snapshot was replaced after
  training (a re-run with another config into the same folder), so the label would not be the result's;
- its ``metrics.json`` holds an accuracy that is missing, not finite, or outside [0, 1];
- it is an HPO final run of a trial that is not its study's best (``study_summary.json``): a stale
  final is not the study's tuned result.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from poolstudy.results.records import METRICS_FILE, MISSING, STUDY_SUMMARY, Job, Warnings, flatten, lookup
from poolstudy.results.aggregate import METRICS

# snapshot key -> where metrics.json records the value the job actually trained with
RECORDED_AS = {
    "model.arch": "model.arch",
    "model.dropout": "model.dropout",
    "dataset.name": "dataset.name",
    "seed": "seed",
    "trainer.epochs": "epochs",
    "optimizer._target_": "optimizer.name",
    "optimizer.lr": "optimizer.lr",
    "optimizer.weight_decay": "optimizer.weight_decay",
    "trainer.batch_size": "optimizer.batch_size",
    "scheduler.name": "optimizer.scheduler",
}
HPO_KEYS = ("role", "study_name", "trial")
REQUIRED_ACCURACIES = ("test_acc", "val_acc")
STUDY_LEVELS = 4  # a final's study folder is at most this many levels above it (<study>/final/seed0, superseded/...)


@dataclass
class Excluded:
    job: Job
    reason: str

    @property
    def path(self) -> str:
        return self.job.path


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _as_float(value: Any) -> float | None:
    if _is_number(value):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def agree(snapshot: Any, recorded: Any) -> bool:
    """Whether a snapshot value and the recorded one are the same setting (numbers by value, so that
    YAML's 1e-3 and JSON's 0.001 agree). An unresolved interpolation cannot be judged and agrees."""
    if isinstance(snapshot, str) and "${" in snapshot:
        return True
    if isinstance(recorded, (list, dict)):
        recorded = json.dumps(recorded, sort_keys=True)
    if (_is_number(snapshot) or _is_number(recorded)) and not isinstance(snapshot, bool) \
            and not isinstance(recorded, bool):
        a, b = _as_float(snapshot), _as_float(recorded)
        if a is not None and b is not None:
            return math.isclose(a, b, rel_tol=1e-9, abs_tol=0.0)
    return snapshot == recorded


def _show(value: Any) -> str:
    return "(missing)" if value is MISSING else json.dumps(value) if not isinstance(value, str) else value


def snapshot_disagreements(job: Job) -> list[tuple[str, Any, Any]]:
    """(key, snapshot value, metrics.json value) for every recorded setting the two files disagree on;
    keys that either file lacks (an older metrics.json) are not compared, except within the operator's
    own record ``model.downsample``, which metrics.json keeps whole."""
    metrics, config = job.metrics or {}, job.config
    if not metrics or not config:
        return []
    pairs: list[tuple[str, Any, Any]] = []
    for key, where in RECORDED_AS.items():
        snap, rec = config.get(key, MISSING), lookup(metrics, where)
        if snap is MISSING or rec is MISSING:
            continue
        if key == "optimizer._target_" and isinstance(snap, str):
            key, snap = "optimizer", snap.rsplit(".", 1)[-1]  # metrics.json keeps the class name
        pairs.append((key, snap, rec))
    operator = lookup(metrics, "model.downsample")
    if isinstance(operator, dict):
        recorded = flatten(operator, "model.downsample.")
        snapshot = {k: v for k, v in config.items() if k.startswith("model.downsample.")}
        pairs += [(key, snapshot.get(key, MISSING), recorded.get(key, MISSING))
                  for key in sorted(set(recorded) | set(snapshot))]
    if "hpo" in metrics and isinstance(metrics["hpo"], (dict, type(None))):
        hpo = metrics["hpo"] or {}  # null: an ordinary job
        pairs += [(f"hpo.{k}", config[f"hpo.{k}"], hpo.get(k)) for k in HPO_KEYS if f"hpo.{k}" in config]
    return [(key, snap, rec) for key, snap, rec in pairs
            if snap is MISSING or rec is MISSING or not agree(snap, rec)]


def accuracy_problems(job: Job, metric: str) -> list[str]:
    """What is wrong with a finished job's accuracies: each must be a finite fraction in [0, 1], and the
    test and validation accuracies and the compared metric must be there."""
    metrics = job.metrics or {}
    problems = []
    for key in dict.fromkeys((*REQUIRED_ACCURACIES, metric, *METRICS)):
        value = metrics.get(key, MISSING)
        if value is MISSING or value is None:
            if key in REQUIRED_ACCURACIES or key == metric:
                problems.append(f"{METRICS_FILE} has no {key}" + (" (the compared --metric)" if key == metric else ""))
        elif not _is_number(value) or not math.isfinite(value) or not 0 <= value <= 1:
            problems.append(f"{METRICS_FILE} {key} is {_show(value)}, not an accuracy between 0 and 1")
    return problems


class _Summaries:
    """study_summary.json files above final runs, each read once."""

    def __init__(self, warnings: Warnings):
        self.warnings = warnings
        self.cache: dict[Path, dict | None] = {}

    def read(self, path: Path) -> dict | None:
        if path not in self.cache:
            try:
                data = json.loads(path.read_text())
            except (OSError, UnicodeDecodeError, json.JSONDecodeError):
                data = None
            self.cache[path] = data if isinstance(data, dict) else None
        return self.cache[path]

    def for_final(self, job: Job) -> tuple[Path, dict] | None:
        """The nearest study_summary.json above the job's folder that belongs to the job's study."""
        for folder in list(Path(job.path).resolve().parents)[:STUDY_LEVELS]:
            path = folder / STUDY_SUMMARY
            if not path.is_file():
                continue
            summary = self.read(path)
            if summary is not None and (job.study is None or summary.get("study_name") in (None, job.study)):
                return folder, summary
        return None


def _trial_value(study_dir: Path, trial: int) -> float | None:
    try:
        metrics = json.loads((study_dir / "trials" / str(trial) / METRICS_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    value = metrics.get("val_acc") if isinstance(metrics, dict) else None
    return float(value) if _is_number(value) else None


def stale_final(job: Job, summaries: _Summaries) -> str | None:
    """Why a final run is not its study's tuned result, or None. A final of a trial that ties with the
    best trial's validation accuracy is as good a best and is kept."""
    found = summaries.for_final(job)
    if found is None:
        summaries.warnings.add(job.path, f"an HPO final run without a readable {STUDY_SUMMARY} of study "
                                         f"{job.study!r} above it; whether it retrains the best trial is not checked")
        return None
    study_dir, summary = found
    best = summary.get("best_trial")
    where = study_dir / STUDY_SUMMARY
    if not isinstance(best, int) or isinstance(best, bool):
        return f"an HPO final run, but {where} names no best trial"
    if job.trial is None:
        return f"an HPO final run that does not record its trial; {where} names trial {best} as the best"
    if job.trial == best:
        return None
    value, best_value = _trial_value(study_dir, job.trial), summary.get("best_val_acc")
    if value is not None and _is_number(best_value) and value == best_value:
        return None
    return (f"a stale HPO final: it retrains trial {job.trial}, but {where} names trial {best} as the study's "
            f"best, so it is not the tuned result; re-run the HPO command to train the finals of trial {best}")


def screen(jobs: list[Job], metric: str, warnings: Warnings) -> tuple[list[Job], list[Excluded]]:
    """The jobs whose numbers may be reported, and the excluded ones with their reasons."""
    kept: list[Job] = []
    excluded: list[Excluded] = []
    summaries = _Summaries(warnings)
    for job in jobs:
        reasons = []
        disagreements = snapshot_disagreements(job)
        if disagreements:
            listing = "; ".join(f"{key}: snapshot {_show(snap)}, metrics.json {_show(rec)}"
                                for key, snap, rec in disagreements)
            reasons.append(f"its .hydra/config.yaml disagrees with its {METRICS_FILE} ({listing}): the snapshot was "
                           "replaced after the job trained (a re-run with another config into this folder), so the "
                           "result cannot be labelled; run each config into a folder of its own (hydra.run.dir or "
                           "hydra.sweep.dir)")
        if job.status == "complete":
            reasons += accuracy_problems(job, metric)
        if job.hpo_role == "final":
            stale = stale_final(job, summaries)
            if stale:
                reasons.append(stale)
        if reasons:
            excluded.append(Excluded(job, "; ".join(reasons)))
        else:
            kept.append(job)
    return kept, excluded
