"""RESULTS.md blocks: rewritten from records by the collector, and --check catches any drift."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from helpers import ROOT
from poolstudy.results.archive import archive
from poolstudy.results.publish import main as publish
from helpers.records import write_job

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


# ---------------------------------------------------------------- issue 21: more block kinds, prose ----------

def _bn_record(dataset="mnist", operator="maxpool", ratio=2.5, raw=0.9751, bn=0.9908):
    spread = lambda mean: {"mean": mean, "median": mean, "min": mean - 0.5, "max": mean + 0.5}  # noqa: E731
    layer = lambda name, channels: {"layer": name, "channels": channels,  # noqa: E731
                                    "as_trained": {"var_ratio": spread(ratio), "dead_channels": 0, "mean_offset": 0.3},
                                    "dropout_on": {"var_ratio": spread(1.05), "dead_channels": 0},
                                    "re_estimated": {"var_ratio": spread(1.01), "dead_channels": 0,
                                                     "mean_offset": 0.01}}
    return {"format": "poolstudy.bn_shift/1", "dataset": dataset, "seed": 0, "epochs": 5,
            "model": {"arch": "lenet", "downsample": {"type": operator}, "dropout": 0.4, "dropout_position": None},
            "measured_on": "validation split, 6000 images", "test_acc_raw": raw, "test_acc": bn,
            "command": "python -m poolstudy.bn_shift --train model=maxpool seed=0 --out bn",
            "layers": [layer("conv2.1", 16), layer("conv3.1", 120)]}


MORE = """# Results

## The flip

<!-- poolstudy.collect records/a --out results/flip --no-plots --compare-metrics test_acc_raw,test_acc --sections metrics -->
<!-- /poolstudy.collect -->

The mechanism: the running variance of conv2.1 is 2.50 times the input's, 1.01 after re-estimation.

<!-- poolstudy.bn_shift bn -->
<!-- /poolstudy.bn_shift -->

## 1. Not run yet

<!-- poolstudy.collect records/future records/a --out results/future -->
<!-- /poolstudy.collect -->
"""


@pytest.fixture()
def more(report) -> Path:
    folder = report.parent / "bn"
    folder.mkdir()
    (folder / "mnist-maxpool-seed0.json").write_text(json.dumps(_bn_record()))
    (folder / "mnist-strided-seed0.json").write_text(json.dumps(_bn_record(operator="strided", ratio=1.2)))
    path = report.parent / "MORE.md"
    path.write_text(MORE)
    return path


def test_sections_bn_shift_and_pending_blocks(more, capsys):
    assert publish([str(more)]) == 0
    text = more.read_text()
    flip = text.split("<!-- /poolstudy.collect -->")[0]
    assert "### Test accuracy raw vs test accuracy" in flip and "| mnist | strided k5 |" in flip
    assert "### Overview" not in flip and "### mnist" not in flip  # --sections metrics: only that, and the head
    assert "6 jobs in 2 cells" in flip
    assert "| mnist | maxpool, seed 0 | conv2.1 (16) | 2.50 [2.00, 3.00] | 1.05 | 1.01 [0.51, 1.51] | 0.30 → 0.01 | 97.51 → 99.08 |" in text
    assert "| mnist | strided, seed 0 | conv3.1 (120) | 1.20 [0.70, 1.70]" in text
    assert "*Pending: `records/future` does not exist yet" in text
    capsys.readouterr()
    assert publish([str(more), "--check"]) == 0
    assert "3 of 3 blocks match the records; 1 pending (record folders not there yet)" in capsys.readouterr().err

    # a changed bn_shift record fails the check
    record = more.parent / "bn" / "mnist-maxpool-seed0.json"
    data = json.loads(record.read_text())
    data["layers"][0]["as_trained"]["var_ratio"]["mean"] = 2.4
    record.write_text(json.dumps(data))
    assert publish([str(more), "--check"]) == 1
    err = capsys.readouterr().err
    assert "block 'poolstudy.bn_shift bn' differs" in err and "2 of 3 blocks match" in err
    record.write_text(json.dumps(_bn_record()))

    # the pending study's records arrive: the note no longer passes, publishing fills in the tables
    shutil.copytree(more.parent / "records" / "a", more.parent / "records" / "future")
    assert publish([str(more), "--check"]) == 1
    assert publish([str(more)]) == 0 and "Pending" not in more.read_text()
    assert publish([str(more), "--check"]) == 0
    # and a block that holds tables never turns pending: losing its records fails the check
    shutil.rmtree(more.parent / "records" / "future")
    capsys.readouterr()
    assert publish([str(more), "--check"]) == 1
    assert "block 'poolstudy.collect records/future records/a --out results/future' differs" in capsys.readouterr().err


@pytest.mark.parametrize("marker, message", [
    ("<!-- poolstudy.bn_shift nowhere -->\n<!-- /poolstudy.bn_shift -->\n", "no records (*.json) at nowhere"),
    ("<!-- poolstudy.bn_shift bn -->\n<!-- /poolstudy.collect -->\n", "markers make 0 complete blocks"),
    ("<!-- poolstudy.collect records/a --out x --sections head -->\n<!-- /poolstudy.collect -->\n",
     "--sections 'head': choose among overview, metrics, datasets, tuning, hpo"),
    ("<!-- poolstudy.collect records/a --out x --sections bogus -->\n<!-- /poolstudy.collect -->\n",
     "--sections 'bogus'"),
])
def test_bad_new_blocks_are_one_clear_error(more, capsys, marker, message):
    more.write_text(marker)
    assert publish([str(more), "--check"]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_prose_number_not_in_the_cited_table_fails(more, capsys):
    assert publish([str(more)]) == 0
    assert publish([str(more), "--check"]) == 0
    text = more.read_text()
    more.write_text(text.replace("is 2.50 times", "is 2.60 times"))
    capsys.readouterr()
    assert publish([str(more), "--check"]) == 1
    err = capsys.readouterr().err
    line = text[:text.index("is 2.50 times")].count("\n") + 1  # the line in the file as it is
    assert f"MORE.md:{line}: 2.60 (section 'The flip') is in none of the tables the paragraph cites" in err
    assert "1 number(s) in the prose" in err and "3 of 3 blocks match" in err
    # publishing rewrites the blocks but reports the prose, with a non-zero exit
    assert publish([str(more)]) == 1


def test_committed_results_prose_check_catches_a_changed_number(tmp_path, capsys):
    """The committed RESULTS.md passes; change one number its prose quotes and the check names it."""
    text = (ROOT / "RESULTS.md").read_text()
    quoted = "the seed's max-pool LeNet scored 99.11 / 89.54 / 65.07 %"
    assert quoted in text
    from poolstudy.results import prose_check
    from poolstudy.results.publish import find_blocks

    spans = lambda t: [prose_check.Span(b.outer_start, b.outer_end, b.body) for b in find_blocks(t, Path("R"))]  # noqa: E731
    assert prose_check.check(text, spans(text)) == []
    changed = text.replace(quoted, quoted.replace("65.07", "65.70"))
    problems = prose_check.check(changed, spans(changed))
    assert len(problems) == 1 and "65.70" in problems[0]
    line = text[:text.index(quoted)].count("\n") + 1
    assert problems[0].startswith(f"RESULTS.md:{line}: 65.70 ")
