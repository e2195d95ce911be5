"""HPO studies: trials in order with their validation accuracy, from the sweep folders or an Optuna
storage, for the best-so-far and expected-best-for-a-budget curves.

Folder contract (written by the HPO sweeps): ``<sweep>/<study>/study_summary.json``,
``<sweep>/<study>/trials/<trial number>/`` and ``<sweep>/<study>/final/<seed>/`` (job folders).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from poolstudy.results.cells import TUNING, Cell, Grouping, canonical_key, key_value, show_value
from poolstudy.results.records import COMPLETE, MISSING, PARTIAL, Job, StudyFolder, Warnings, as_number
from poolstudy.results.stats import best_so_far, expected_max
from poolstudy.errors import PoolStudyError

TRIAL_STATES = ("complete", "pruned", "failed", "running")
SUMMARY_LABELS = ("arch", "downsample", "dataset")  # study_summary.json's names of its cell's variant
SETTINGS_ATTR = "poolstudy_settings"  # the study user attribute where the HPO sweeper keeps its cell
_JOB_TO_TRIAL = {COMPLETE: "complete", "pruned": "pruned", PARTIAL: "running"}  # anything else: failed


@dataclass
class Trial:
    number: int
    state: str  # one of TRIAL_STATES
    value: float | None  # the objective: final validation accuracy


@dataclass
class Study:
    name: str
    source: str  # the study folder or the storage URL
    panel: Any = None
    label: str = ""
    trials: list[Trial] = field(default_factory=list)
    best_params: dict[str, Any] = field(default_factory=dict)
    best_value: float | None = None
    sampler: str | None = None
    sampler_seed: Any = None
    summary_counts: dict[str, int] = field(default_factory=dict)  # from study_summary.json, when given

    @property
    def counts(self) -> dict[str, int]:
        """The sweeper's own counts where it wrote them: a trial folder without an outcome file may be a
        trial Optuna recorded as failed."""
        derived = {state: sum(t.state == state for t in self.trials) for state in TRIAL_STATES}
        return {**derived, **self.summary_counts} if self.summary_counts else derived

    @property
    def values(self) -> list[float]:
        return [t.value for t in self.trials if t.state == "complete" and t.value is not None]

    def best_so_far(self) -> tuple[list[int], list[float | None]]:
        return [t.number for t in self.trials], best_so_far(
            [t.value if t.state == "complete" else None for t in self.trials])

    def expected_max(self) -> tuple[list[int], list[float], list[float]]:
        values = self.values
        means, stds = expected_max(values)
        return list(range(1, len(values) + 1)), means, stds


def cell_values(cell: Any, labels: dict[str, Any] | None = None) -> dict[str, Any]:
    """A study's grid cell as {dotted key: value}, from a mapping or from Hydra overrides such as
    ``["model=maxpool", "dataset=mnist"]``; ``labels`` (the summary's arch/downsample/dataset) win."""
    if isinstance(cell, dict):
        items = list(cell.items())
    elif isinstance(cell, (list, tuple)):
        items = [str(o).lstrip("+~").split("=", 1) for o in cell if "=" in str(o)]
        items = [(k, _typed(v)) for k, v in items]
    else:
        items = []
    values = {canonical_key(str(k)): v for k, v in items}
    for key, value in (labels or {}).items():
        if value is not None:
            values[canonical_key(key)] = value
    return values


def _typed(text: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def _place(study: Study, grouping: Grouping, jobs: list[Job], cell: dict[str, Any], cells: list[Cell]) -> None:
    """The study's dataset and variant label, named like the table's rows. Without job configs (a study
    read from a storage) the grid cell's keys are matched against the table's cells."""
    row_keys = [k for k in grouping.row_keys if k != TUNING]
    configured = [job for job in jobs if job.config]
    if configured:
        values = {k: key_value(configured[0], k) for k in row_keys}
        panel = key_value(configured[0], grouping.panel_key) if grouping.panel_key else None
        study.panel = None if panel is MISSING else panel
        study.label = grouping.label({**values, TUNING: "untuned"})
        return
    panel = cell.get(grouping.panel_key) if grouping.panel_key else None
    known = {k: v for k, v in cell.items() if k in row_keys}
    matches = {c.label.removesuffix(" (tuned)") for c in cells
               if c.panel == panel and known and all(c.values.get(k) == v for k, v in known.items())}
    study.panel = panel
    if len(matches) == 1:
        study.label = matches.pop()
    else:
        study.label = ", ".join(f"{k}={show_value(v)}" for k, v in sorted(cell.items())
                                if k != grouping.panel_key) or study.name


def _trial_from_job(job: Job, fallback_number: int) -> Trial:
    state = _JOB_TO_TRIAL.get(job.status, "failed")
    value = job.number("val_acc") if state == "complete" else None
    return Trial(job.trial if job.trial is not None else fallback_number, state, value)


def _counts_from_summary(summary: dict[str, Any]) -> dict[str, int]:
    counts = {state: summary.get(f"n_{state}") for state in ("complete", "pruned", "failed")}
    return {k: int(v) for k, v in counts.items() if isinstance(v, int)}


def _one_per_number(name: str, trial_jobs: list[Job], warnings: Warnings | None,
                    repeated: list[Job]) -> list[Trial]:
    """A study's trials, each number once: two folders of one trial number (a copied or re-collected
    sweep) are one trial, not two draws of the search. The first finished folder found counts."""
    by_number: dict[int, list[tuple[Trial, Job]]] = {}
    for i, job in enumerate(trial_jobs):
        trial = _trial_from_job(job, i)
        by_number.setdefault(trial.number, []).append((trial, job))
    trials = []
    for number, found in sorted(by_number.items()):
        found.sort(key=lambda pair: pair[0].state == "running")  # stable: found order otherwise
        trials.append(found[0][0])
        repeated += [job for _, job in found[1:]]
        if len(found) > 1 and warnings is not None:
            values = {t.value for t, _ in found}
            warnings.add(found[0][1].path,
                         f"trial {number} of study {name!r} is also in {', '.join(j.path for _, j in found[1:])}: "
                         f"counted once, as {found[0][1].path}" +
                         ("" if len(values) == 1 else "; their results differ, so these may be two studies of "
                          "one name (other storages): collect them separately"))
    return trials


def studies_from_folders(jobs: list[Job], folders: list[StudyFolder], grouping: Grouping,
                         cells: list[Cell], warnings: Warnings | None = None,
                         repeated: list[Job] | None = None) -> list[Study]:
    """Studies from their folders' study_summary.json and trial/final job folders. A trial number found
    in several folders counts once (warned); the others are appended to ``repeated``."""
    repeated = [] if repeated is None else repeated
    by_name: dict[str, Study] = {}
    grid: dict[str, dict] = {}
    for folder in folders:
        summary = folder.summary
        name = str(summary.get("study_name") or Path(folder.path).name)
        study = by_name.setdefault(name, Study(name, folder.path))
        study.best_params = dict(summary.get("best_params") or {})
        study.best_value = as_number(summary.get("best_val_acc"))
        study.sampler = summary.get("sampler")
        study.sampler_seed = summary.get("sampler_seed")
        study.summary_counts = _counts_from_summary(summary)
        grid[name] = cell_values(summary.get("cell"), {k: summary.get(k) for k in SUMMARY_LABELS})
    members: dict[str, list[Job]] = {}
    for job in jobs:
        if job.study is not None:
            members.setdefault(job.study, []).append(job)
            by_name.setdefault(job.study, Study(job.study, str(Path(job.path).parent.parent)))
    for name, study in by_name.items():
        trial_jobs = [job for job in members.get(name, []) if job.hpo_role == "trial"]
        study.trials = _one_per_number(name, trial_jobs, warnings, repeated)
        if study.best_value is None and study.values:
            study.best_value = max(study.values)
        _place(study, grouping, members.get(name, []), grid.get(name, {}), cells)
    return [by_name[name] for name in sorted(by_name)]


def studies_from_storage(storage: str, names: list[str] | None, grouping: Grouping,
                         cells: list[Cell]) -> list[Study]:
    """Studies read with Optuna itself (``--storage URL --study NAME...``; all studies without names)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if storage.startswith("sqlite:///") and not Path(storage[len("sqlite:///"):]).is_file():
        # Optuna would silently create an empty database there.
        raise PoolStudyError(f"--storage {storage!r}: the SQLite file {storage[len('sqlite:///'):]!r} does not exist.")
    try:
        available = sorted(s.study_name for s in optuna.get_all_study_summaries(storage))
    except Exception as exc:  # optuna raises many storage-specific errors
        raise PoolStudyError(f"--storage {storage!r} could not be read: {exc}") from None
    wanted = names or available
    missing = [n for n in wanted if n not in available]
    if missing:
        raise PoolStudyError(f"--study {', '.join(missing)} not in --storage {storage!r}; studies there: "
                             f"{', '.join(available) or 'none'}.")
    studies = []
    state_names = {optuna.trial.TrialState.COMPLETE: "complete", optuna.trial.TrialState.PRUNED: "pruned",
                   optuna.trial.TrialState.FAIL: "failed"}
    for name in wanted:
        loaded = optuna.load_study(study_name=name, storage=storage)
        study = Study(name, storage)
        for trial in sorted(loaded.trials, key=lambda t: t.number):
            state = state_names.get(trial.state, "running")
            study.trials.append(Trial(trial.number, state, as_number(trial.value) if state == "complete" else None))
        if study.values:
            best = loaded.best_trial
            study.best_params, study.best_value = dict(best.params), as_number(best.value)
        settings = loaded.user_attrs.get(SETTINGS_ATTR) or {}
        study.sampler, study.sampler_seed = settings.get("sampler"), settings.get("sampler_seed")
        _place(study, grouping, [], cell_values(settings.get("cell")), cells)
        studies.append(study)
    return studies


def merge(on_disk: list[Study], from_storage: list[Study]) -> list[Study]:
    """A study read from the storage replaces its folder's trial list; placement from job configs stays."""
    by_name = {s.name: s for s in on_disk}
    for study in from_storage:
        if study.name in by_name:
            kept = by_name[study.name]
            kept.trials, kept.source, kept.summary_counts = study.trials, study.source, {}
            kept.best_params = kept.best_params or study.best_params
            kept.best_value = study.best_value if study.best_value is not None else kept.best_value
        else:
            by_name[study.name] = study
    return [by_name[name] for name in sorted(by_name)]
