"""RESULTS.md blocks: rewritten from records by the collector, and --check catches any drift."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import ROOT
from poolstudy.analysis.archive import archive
from poolstudy.publish import main as publish
from test_collect import write_job

REPORT = """# Results

Prose written by hand stays as it is.

## Study A

<!-- poolstudy.collect records/a --out results/a --no-plots -->
<!-- /poolstudy.collect -->

Between the blocks.

<!-- poolstudy.collect records/a --out results/a_val --metric val_acc --figures accuracy.png -->
stale text
<!-- /poolstudy.collect -->
"""


@pytest.fixture()
def report(tmp_path) -> Path:
    records = tmp_path / "records" / "a"
    accs = {("mnist", "maxpool"): [0.981, 0.984, 0.979], ("mnist", "strided"): [0.975, 0.972, 0.978]}
    number = 0
    for (dataset, operator), values in accs.items():
        for seed, acc in enumerate(values):
            write_job(records / str(number), operator, dataset, seed, acc)
            number += 1
    (records / "study.json").write_text(json.dumps({
        "study": "a", "commands": ["python train.py -m model=maxpool,strided seed=0,1,2"], "wall_s": 754.2,
        "jobs": 6, "date": "2026-11-29", "machine": "x86_64 CPU, 2 cores"}))
    path = tmp_path / "RESULTS.md"
    path.write_text(REPORT)
    return path


def test_publish_fills_blocks_and_keeps_prose(report, capsys):
    assert publish([str(report), "--check"]) == 1  # empty and stale blocks
    assert not (report.parent / "results").exists()  # --check writes nothing next to the report
    assert publish([str(report)]) == 0
    text = report.read_text()
    assert "Prose written by hand stays as it is." in text and "Between the blocks." in text
    assert "stale text" not in text
    # the collector's numbers: maxpool 98.13 ± 0.25 on test accuracy; val accuracy is test - 0.2 pp
    assert "98.13 ± 0.25" in text and "97.93 ± 0.25" in text
    assert "Wall time 12.6 min (754 s) for 6 job folders" in text
    assert "### Overview" in text and "\n## Overview" not in text  # sections sit under the study heading
    assert "![accuracy.png](results/a_val/accuracy.png)" in text
    assert (report.parent / "results" / "a_val" / "accuracy.png").is_file()
    assert "![" not in text.split("Between the blocks.")[0]  # --no-plots: no figures in the first block
    assert publish([str(report), "--check"]) == 0
    before = text
    assert publish([str(report)]) == 0 and report.read_text() == before  # idempotent


def test_check_fails_when_records_change(report, capsys):
    assert publish([str(report)]) == 0
    metrics = report.parent / "records" / "a" / "0" / "metrics.json"
    data = json.loads(metrics.read_text())
    data["test_acc"] = 0.5
    metrics.write_text(json.dumps(data))
    capsys.readouterr()
    assert publish([str(report), "--check"]) == 1
    err = capsys.readouterr().err
    assert "records/a --out results/a --no-plots" in err and "differs" in err and "0 of 2 blocks match" not in err


def test_check_fails_when_a_table_is_edited(report, capsys):
    assert publish([str(report)]) == 0
    report.write_text(report.read_text().replace("98.13 ± 0.25", "98.90 ± 0.25", 1))
    assert publish([str(report), "--check"]) == 1
    assert "1 of 2 blocks match the records" in capsys.readouterr().err


@pytest.mark.parametrize("text, message", [
    ("<!-- poolstudy.collect records/a --out x -->\nno end\n", "markers make 0 complete blocks"),
    ("<!-- poolstudy.collect records/a -->\n<!-- /poolstudy.collect -->\n", "needs --out FOLDER"),
    ("<!-- poolstudy.collect records/a --out x --bogus -->\n<!-- /poolstudy.collect -->\n",
     "not valid collector arguments"),
    ("no blocks at all\n", "holds no"),
])
def test_bad_reports_are_one_clear_error(tmp_path, capsys, text, message):
    path = tmp_path / "RESULTS.md"
    path.write_text(text)
    assert publish([str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert path.read_text() == text


def test_archive_keeps_records_and_drops_the_rest(tmp_path):
    source = tmp_path / "outputs" / "study"
    write_job(source / "0", "maxpool", "mnist", 0, 0.98)
    write_job(source / "1", "strided", "mnist", 0, state="invalid")
    (source / "0" / "checkpoint.pt").write_bytes(b"x" * 100)
    (source / "0" / ".hydra" / "hydra.yaml").write_text("runtime: {cwd: /home/someone}\n")
    (source / "0" / "train.log").write_text("log\n")
    (source / "multirun.yaml").write_text("hydra: {}\n")
    (source / "optuna.db").write_bytes(b"sqlite")
    target = tmp_path / "docs" / "study"
    (target / "old").mkdir(parents=True)
    assert archive(source, target) == 5
    kept = sorted(str(p.relative_to(target)) for p in target.rglob("*") if p.is_file())
    assert kept == ["0/.hydra/config.yaml", "0/metrics.json", "1/.hydra/config.yaml", "1/status.json",
                    "multirun.yaml"]
    assert (target / "0" / "metrics.json").read_text() == (source / "0" / "metrics.json").read_text()


def test_committed_results_match_committed_records(capsys):
    """RESULTS.md's tables equal what the collector computes from docs/studies/ today."""
    report = ROOT / "RESULTS.md"
    if not report.is_file():
        pytest.fail("RESULTS.md is missing from the repository root")
    assert re.search(r"<!-- poolstudy\.collect ", report.read_text())
    assert publish([str(report), "--check"]) == 0, capsys.readouterr().err
