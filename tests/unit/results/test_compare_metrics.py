"""The collector's --compare-metrics (two metrics of the same jobs side by side) and --fill-missing."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import stats

from poolstudy.results.stats import holm
from poolstudy.results.collector import main
from helpers.records import write_job

# (test_acc_raw, test_acc) per seed: the plain evaluation ranks strided first, re-estimation maxpool.
RAW_AND_BN = {
    ("cifar10", "maxpool"): [(0.571, 0.651), (0.560, 0.648), (0.589, 0.659), (0.575, 0.642)],
    ("cifar10", "strided"): [(0.601, 0.612), (0.610, 0.620), (0.598, 0.609), (0.606, 0.617)],
    ("mnist", "maxpool"): [(0.9821, 0.9911), (0.9750, 0.9902), (0.9860, 0.9920), (0.9801, 0.9915)],
    ("mnist", "strided"): [(0.9885, 0.9892), (0.9890, 0.9897), (0.9881, 0.9890), (0.9879, 0.9895)],
}


@pytest.fixture()
def jobs(tmp_path):
    n = 0
    for (dataset, operator), pairs in RAW_AND_BN.items():
        for seed, (raw, bn) in enumerate(pairs):
            write_job(tmp_path / "runs" / str(n), operator, dataset, seed, bn, metrics_extra={"test_acc_raw": raw})
            n += 1
    return tmp_path


def _collect(tmp_path, *args) -> dict:
    out = tmp_path / "out"
    assert main([str(tmp_path / "runs"), "--out", str(out), "--no-plots", "--quiet", *args]) == 0
    return json.loads((out / "results.json").read_text()), (out / "summary.md").read_text()


def test_both_metrics_with_their_own_holm_family_sign_flips_and_rankings(jobs):
    result, summary = _collect(jobs, "--compare-metrics", "test_acc_raw,test_acc")
    comparison = result["metric_comparison"]
    assert comparison["metrics"] == ["test_acc_raw", "test_acc"]
    rows = {(r["panel"], r["variant"]): r for r in comparison["rows"]}
    for index, metric in enumerate(("test_acc_raw", "test_acc")):
        welch = {d: stats.ttest_ind([p[index] for p in RAW_AND_BN[(d, "strided")]],
                                    [p[index] for p in RAW_AND_BN[(d, "maxpool")]], equal_var=False).pvalue
                 for d in ("cifar10", "mnist")}
        adjusted = dict(zip(welch, holm(list(welch.values()))))
        for dataset in ("cifar10", "mnist"):
            side = rows[(dataset, "strided k5")][metric]
            values = [p[index] for p in RAW_AND_BN[(dataset, "strided")]]
            base = [p[index] for p in RAW_AND_BN[(dataset, "maxpool")]]
            assert side["mean"] == pytest.approx(np.mean(values)) and side["std"] == pytest.approx(np.std(values, ddof=1))
            assert side["diff"] == pytest.approx(np.mean(values) - np.mean(base))
            assert side["p_welch"] == pytest.approx(welch[dataset])
            assert side["p_welch_holm"] == pytest.approx(adjusted[dataset])
    for dataset in ("cifar10", "mnist"):
        strided = rows[(dataset, "strided k5")]
        assert strided["test_acc_raw"]["diff"] > 0 > strided["test_acc"]["diff"] and strided["sign_flips"] is True
        assert rows[(dataset, "maxpool k2")]["sign_flips"] is None  # the baseline is compared with nothing
        change = [bn - raw for raw, bn in RAW_AND_BN[(dataset, "maxpool")]]
        paired = rows[(dataset, "maxpool k2")]["paired_change"]
        assert paired["mean"] == pytest.approx(np.mean(change)) and paired["std"] == pytest.approx(np.std(change, ddof=1))
    rankings = {r["panel"]: r for r in comparison["rankings"]}
    assert rankings["cifar10"]["test_acc_raw"] == ["strided k5", "maxpool k2"]
    assert rankings["cifar10"]["test_acc"] == ["maxpool k2", "strided k5"] and rankings["cifar10"]["flips"] is True

    # the Markdown section, parsed back: CIFAR-10's strided row under both metrics
    section = summary.split("## Test accuracy raw vs test accuracy", 1)[1]
    row = next(line for line in section.splitlines() if line.startswith("| cifar10 | strided k5 |"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    raw = [p[0] for p in RAW_AND_BN[("cifar10", "strided")]]
    assert cells[2] == f"**{100 * np.mean(raw):.2f} ± {100 * np.std(raw, ddof=1):.2f}**"  # best by raw
    assert cells[5] == "better†" and cells[9] == "worse†" and cells[10] == "yes"
    assert "| cifar10 | strided k5 > maxpool k2 | maxpool k2 > strided k5 | yes |" in section


def test_the_comparison_equals_each_metric_collected_alone(jobs):
    both, _ = _collect(jobs, "--compare-metrics", "test_acc_raw,test_acc")
    alone, _ = _collect(jobs, "--metric", "test_acc_raw")
    rows = {(r["panel"], r["variant"]): r["test_acc_raw"] for r in both["metric_comparison"]["rows"]}
    for cell in alone["cells"]:
        side = rows[(cell["panel"], cell["variant"])]
        assert side["mean"] == cell["test_acc_raw"]["mean"] and side["verdict"] == cell["verdict"]
        if cell["comparison"]:
            assert side["p_welch_holm"] == cell["comparison"]["p_welch_holm"]


def test_without_the_option_the_report_has_no_comparison(jobs):
    result, summary = _collect(jobs)
    assert "metric_comparison" not in result and " vs " not in summary.split("## Overview")[0]


@pytest.mark.parametrize("value", ["test_acc", "test_acc,test_acc", "test_acc,bogus", "a,b,c"])
def test_bad_compare_metrics_is_one_clear_error(jobs, capsys, value):
    assert main([str(jobs / "runs"), "--out", str(jobs / "out"), "--compare-metrics", value]) == 2
    err = capsys.readouterr().err
    assert f"--compare-metrics {value!r}" in err and "test_acc_raw,test_acc" in err and "Traceback" not in err


def test_fill_missing_places_old_snapshots_and_says_so(tmp_path):
    # two jobs recorded before model.dropout_position existed, two after, one with the new option
    # (seeds 2 and 3: a seed counts once per cell, so the old jobs must be other seeds to add replicates)
    write_job(tmp_path / "runs" / "old0", "maxpool", "mnist", 2, 0.990)
    write_job(tmp_path / "runs" / "old1", "maxpool", "mnist", 3, 0.992)
    for seed, acc in enumerate((0.991, 0.993)):
        write_job(tmp_path / "runs" / f"new{seed}", "maxpool", "mnist", seed, acc,
                  config={"model.dropout_position": "before_bn"})
        write_job(tmp_path / "runs" / f"after{seed}", "maxpool", "mnist", seed, acc - 0.01,
                  config={"model.dropout_position": "after_bn"})
    by = ["--by", "model.downsample.type,model.dropout_position,dataset"]
    result, summary = _collect(tmp_path, *by, "--fill-missing", "model.dropout_position=before_bn")
    cells = {c["variant"]: c for c in result["cells"]}
    assert set(cells) == {"dropout_position=before_bn", "dropout_position=after_bn"}  # labels name what varies
    assert cells["dropout_position=before_bn"]["n_finished"] == 4
    assert "2 of 6 jobs had no model.dropout_position in their config snapshot; taken as 'before_bn'" in summary
    unfilled, _ = _collect(tmp_path, *by)
    assert {c["variant"] for c in unfilled["cells"]} == {
        "dropout_position=before_bn", "dropout_position=after_bn", "dropout_position=?"}


@pytest.mark.parametrize("spec", ["model.dropout_position", "=x", "key=[1, 2]"])
def test_bad_fill_missing_is_one_clear_error(jobs, capsys, spec):
    assert main([str(jobs / "runs"), "--out", str(jobs / "out"), "--fill-missing", spec]) == 2
    err = capsys.readouterr().err
    assert f"--fill-missing {spec!r}" in err and "Traceback" not in err
