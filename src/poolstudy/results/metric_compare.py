"""Two metrics of the same jobs side by side: does the conclusion depend on how the models are evaluated?

Every job records, among others, ``test_acc`` (after BatchNorm re-estimation, the default) and
``test_acc_raw`` (the seed's plain evaluation). ``python -m poolstudy.collect PATHS --compare-metrics
test_acc_raw,test_acc`` tabulates both: per dataset and variant the mean ± std of each, each variant's
difference from its baseline with the Holm-adjusted Welch p and verdict (each metric is its own family
of tests, exactly as ``--metric <that metric>`` would compute it), whether the difference changes sign,
the paired change from the first metric to the second over the same jobs, and per dataset whether the
ranking of the variants by mean changes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from poolstudy.results.cells import Cell, Grouping, key_value, sort_key
from poolstudy.results.stats import Spread, spread
from poolstudy.results.aggregate import METRICS, CellSummary, Summary, summarise
from poolstudy.errors import PoolStudyError


@dataclass
class PairedRow:
    """One cell under both metrics."""

    first: CellSummary
    second: CellSummary
    change: Spread  # second - first over the jobs that have both, as fractions

    @property
    def sign_flips(self) -> bool | None:
        """Whether the difference from the baseline changes sign; None where either is not compared."""
        a, b = self.first.comparison, self.second.comparison
        if a is None or b is None:
            return None
        return (a.diff > 0) != (b.diff > 0) and a.diff != 0 and b.diff != 0


@dataclass
class Ranking:
    panel: Any
    first: list[str]  # variant labels by descending mean
    second: list[str]

    @property
    def flips(self) -> bool:
        return self.first != self.second


@dataclass
class MetricComparison:
    metrics: tuple[str, str]
    summaries: tuple[Summary, Summary]
    rows: list[PairedRow]
    rankings: list[Ranking]


def parse_metrics(text: str) -> tuple[str, str]:
    """``--compare-metrics A,B``: two different metrics of METRICS."""
    names = tuple(name.strip() for name in text.split(",") if name.strip())
    if len(names) != 2 or names[0] == names[1] or not set(names) <= set(METRICS):
        raise PoolStudyError(f"--compare-metrics {text!r}: give two different metrics separated by a comma, "
                             f"each one of {', '.join(METRICS)} (e.g. test_acc_raw,test_acc).")
    return names  # type: ignore[return-value]


def _order(rows: list[CellSummary]) -> list[str]:
    finished = [row for row in rows if row.metric.n]
    return [row.label for row in sorted(finished, key=lambda row: -row.metric.mean)]


def _paired_change(cell: Cell, first: str, second: str) -> Spread:
    jobs = sorted((job for job in cell.complete if job.number(first) is not None and job.number(second) is not None),
                  key=lambda job: (sort_key(key_value(job, "seed")), job.path))
    return spread([job.number(second) - job.number(first) for job in jobs])


def compare_metrics(cells: list[Cell], grouping: Grouping, metrics: tuple[str, str], baseline: str,
                    alpha: float, baseline_given: bool) -> MetricComparison:
    first, second = (summarise(cells, grouping, metric=m, baseline=baseline, alpha=alpha,
                               baseline_given=baseline_given) for m in metrics)
    rows = [PairedRow(a, b, _paired_change(a.cell, *metrics)) for a, b in zip(first.rows, second.rows)]
    rankings = [Ranking(panel, _order(first.in_panel(panel)), _order(second.in_panel(panel)))
                for panel in first.panels]
    return MetricComparison(metrics, (first, second), rows, rankings)


def record(comparison: MetricComparison) -> dict[str, Any]:
    """results.json's ``metric_comparison`` (fractions, NaN as null by the writer)."""
    def side(row: CellSummary) -> dict[str, Any]:
        c = row.comparison
        return {"n": row.metric.n, "mean": row.metric.mean, "std": row.metric.std,
                "diff": c.diff if c else None, "p_welch": c.p_welch if c else None,
                "p_welch_holm": row.p_welch_holm if c else None, "verdict": row.verdict, "best": row.best}

    first, second = comparison.metrics
    return {
        "metrics": list(comparison.metrics),
        "rows": [{"panel": r.first.cell.panel, "variant": r.first.label, "baseline": r.first.baseline,
                  first: side(r.first), second: side(r.second), "sign_flips": r.sign_flips,
                  "paired_change": {"n": r.change.n, "mean": r.change.mean, "std": r.change.std}}
                 for r in comparison.rows],
        "rankings": [{"panel": k.panel, first: k.first, second: k.second, "flips": k.flips}
                     for k in comparison.rankings],
    }
