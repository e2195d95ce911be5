"""The statistics of the tables: seed spread, tests against a baseline, Holm correction, and the
expected best validation accuracy for a tuning budget (Dodge et al. 2019)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

NAN = float("nan")


@dataclass(frozen=True)
class Spread:
    """Mean and spread of one cell over its seeds, in the values' own unit (an accuracy fraction, seconds, ...).

    Attributes:
        n: number of values (seeds).
        mean: their mean; NaN for none.
        std: sample standard deviation (ddof=1); NaN for n < 2.
        ci_low: lower end of the Student-t confidence interval of the mean; NaN for n < 2.
        ci_high: its upper end.
    """

    n: int
    mean: float
    std: float  # sample standard deviation (ddof=1); NaN for n < 2
    ci_low: float  # Student-t confidence interval of the mean; NaN for n < 2
    ci_high: float


def spread(values: Sequence[float], confidence: float = 0.95) -> Spread:
    """:class:`Spread` of ``values`` with a two-sided Student-t interval at ``confidence`` (scipy.stats.t)."""
    x = np.asarray(values, dtype=float)
    n = len(x)
    if n == 0:
        return Spread(0, NAN, NAN, NAN, NAN)
    mean = float(x.mean())
    if n < 2:
        return Spread(1, mean, NAN, NAN, NAN)
    std = float(x.std(ddof=1))
    half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * std / math.sqrt(n)
    return Spread(n, mean, std, mean - half, mean + half)


@dataclass(frozen=True)
class Comparison:
    """A variant against the baseline on one dataset (see :func:`compare`).

    Attributes:
        diff: mean(variant) − mean(baseline), in the values' unit.
        hedges_g: :func:`hedges_g` of variant against baseline.
        p_welch: two-sided p of Welch's t-test (unadjusted; the tables Holm-adjust it with :func:`holm`).
        p_mwu: two-sided p of the Mann–Whitney U test (exact for small samples, as scipy chooses).
    """

    diff: float  # mean(variant) - mean(baseline)
    hedges_g: float
    p_welch: float
    p_mwu: float


def hedges_g(a: Sequence[float], b: Sequence[float]) -> float:
    """Standardised mean difference (a - b) / pooled SD, with the small-sample correction that matters
    at a handful of seeds; NaN when the pooled SD is zero.

    Hedges & Olkin (1985): Cohen's d times ``1 - 3 / (4 (n_a + n_b) - 9)``; unitless. Needs two values a side.
    """
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    na, nb = len(a), len(b)
    pooled = math.sqrt(((na - 1) * a.var(ddof=1) + (nb - 1) * b.var(ddof=1)) / (na + nb - 2))
    if pooled == 0:
        return NAN
    return float((a.mean() - b.mean()) / pooled * (1 - 3 / (4 * (na + nb) - 9)))


def compare(variant: Sequence[float], baseline: Sequence[float]) -> Comparison | None:
    """Welch's t-test and the Mann-Whitney U test (both two-sided); None below two seeds a side.

    Args:
        variant: one value per seed (e.g. test accuracies as fractions).
        baseline: the baseline's values on the same dataset.

    Returns:
        :class:`Comparison` (scipy.stats ``ttest_ind(equal_var=False)`` and ``mannwhitneyu``), or ``None``.
    """
    if len(variant) < 2 or len(baseline) < 2:
        return None
    diff = float(np.mean(variant) - np.mean(baseline))
    p_welch = float(stats.ttest_ind(variant, baseline, equal_var=False).pvalue)
    p_mwu = float(stats.mannwhitneyu(variant, baseline, alternative="two-sided").pvalue)
    return Comparison(diff, hedges_g(variant, baseline), p_welch, p_mwu)


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (scipy has only Benjamini-Hochberg); NaNs stay NaN and do not
    count towards the number of tests.

    Holm (1979), "A Simple Sequentially Rejective Multiple Test Procedure": the k-th smallest of m p-values is
    multiplied by m − k + 1, made non-decreasing and capped at 1. Returns the adjusted values in input order.
    """
    p = np.asarray(pvalues, dtype=float)
    adjusted = np.full(len(p), NAN)
    tested = np.flatnonzero(~np.isnan(p))
    m = len(tested)
    running = 0.0
    for rank, index in enumerate(tested[np.argsort(p[tested], kind="stable")]):
        running = max(running, min(1.0, (m - rank) * p[index]))
        adjusted[index] = running
    return adjusted.tolist()


def expected_max(values: Sequence[float], budgets: Sequence[int] | None = None) -> tuple[list[float], list[float]]:
    """Expected best of ``n`` trials drawn from the empirical distribution of ``values``, and its standard
    deviation, for each budget n (default 1..N). Dodge et al. 2019, "Show Your Work", eq. 1:
    E[max] = sum_i v_(i) * ((i/N)^n - ((i-1)/N)^n) over the sorted values v_(1) <= ... <= v_(N).

    Returns:
        ``(means, stds)``, one entry per budget, in the values' unit (validation accuracy as a fraction).
    """
    v = np.sort(np.asarray(values, dtype=float))
    total = len(v)
    if budgets is None:
        budgets = range(1, total + 1)
    rank = np.arange(1, total + 1)
    means, stds = [], []
    for n in budgets:
        weight = (rank / total) ** n - ((rank - 1) / total) ** n
        mean = float(weight @ v)
        means.append(mean)
        stds.append(math.sqrt(max(float(weight @ v**2) - mean**2, 0.0)))
    return means, stds


def best_so_far(values: Sequence[float | None]) -> list[float | None]:
    """Running maximum in trial order; trials without a value (pruned, failed) keep the previous best."""
    best: float | None = None
    out: list[float | None] = []
    for value in values:
        if value is not None and (best is None or value > best):
            best = value
        out.append(best)
    return out
