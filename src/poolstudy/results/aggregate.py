"""Per-cell statistics and the significance of each variant against the baseline variant."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from poolstudy.results.cells import TUNING, Cell, Grouping
from poolstudy.results.records import Job, as_number
from poolstudy.results.replicates import per_seed
from poolstudy.results.stats import Comparison, Spread, compare, holm, spread
from poolstudy.errors import PoolStudyError

DEFAULT_BASELINE = "maxpool"
OPERATOR_PREFIX = "model.downsample."  # the keys that define the operator a baseline is chosen by
METRICS = ("test_acc", "val_acc", "test_acc_raw", "val_acc_raw", "shift_consistency")
# Cost columns: the mean over a cell's finished jobs.
COST_KEYS = ("params", "macs", "train_time_s", "images_per_s")
# Scalar shift-invariance probes (metrics.json of jobs run with the probes on), shown when present.
INVARIANCE_KEYS = ("shift_consistency", "prediction_distance_1px")


@dataclass
class CellSummary:
    cell: Cell
    values: list[float]  # the metric per seed (the mean of the seed's finished jobs), in seed order
    seeds: list[Any]
    jobs: list[str]  # paths of the jobs behind those values
    metric: Spread
    val_acc: Spread
    costs: dict[str, float | None]
    invariance: dict[str, Spread]  # of the INVARIANCE_KEYS the cell's jobs have
    acc_vs_shift: dict[float, Spread]
    is_baseline: bool = False
    baseline: str | None = None  # label of the cell this one is compared with
    comparison: Comparison | None = None
    p_welch_holm: float = float("nan")
    p_mwu_holm: float = float("nan")
    significant: bool | None = None
    best: bool = False

    @property
    def label(self) -> str:
        return self.cell.label

    @property
    def verdict(self) -> str:
        if self.is_baseline:
            return "baseline"
        if self.baseline is None:
            return "no baseline"
        if self.comparison is None or self.significant is None:
            return "n/a (n < 2)"
        if not self.significant:
            return "n.s."
        return "better" if self.comparison.diff > 0 else "worse"


@dataclass
class TuningGain:
    """A variant's tuned result against its untuned result on the same dataset."""

    tuned: CellSummary
    untuned: CellSummary
    comparison: Comparison | None
    p_welch_holm: float = float("nan")


@dataclass
class Summary:
    metric: str
    grouping: Grouping
    baseline: str
    alpha: float
    rows: list[CellSummary]
    tuning_gains: list[TuningGain] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def panels(self) -> list[Any]:
        return list(dict.fromkeys(row.cell.panel for row in self.rows))

    def in_panel(self, panel: Any) -> list[CellSummary]:
        """The panel's rows, baseline first."""
        rows = [row for row in self.rows if row.cell.panel == panel]
        return sorted(rows, key=lambda row: not row.is_baseline)


def _finished(cell: Cell, metric: str) -> list[Job]:
    return [job for job in cell.complete if job.number(metric) is not None]


def _mean(numbers: list[float | None]) -> float | None:
    present = [n for n in numbers if n is not None]
    return sum(present) / len(present) if present else None


def _seed_values(jobs: list[Job], key: str) -> list[float]:
    """One value per seed (the mean of its jobs): seeds, not job folders, are the replicates."""
    return [value for _, value, _ in per_seed(jobs, lambda job: job.number(key))]


def _acc_vs_shift(jobs: list[Job]) -> dict[float, Spread]:
    by_shift: dict[float, dict[str, float]] = {}  # shift -> job path -> accuracy
    for job in jobs:
        curve = (job.metrics or {}).get("acc_vs_shift")
        if not isinstance(curve, dict):
            continue
        for shift, acc in curve.items():
            try:
                shift_px = float(shift)
            except ValueError:
                continue
            if as_number(acc) is not None:
                by_shift.setdefault(shift_px, {})[job.path] = float(acc)
    return {shift: spread([v for _, v, _ in per_seed(jobs, lambda job, s=shift: by_shift[s].get(job.path))])
            for shift in sorted(by_shift)}


def summarise_cell(cell: Cell, metric: str) -> CellSummary:
    jobs = _finished(cell, metric)
    seeds = per_seed(jobs, lambda job: job.number(metric))
    probes = {key: _seed_values(jobs, key) for key in INVARIANCE_KEYS}
    values = [value for _, value, _ in seeds]
    return CellSummary(
        cell=cell,
        values=values,
        seeds=[seed for seed, _, _ in seeds],
        jobs=[job.path for _, _, seed_jobs in seeds for job in seed_jobs],
        metric=spread(values),
        val_acc=spread(_seed_values(jobs, "val_acc")),
        costs={key: _mean([job.number(key) for job in jobs]) for key in COST_KEYS},
        invariance={key: spread(values) for key, values in probes.items() if values},
        acc_vs_shift=_acc_vs_shift(jobs),
    )


def _matches(row: CellSummary, spec: str) -> bool:
    return row.label == spec or str(row.cell.values.get("model.downsample.type")) == spec


def _baseline_for(row: CellSummary, panel_rows: list[CellSummary], spec: str) -> CellSummary | None:
    """The baseline row this row is tested against: where the spec matches several (per architecture,
    tuned and untuned), the one that shares the row's other keys (its architecture, its tuning)."""
    candidates = [other for other in panel_rows if _matches(other, spec)]
    if len(candidates) > 1:
        context = {k: v for k, v in row.cell.values.items() if not k.startswith(OPERATOR_PREFIX)}
        candidates = [c for c in candidates if all(c.cell.values.get(k) == v for k, v in context.items())]
    if len(candidates) > 1:
        raise PoolStudyError(
            f"the baseline {spec!r} (--baseline) matches several variants on {row.cell.panel}: "
            f"{', '.join(repr(c.label) for c in candidates)}; give one of these labels exactly.")
    return candidates[0] if candidates else None


def _significant(p_holm: float, alpha: float) -> bool | None:
    return None if p_holm != p_holm else bool(p_holm < alpha)  # NaN: not testable


def summarise(cells: list[Cell], grouping: Grouping, metric: str = "test_acc", baseline: str = DEFAULT_BASELINE,
              alpha: float = 0.05, baseline_given: bool = False) -> Summary:
    rows = [summarise_cell(cell, metric) for cell in cells]
    summary = Summary(metric, grouping, baseline, alpha, rows)
    if baseline_given and not any(_matches(row, baseline) for row in rows):
        raise PoolStudyError(f"--baseline {baseline!r} matches no variant; variants found: "
                             f"{', '.join(sorted({repr(r.label) for r in rows}))}.")

    compared: list[CellSummary] = []
    for panel in summary.panels:
        panel_rows = [row for row in rows if row.cell.panel == panel]
        for row in panel_rows:
            reference = _baseline_for(row, panel_rows, baseline)
            if reference is None:
                continue
            row.baseline = reference.label
            if reference is row:
                row.is_baseline = True
                continue
            row.comparison = compare(row.values, reference.values)
            if row.comparison is not None:
                compared.append(row)
        finished = [row for row in panel_rows if row.metric.n]
        top = max((row.metric.mean for row in finished), default=None)
        for row in finished:
            row.best = row.metric.mean == top
        if not any(row.is_baseline for row in panel_rows):
            summary.notes.append(f"{panel if panel is not None else 'all jobs'}: no variant matches the baseline "
                                 f"{baseline!r}; no significance tests there.")

    # Holm across the whole table: every comparison shown is one test of the family.
    for family, attr in (("p_welch", "p_welch_holm"), ("p_mwu", "p_mwu_holm")):
        for row, adjusted in zip(compared, holm([getattr(r.comparison, family) for r in compared])):
            setattr(row, attr, adjusted)
    for row in compared:
        row.significant = _significant(row.p_welch_holm, alpha)

    summary.tuning_gains = _tuning_gains(rows)
    return summary


def _tuning_gains(rows: list[CellSummary]) -> list[TuningGain]:
    untuned = {(row.cell.panel, tuple((k, v) for k, v in row.cell.values.items() if k != TUNING)): row
               for row in rows if row.cell.values.get(TUNING) == "untuned"}
    gains = []
    for row in rows:
        if not row.cell.tuned:
            continue
        key = (row.cell.panel, tuple((k, v) for k, v in row.cell.values.items() if k != TUNING))
        if key in untuned:
            gains.append(TuningGain(row, untuned[key], compare(row.values, untuned[key].values)))
    tested = [g for g in gains if g.comparison is not None]
    for gain, adjusted in zip(tested, holm([g.comparison.p_welch for g in tested])):
        gain.p_welch_holm = adjusted
    return gains
