"""Tables of measured figures for the documentation (poolstudy.results.doc_figures): from records, or one error."""

from __future__ import annotations

import json
import re

import pytest

from helpers import ROOT
from poolstudy.errors import PoolStudyError
from poolstudy.results import doc_figures

BENCH = ROOT / "docs" / "bench"


def test_bench_tables_show_the_records_figures():
    loop = doc_figures.render(["bench-loop", str(BENCH / "bench.json")])
    case = json.loads((BENCH / "bench.json").read_text())["cases"][0]
    ratio = case["ratios"]["vs_peer"]
    assert f"**{ratio['median']:.2f} ({ratio['min']:.2f}–{ratio['max']:.2f})**" in loop
    assert f"| {case['images_per_s']['peer_w0']['median']:.0f} |" in loop
    options = doc_figures.render(["bench-options", str(BENCH / "options.json")])
    row = json.loads((BENCH / "options.json").read_text())["options"][0]
    assert f"{row['options']['channels_last']['median']:.0f} ({row['options']['channels_last']['speedup_vs_base']:.2f}×)" \
        in options
    sweeps = doc_figures.render(["bench-sweeps", str(BENCH / "sweeps.json")])
    assert re.search(r"\| basic \(sequential\) \| 2 \| \d+\.\d \|", sweeps) and "| MNIST | false |" in sweeps


def test_job_time_and_studies_read_the_committed_records():
    table = doc_figures.render(["job-time", str(ROOT / "docs" / "studies" / "seed_replication")])
    rows = [line for line in table.splitlines() if line.startswith("| ") and "dataset" not in line]
    assert len(rows) == 6 and all("| 5 | 5 |" in row for row in rows)  # 5 jobs of 5 epochs per cell
    studies = doc_figures.render(["studies", str(ROOT / "docs" / "studies")])
    assert "| seed_replication | 30 | 14.8 min |" in studies  # study.json: 888.6 s


@pytest.mark.parametrize("words, message", [
    (["bench-speed", "x.json"], "the first word must name a table: bench-loop"),
    (["bench-loop", "nowhere.json"], "nowhere.json: no such file"),
    (["bench-loop"], "takes one source file, got 0"),
    (["bench-options", str(BENCH / "bench.json")], "has no 'options' entry"),
    (["studies", str(ROOT / "conf")], "no study.json"),
])
def test_a_bad_block_is_one_clear_error(words, message):
    with pytest.raises(PoolStudyError, match=re.escape(message)):
        doc_figures.render(words)


def test_test_times_from_a_junit_report(tmp_path, capsys):
    """tools.junit_times keeps one module's cases with their outcome; the block lists them slowest first."""
    from tools import junit_times

    report = tmp_path / "report.xml"
    report.write_text(
        '<testsuites><testsuite name="pytest">'
        '<testcase classname="tests.e2e.test_slurm" name="test_fast" time="1.25"/>'
        '<testcase classname="tests.e2e.test_slurm" name="test_slow" time="40.04"><failure message="x"/></testcase>'
        '<testcase classname="tests.e2e.test_other" name="test_elsewhere" time="99"/>'
        '</testsuite></testsuites>')
    out = tmp_path / "times.json"
    assert junit_times.main([str(report), "--module", "tests.e2e.test_slurm", "--out", str(out), "--note", "quiet"]) == 0
    record = json.loads(out.read_text())
    assert record["cases"] == [{"test": "test_fast", "seconds": 1.25, "outcome": "passed"},
                               {"test": "test_slow", "seconds": 40.04, "outcome": "failed"}]
    table = doc_figures.render(["test-times", str(out)]).splitlines()
    assert table[0].endswith(". Quiet.")
    assert table[4:] == ["| `test_slow` | 40.0 | failed |", "| `test_fast` | 1.2 | passed |", "| all 2 | 41.3 | |"]
    assert junit_times.main([str(report), "--module", "tests.nowhere", "--out", str(out)]) == 2
    assert "holds no test of module 'tests.nowhere'" in capsys.readouterr().err
