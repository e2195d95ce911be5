"""Ranks of the variants across datasets, with pairwise verdicts: the data of the critical-difference-style
rank figure (:func:`poolstudy.results.rank_plot.rank_figure`).

How it is computed, and why:

- **Ranks.** On each dataset the variants are ranked by their mean metric over seeds (rank 1 = best;
  tied means share the average of their ranks, ``scipy.stats.rankdata``); a variant's mean rank is the
  average of its ranks over the datasets (Demšar 2006, "Statistical comparisons of classifiers over
  multiple data sets", JMLR 7). Only variants with results on every dataset are ranked.
- **Pairwise verdicts.** Every pair of variants is compared on every dataset with Welch's t-test over the
  seeds (the replicates; the collector's test against the baseline, ``poolstudy.results.stats.compare``),
  and the p-values of all pairs × datasets are Holm-adjusted as one family (Holm 1979). A pair is
  *separated* when it differs significantly on at least one dataset; the diagram's bars join variants
  that no test separates.
- **Why not Friedman/Nemenyi or a Wilcoxon test over datasets** (Demšar's recommendation for many
  datasets): they treat datasets as the replicates, and studies here have two or three datasets, where
  they cannot reach significance at all (the smallest two-sided Wilcoxon signed-rank p over N datasets is
  2/2^N: 0.5 for N = 2), and Benavoli et al. (2016, "Should we really use post-hoc tests based on
  mean-ranks?", JMLR 17) show that mean-rank post-hoc tests make a pair's verdict depend on the other
  variants in the comparison. Seeds within a dataset are real replicates, so the tests use them.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats as scipy_stats

from poolstudy.results.stats import compare, holm
from poolstudy.results.aggregate import Summary


@dataclass(frozen=True)
class PairTest:
    first: str  # variant labels
    second: str
    panel: Any  # the dataset
    diff: float  # mean(first) - mean(second), fraction
    p_welch: float
    p_holm: float = float("nan")
    significant: bool | None = None  # None: not testable (fewer than two seeds a side)


@dataclass
class Ranking:
    metric: str
    alpha: float
    panels: list[Any]
    variants: list[str]  # by mean rank, best first
    ranks: dict[str, dict[Any, float]]  # variant -> dataset -> rank
    means: dict[str, dict[Any, float]]  # variant -> dataset -> mean metric
    mean_rank: dict[str, float]
    tests: list[PairTest] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # variants missing on some dataset

    def separated(self, a: str, b: str) -> bool:
        """Whether some dataset's Holm-adjusted test separates ``a`` and ``b``."""
        return any(t.significant for t in self.tests if {t.first, t.second} == {a, b})

    def groups(self) -> list[list[str]]:
        """Maximal runs of variants adjacent in rank order that no test separates (two or more members):
        the bars of a critical-difference diagram."""
        order = self.variants
        runs: list[tuple[int, int]] = []
        for start in range(len(order)):
            end = start
            while end + 1 < len(order) and not any(self.separated(order[i], order[end + 1])
                                                   for i in range(start, end + 1)):
                end += 1
            if end > start and not any(s <= start and end <= e for s, e in runs):
                runs.append((start, end))
        return [order[s:e + 1] for s, e in runs]

    def verdict(self, a: str, b: str) -> str:
        """``a`` against ``b`` in words: per dataset better / worse / n.s. / n/a."""
        parts = []
        for test in self.tests:
            if {test.first, test.second} != {a, b}:
                continue
            diff = test.diff if test.first == a else -test.diff
            word = "n/a" if test.significant is None else ("n.s." if not test.significant
                                                            else ("better" if diff > 0 else "worse"))
            parts.append((test.panel, word))
        return ", ".join(f"{word} on {panel}" for panel, word in parts)


def rank_variants(summary: Summary, values: dict[tuple[str, Any], list[float]] | None = None) -> Ranking | None:
    """The ranking of ``summary``'s variants over its datasets (panels); None with fewer than two
    datasets or two variants present on all of them.

    ``values`` (variant label, dataset) -> per-seed metric values, default from the summary's rows.
    """
    if values is None:
        values = {(row.label, row.cell.panel): list(row.values) for row in summary.rows if row.values}
    panels = list(dict.fromkeys(panel for _, panel in values))
    labels = list(dict.fromkeys(label for label, _ in values))
    complete = [label for label in labels if all((label, panel) in values for panel in panels)]
    if len(panels) < 2 or len(complete) < 2:
        return None
    means = {label: {panel: float(np.mean(values[(label, panel)])) for panel in panels} for label in complete}
    ranks: dict[str, dict[Any, float]] = {label: {} for label in complete}
    for panel in panels:
        panel_ranks = scipy_stats.rankdata([-means[label][panel] for label in complete], method="average")
        for label, rank in zip(complete, panel_ranks):
            ranks[label][panel] = float(rank)
    mean_rank = {label: float(np.mean(list(ranks[label].values()))) for label in complete}
    order = sorted(complete, key=lambda label: (mean_rank[label], complete.index(label)))

    tests = []
    for panel in panels:
        for a, b in itertools.combinations(order, 2):
            result = compare(values[(a, panel)], values[(b, panel)])
            p = result.p_welch if result is not None else float("nan")
            tests.append(PairTest(a, b, panel, means[a][panel] - means[b][panel], p))
    adjusted = holm([t.p_welch for t in tests])
    tests = [PairTest(t.first, t.second, t.panel, t.diff, t.p_welch, p,
                      None if p != p else bool(p < summary.alpha)) for t, p in zip(tests, adjusted)]
    return Ranking(summary.metric, summary.alpha, panels, order, ranks, means, mean_rank, tests,
                   [label for label in labels if label not in complete])


def caption(ranking: Ranking) -> str:
    """How the figure is computed, in one paragraph (the figure's caption in the report)."""
    n = len(ranking.panels)
    pairs = len(ranking.variants) * (len(ranking.variants) - 1) // 2
    left_out = (f" Not ranked (missing on some dataset): {', '.join(ranking.left_out)}." if ranking.left_out else "")
    return (f"Mean rank of each variant over {n} datasets, by its mean {ranking.metric} over seeds on each "
            f"(rank 1 = best, ties share the average rank; Demšar 2006). A bar joins variants that no test "
            f"separates: Welch's t-test over seeds on each dataset, Holm-adjusted over all {pairs} pairs × {n} "
            f"datasets (Holm 1979), α = {ranking.alpha:g}. Seeds are the replicates: with {n} datasets a "
            f"Friedman/Nemenyi or Wilcoxon test over datasets could not reach significance (smallest two-sided "
            f"Wilcoxon p = 2/2^{n} = {2 / 2 ** n:.3g}; see also Benavoli et al. 2016).{left_out}")


def ranking_markdown(ranking: Ranking) -> str:
    """The ranks per dataset and the mean rank, best first, with the pairwise verdicts below."""
    from poolstudy.results.tables import markdown_table, panel_name

    headers = ["variant", *[f"rank on {panel_name(p)}" for p in ranking.panels], "mean rank"]
    rows = [[label, *[f"{ranking.ranks[label][p]:g}" for p in ranking.panels], f"{ranking.mean_rank[label]:.2f}"]
            for label in ranking.variants]
    pairs = [[a, b, ranking.verdict(a, b)] for a, b in itertools.combinations(ranking.variants, 2)]
    return (markdown_table(headers, rows) + "\n\n" +
            markdown_table(["variant", "against", "verdict (Holm-adjusted Welch, per dataset)"], pairs))


def ranking_record(ranking: Ranking) -> dict:
    """For results.json."""
    return {"metric": ranking.metric, "alpha": ranking.alpha, "datasets": ranking.panels,
            "variants": ranking.variants, "ranks": ranking.ranks, "means": ranking.means,
            "mean_rank": ranking.mean_rank, "groups": ranking.groups(), "left_out": ranking.left_out,
            "tests": [{"variant": t.first, "against": t.second, "dataset": t.panel, "diff": t.diff,
                       "p_welch": t.p_welch, "p_welch_holm": t.p_holm, "significant": t.significant}
                      for t in ranking.tests]}
