"""The rank analysis across datasets on constructed data whose ranks and verdicts are known."""

from __future__ import annotations

import pytest

from poolstudy.results.rank import caption, rank_variants, ranking_markdown
from poolstudy.results.aggregate import Summary


def _summary(alpha: float = 0.05) -> Summary:
    return Summary("test_acc", grouping=None, baseline="a", alpha=alpha, rows=[])


def _values(means: dict[str, dict[str, float]], spread: float = 0.001, n: int = 5) -> dict:
    """Seeds around each mean: mean + spread * (-2, -1, 0, 1, 2)[:n]."""
    offsets = [-2, -1, 0, 1, 2][:n]
    return {(label, panel): [m + spread * o for o in offsets] for label, by_panel in means.items()
            for panel, m in by_panel.items()}


def test_ranks_per_dataset_mean_rank_and_order():
    # d1: a > b > c > d; d2: b > a > c = d (tie: 3.5 each); d3: a > c > b > d
    means = {"a": {"d1": 0.90, "d2": 0.80, "d3": 0.70},
             "b": {"d1": 0.85, "d2": 0.85, "d3": 0.60},
             "c": {"d1": 0.80, "d2": 0.70, "d3": 0.65},
             "d": {"d1": 0.75, "d2": 0.70, "d3": 0.55}}
    ranking = rank_variants(_summary(), _values(means))
    assert ranking.panels == ["d1", "d2", "d3"]
    assert ranking.ranks["a"] == {"d1": 1.0, "d2": 2.0, "d3": 1.0}
    assert ranking.ranks["c"] == {"d1": 3.0, "d2": 3.5, "d3": 2.0}
    assert ranking.ranks["d"] == {"d1": 4.0, "d2": 3.5, "d3": 4.0}
    assert ranking.mean_rank == pytest.approx({"a": 4 / 3, "b": 6 / 3, "c": 8.5 / 3, "d": 11.5 / 3})
    assert ranking.variants == ["a", "b", "c", "d"]


def test_pairwise_verdicts_holm_adjusted_and_groups():
    """a and b are indistinguishable (same seeds), c is far below both, d equals c: bars {a, b} and {c, d}."""
    means = {"a": {"d1": 0.90, "d2": 0.80}, "b": {"d1": 0.90, "d2": 0.80},
             "c": {"d1": 0.70, "d2": 0.60}, "d": {"d1": 0.70, "d2": 0.60}}
    values = _values(means, spread=0.004)
    values[("b", "d1")] = [v + 0.0005 for v in values[("b", "d1")]]  # b a hair above a on d1 (n.s.)
    ranking = rank_variants(_summary(), values)
    assert ranking.variants == ["b", "a", "c", "d"] or ranking.variants == ["b", "a", "d", "c"]
    assert len(ranking.tests) == 6 * 2  # every pair on every dataset
    assert not ranking.separated("a", "b") and not ranking.separated("c", "d")
    assert ranking.separated("a", "c") and ranking.separated("b", "d")
    assert sorted(map(sorted, ranking.groups())) == [["a", "b"], ["c", "d"]]
    test = next(t for t in ranking.tests if {t.first, t.second} == {"a", "c"} and t.panel == "d1")
    m = sum(t.p_welch == t.p_welch for t in ranking.tests)  # all testable
    assert m == 12 and test.p_holm >= test.p_welch and test.p_holm <= min(1.0, m * test.p_welch)
    assert ranking.verdict("a", "c") == "better on d1, better on d2"
    assert ranking.verdict("c", "a") == "worse on d1, worse on d2"
    assert ranking.verdict("a", "b") == "n.s. on d1, n.s. on d2"


def test_holm_can_remove_a_nominal_difference():
    """A difference with p just under alpha alone is not significant among many tests (Holm)."""
    means = {"a": {"d1": 0.800, "d2": 0.8}, "b": {"d1": 0.8105, "d2": 0.8}, "c": {"d1": 0.8, "d2": 0.8}}
    values = _values(means, spread=0.004)
    ranking = rank_variants(_summary(), values)
    test = next(t for t in ranking.tests if {t.first, t.second} == {"a", "b"} and t.panel == "d1")
    assert test.p_welch < 0.05 and test.p_holm > 0.05 and test.significant is False
    assert ranking.groups() == [ranking.variants]  # one bar: nothing separated


def test_variants_missing_on_a_dataset_are_left_out_and_single_seeds_not_testable():
    values = {("a", "d1"): [0.9], ("a", "d2"): [0.8], ("b", "d1"): [0.7], ("b", "d2"): [0.6], ("c", "d1"): [0.5]}
    ranking = rank_variants(_summary(), values)
    assert ranking.variants == ["a", "b"] and ranking.left_out == ["c"]
    assert all(t.significant is None for t in ranking.tests)
    assert ranking.verdict("a", "b") == "n/a on d1, n/a on d2"
    assert "Not ranked (missing on some dataset): c" in caption(ranking)
    assert "| a | 1 | 1 | 1.00 |" in ranking_markdown(ranking)


def test_no_ranking_with_one_dataset_or_one_variant():
    assert rank_variants(_summary(), {("a", "d1"): [0.9], ("b", "d1"): [0.8]}) is None
    assert rank_variants(_summary(), {("a", "d1"): [0.9], ("a", "d2"): [0.8]}) is None


def test_caption_states_the_method():
    means = {"a": {"d1": 0.9, "d2": 0.8}, "b": {"d1": 0.8, "d2": 0.7}}
    text = caption(rank_variants(_summary(), _values(means)))
    for needle in ("Mean rank", "over 2 datasets", "Welch's t-test over seeds", "Holm-adjusted over all 1 pairs × 2",
                   "Demšar 2006", "Holm 1979", "2/2^2 = 0.5", "Benavoli"):
        assert needle in text, needle
