"""Find job folders under the given paths and read each job's config snapshot and outcome.

A job folder is any folder holding ``.hydra/`` (normally with Hydra's ``config.yaml``). Its
outcome is read from ``metrics.json`` (finished) or ``status.json`` (invalid, failed, pruned);
a folder with neither is a job that is still running or was killed. A Hydra folder of another
project (a snapshot without poolstudy's keys) is skipped with its reason, never counted.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from poolstudy.jobfolder import COMPLETE, CONFIG_SNAPSHOT, METRICS_FILE, SNAPSHOT_DIR, STATUS_FILE, STUDY_SUMMARY
PARTIAL = "partial"
UNREADABLE = "unreadable"
STATUS_FILE_STATES = ("invalid", "failed", "pruned")
# Every state a job can be in, in the order tables list them.
STATES = (COMPLETE, *STATUS_FILE_STATES, PARTIAL, UNREADABLE)
STATE_NAMES = {PARTIAL: "running or killed", UNREADABLE: "unreadable files"}

# The keys every poolstudy job's snapshot has: what places it in a cell and how long it trained. A
# Hydra snapshot without them is another project's run.
POOLSTUDY_KEYS = ("model.arch", "model.downsample.type", "dataset.name", "seed", "trainer.epochs")
# What a study_summary.json of poolstudy's HPO sweeper always holds.
STUDY_SUMMARY_KEYS = ("study_name", "n_trials")

# HPO layout: <sweep>/<study>/trials/<number>/ and <sweep>/<study>/final/<seed>/.
HPO_FOLDERS = {"trials": "trial", "final": "final"}
HPO_ROLES = ("trial", "final")


class MissingValue:
    """Marks a key a job does not have (distinct from a key whose value is null)."""

    def __repr__(self) -> str:
        return "(missing)"


MISSING = MissingValue()


class Warnings(list):
    """One-line warnings in the order they were found; each names the file it is about."""

    def add(self, path: str | os.PathLike, message: str) -> None:
        self.append(f"{path}: {message}")


@dataclass
class Job:
    path: str  # as reached from the PATH argument it was found under
    status: str
    config: dict[str, Any] = field(default_factory=dict)  # flattened dotted keys of .hydra/config.yaml
    metrics: dict[str, Any] | None = None
    error: str | None = None
    hpo_role: str | None = None  # "trial", "final" or None (not part of an HPO study)
    study: str | None = None
    trial: int | None = None

    def config_value(self, key: str) -> Any:
        """A config key, falling back to the same dotted path in metrics.json (its model/dataset/seed
        records mirror the config) so that a job with a broken snapshot can still be placed."""
        if key in self.config:
            return self.config[key]
        return lookup(self.metrics or {}, key)

    @property
    def seed(self) -> Any:
        return self.config_value("seed")

    def number(self, key: str) -> float | None:
        """A finite number from metrics.json, else None."""
        return as_number(lookup(self.metrics or {}, key))

    @property
    def git_commit(self) -> str | None:
        env = (self.metrics or {}).get("environment")
        return env.get("git_commit") if isinstance(env, dict) else None

    @property
    def git_dirty(self) -> bool:
        env = (self.metrics or {}).get("environment")
        return bool(env.get("git_dirty")) if isinstance(env, dict) else False


@dataclass
class Skipped:
    """A folder that looks like a job (``.hydra/``) or a study but is not poolstudy's."""

    path: str
    reason: str


@dataclass
class StudyFolder:
    """``study_summary.json`` of an HPO study found on disk."""

    path: str  # the study folder
    summary: dict[str, Any]


def as_number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def lookup(tree: dict[str, Any], dotted: str) -> Any:
    node: Any = tree
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return MISSING
        node = node[part]
    return node


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings become dotted keys; lists and empty mappings become JSON text, so that every
    value is hashable and compares by content."""
    flat: dict[str, Any] = {}
    for key, value in tree.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{dotted}."))
        elif isinstance(value, (list, dict)):
            flat[dotted] = json.dumps(value, sort_keys=True)
        else:
            flat[dotted] = value
    return flat


def _read_json(path: Path, warnings: Warnings, consequence: str = "the job is counted as unreadable"
               ) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        warnings.add(path, f"unreadable ({type(exc).__name__}: {exc}); {consequence}")
        return None
    if not isinstance(data, dict):
        warnings.add(path, f"is not a JSON object; {consequence}")
        return None
    return data


def _read_config(job_dir: Path) -> tuple[dict[str, Any], str | None]:
    """The flattened snapshot, and what is wrong with it (None when it was read)."""
    path = job_dir / CONFIG_SNAPSHOT
    if not path.is_file():
        return {}, "missing"
    try:
        tree = yaml.safe_load(path.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return {}, f"unreadable YAML ({first_line})"
    if not isinstance(tree, dict):
        return {}, "is not a YAML mapping"
    return flatten(tree), None


def _peek_metrics(job_dir: Path) -> dict[str, Any]:
    try:
        data = json.loads((job_dir / METRICS_FILE).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def foreign_reason(job_dir: Path, config: dict[str, Any], problem: str | None) -> str | None:
    """Why a ``.hydra/`` folder is not a poolstudy job, or None when it is one. A snapshot that was
    read decides; a broken one is poolstudy's when its metrics.json is (the job is placed by it)."""
    keys = ", ".join(POOLSTUDY_KEYS)
    if problem is None:
        missing = [key for key in POOLSTUDY_KEYS if key not in config]
        if len(missing) == len(POOLSTUDY_KEYS):
            return f"not a poolstudy job: its {CONFIG_SNAPSHOT} has none of poolstudy's keys ({keys})"
        if missing:
            return f"not a poolstudy job: its {CONFIG_SNAPSHOT} lacks {', '.join(missing)} (poolstudy's keys: {keys})"
        return None
    metrics = _peek_metrics(job_dir)
    if all(lookup(metrics, key) is not MISSING for key in ("model.downsample.type", "dataset.name", "seed")):
        return None
    return (f"cannot tell which job it is: its {CONFIG_SNAPSHOT} is {problem} and it has no poolstudy "
            f"{METRICS_FILE} to place it by")


def _outcome(job_dir: Path, display: str, warnings: Warnings) -> tuple[str, dict | None, str | None]:
    """(status, metrics, error) of one job; a complete metrics.json wins over status.json (a re-run)."""
    metrics_path = job_dir / METRICS_FILE
    if metrics_path.is_file():
        metrics = _read_json(metrics_path, warnings)
        if metrics is None:
            return UNREADABLE, None, f"{METRICS_FILE} unreadable"
        if metrics.get("status") == COMPLETE:
            return COMPLETE, metrics, None
        warnings.add(os.path.join(display, METRICS_FILE),
                     f"status is {metrics.get('status')!r}, not 'complete'; the job is counted as unreadable")
        return UNREADABLE, metrics, f"{METRICS_FILE} status {metrics.get('status')!r}"
    status_path = job_dir / STATUS_FILE
    if status_path.is_file():
        record = _read_json(status_path, warnings)
        if record is None:
            return UNREADABLE, None, f"{STATUS_FILE} unreadable"
        status = record.get("status")
        if status in STATUS_FILE_STATES:
            return status, None, str(record.get("error") or "")
        warnings.add(os.path.join(display, STATUS_FILE),
                     f"status {status!r} is none of {', '.join(STATUS_FILE_STATES)}; the job is counted as unreadable")
        return UNREADABLE, None, f"{STATUS_FILE} status {status!r}"
    return PARTIAL, None, None


def _hpo_role(job_dir: Path, metrics: dict | None, config: dict[str, Any]) -> tuple[str | None, str | None, int | None]:
    """(role, study name, trial number): from metrics.json's "hpo" record, else the config's ``hpo.*`` keys
    (pruned and failed trials have no metrics.json), else the folder layout."""
    hpo = (metrics or {}).get("hpo")
    if not (isinstance(hpo, dict) and hpo.get("role") in HPO_ROLES):
        hpo = {key: config.get(f"hpo.{key}") for key in ("role", "study_name", "trial")}
    if hpo.get("role") in HPO_ROLES:
        trial = hpo.get("trial")
        study = hpo.get("study_name")
        if hpo["role"] == "trial" and not isinstance(trial, int) and job_dir.name.isdigit():
            trial = int(job_dir.name)
        return hpo["role"], str(study) if study else job_dir.parent.parent.name, trial if isinstance(trial, int) else None
    role = HPO_FOLDERS.get(job_dir.parent.name)
    if role is None:
        return None, None, None
    trial = int(job_dir.name) if role == "trial" and job_dir.name.isdigit() else None
    return role, job_dir.parent.parent.name, trial


def load_job(job_dir: Path, display: str, warnings: Warnings) -> Job | Skipped:
    config, problem = _read_config(job_dir)
    reason = foreign_reason(job_dir, config, problem)
    if reason is not None:
        return Skipped(display, reason)
    if problem is not None:
        warnings.add(os.path.join(display, str(CONFIG_SNAPSHOT)),
                     f"{problem}; the job is placed by its metrics.json where possible")
    status, metrics, error = _outcome(job_dir, display, warnings)
    role, study, trial = _hpo_role(job_dir, metrics, config)
    return Job(path=display, status=status, config=config, metrics=metrics, error=error,
               hpo_role=role, study=study, trial=trial)


# Where MLflow keeps logged artifacts: poolstudy.tracking's default next to an SQLite store, MLflow's own default.
MLFLOW_ARTIFACT_FOLDERS = frozenset({"mlartifacts", "mlruns"})


@dataclass
class Found:
    jobs: list[Job] = field(default_factory=list)
    studies: list[StudyFolder] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)  # folders that are not poolstudy's


def discover(paths: list[str], warnings: Warnings, skip: Path | None = None) -> Found:
    """Every job folder and HPO study summary under ``paths``, each once, in a stable order, and the
    folders that are not poolstudy's."""
    found = Found()
    seen: set[Path] = set()
    skip_real = skip.resolve() if skip is not None else None
    for root in paths:
        if not Path(root).is_dir():
            warnings.add(root, "not found or not a folder; skipped")
            continue
        for dirpath, dirnames, filenames in os.walk(root):
            here = Path(dirpath)
            real = here.resolve()
            is_job = SNAPSHOT_DIR in dirnames
            # MLflow's artifact folders hold copies of the job files logger=mlflow logged (metrics.json,
            # .hydra/): counted, a copy would stand in for its job or repeat it. Listed as skipped, not walked.
            for store in sorted(d for d in dirnames if d in MLFLOW_ARTIFACT_FOLDERS):
                found.skipped.append(Skipped(os.path.normpath(os.path.join(dirpath, store)),
                                             "an MLflow artifact folder: copies of job files logged by logger=mlflow, "
                                             "not job folders"))
            # Sorted and pruned in place: os.walk then visits folders in a deterministic order.
            dirnames[:] = sorted(d for d in dirnames if d != SNAPSHOT_DIR and d not in MLFLOW_ARTIFACT_FOLDERS
                                 and (here / d).resolve() != skip_real)
            if real in seen:
                continue
            seen.add(real)
            display = os.path.normpath(dirpath)
            if is_job:
                job = load_job(here, display, warnings)
                (found.skipped if isinstance(job, Skipped) else found.jobs).append(job)
            if STUDY_SUMMARY in filenames:
                summary = _read_json(here / STUDY_SUMMARY, warnings, "the study's summary is left out")
                if summary is None:
                    continue
                missing = [key for key in STUDY_SUMMARY_KEYS if key not in summary]
                if missing:
                    found.skipped.append(Skipped(os.path.join(display, STUDY_SUMMARY),
                                                 f"not a poolstudy study summary: it lacks {', '.join(missing)}"))
                else:
                    found.studies.append(StudyFolder(display, summary))
    return found
