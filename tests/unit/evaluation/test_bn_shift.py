"""The dropout -> BatchNorm variance shift, measured: poolstudy.evaluation.bn_shift and python -m poolstudy.bn_shift."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
from torch import nn

from poolstudy.evaluation.bn_shift import compare_with_running_stats, measure_bn_inputs
from poolstudy.evaluation.batchnorm import recalibrate_batchnorm

P, MEAN, VAR = 0.4, 1.5, 0.5  # dropout rate; mean and variance of every input channel


def _batches(n_batches=40, size=256, channels=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(MEAN + VAR ** 0.5 * torch.randn(size, channels, generator=g), torch.zeros(size)) for _ in range(n_batches)]


def _trained(batches):
    """Dropout -> BatchNorm, its running statistics accumulated in training mode (dropout on), exactly."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Dropout(P), nn.BatchNorm1d(4, momentum=None))
    model.train()
    with torch.no_grad():
        for x, _ in batches:
            model(x)
    return model.eval()


def test_measured_ratio_is_li_et_als_variance_shift():
    # Li et al. (2019), Sec. 3: with inverted dropout (keep rate q, scale 1/q) before BN, training sees
    # variance ((c^2 + v) / q - c^2) for an input of mean c and variance v; evaluation sees v.
    batches = _batches()
    model = _trained(batches)
    q = 1 - P
    expected = ((MEAN ** 2 + VAR) / q - MEAN ** 2) / VAR
    (row,) = compare_with_running_stats(model, measure_bn_inputs(model, _batches(seed=1)))
    assert row["layer"] == "1" and row["channels"] == 4 and row["dead_channels"] == 0
    assert row["var_ratio"]["mean"] == pytest.approx(expected, rel=0.03)  # 3.17: far from 1
    assert row["var_ratio"]["min"] > 2.5
    assert not model.training and not any(m.training for m in model.modules())

    with torch.random.fork_rng():
        torch.manual_seed(1)
        (on,) = compare_with_running_stats(model, measure_bn_inputs(model, _batches(seed=1), dropout_active=True))
    assert on["var_ratio"]["mean"] == pytest.approx(1.0, abs=0.03)  # what training saw: the running variance
    assert not any(m.training for m in model.modules())

    recalibrate_batchnorm(model, batches)  # dropout off: the statistics of the evaluation-time input
    (after,) = compare_with_running_stats(model, measure_bn_inputs(model, _batches(seed=1)))
    assert after["var_ratio"]["mean"] == pytest.approx(1.0, abs=0.02)
    assert row["mean_offset"] < 0.05 and after["mean_offset"] < 0.05  # inverted dropout keeps the mean


def test_dead_channels_are_counted_not_averaged_and_bad_input_raises():
    model = _trained(_batches())
    zeros = [(torch.cat([torch.zeros(64, 1), MEAN + torch.randn(64, 3)], 1), None)]
    (row,) = compare_with_running_stats(model, measure_bn_inputs(model, zeros))
    assert row["dead_channels"] == 1 and row["var_ratio"]["max"] < 10
    with pytest.raises(ValueError, match="no BatchNorm"):
        measure_bn_inputs(nn.Sequential(nn.Linear(2, 2)), zeros)
    with pytest.raises(ValueError, match="no batches"):
        measure_bn_inputs(model, [])


# ---------------------------------------------------------------- the command, on a tiny trained job ----------

def _run(*args, cwd):
    env = {**os.environ, "POOLSTUDY_CACHE": str(cwd / "cache")}
    return subprocess.run([sys.executable, "-m", "poolstudy.bn_shift", *args], cwd=cwd, capture_output=True,
                          text=True, env=env)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bn_shift")
    result = _run("--train", "dataset=shapes", "dataset.train_subset=400", "trainer.epochs=1",
                  "invariance.enabled=false", "trainer.bn_recalibration_batches=2", "--workdir", "work", "--out", "out",
                  cwd=tmp)
    assert result.returncode == 0, result.stderr[-3000:]
    return tmp


@pytest.mark.slow
def test_train_then_measure_writes_one_record_per_job_matching_its_metrics(trained):
    (path,) = (trained / "out").glob("*.json")
    assert path.name == "shapes-maxpool-seed0.json"
    record = json.loads(path.read_text())
    metrics = json.loads((trained / "work" / "0" / "metrics.json").read_text())
    assert (record["test_acc_raw"], record["test_acc"]) == (metrics["test_acc_raw"], metrics["test_acc"])
    assert record["command"].startswith("python -m poolstudy.bn_shift --train dataset=shapes")
    assert record["measured_on"] == f"validation split, {metrics['dataset']['val']} images"
    assert record["re_estimation"].startswith("256 training images")  # 2 batches of 128
    assert [layer["layer"] for layer in record["layers"]] == ["conv2.1", "conv3.1"]
    for layer in record["layers"]:
        assert 0.5 < layer["re_estimated"]["var_ratio"]["mean"] < 2  # re-estimated on clean inputs
    assert (trained / "work" / "0" / "checkpoint.pt").is_file()  # kept: measurable again


@pytest.mark.slow
def test_a_job_without_its_checkpoint_or_with_other_metrics_is_refused(trained, tmp_path):
    import shutil

    job = tmp_path / "job"
    shutil.copytree(trained / "work" / "0", job)
    metrics = json.loads((job / "metrics.json").read_text())
    metrics["test_acc_raw"] += 0.01
    (job / "metrics.json").write_text(json.dumps(metrics))
    result = _run(str(job), "--out", "out2", cwd=trained)
    assert result.returncode == 2 and "not the model the record describes" in result.stderr
    assert "Traceback" not in result.stderr and not (trained / "out2").exists()

    (job / "checkpoint.pt").unlink()
    result = _run(str(job), "--out", "out2", cwd=trained)
    assert result.returncode == 2 and "checkpoint.keep=true" in result.stderr and "Traceback" not in result.stderr


def test_neither_jobs_nor_train_is_one_clear_error(tmp_path, capsys, monkeypatch):
    from poolstudy.bn_shift import main

    monkeypatch.chdir(tmp_path)
    assert main(["--out", "x"]) == 2 and "give either job folders or --train" in capsys.readouterr().err
    assert main([str(tmp_path), "--out", "x"]) == 2 and "no finished job folders" in capsys.readouterr().err


@pytest.mark.slow
def test_an_existing_different_record_is_not_overwritten_unless_asked(trained):
    (path,) = (trained / "out").glob("*.json")
    before = path.read_text()
    result = _run("work", "--out", "out", cwd=trained)  # the same job, measured by another command
    assert result.returncode == 2 and "exists and holds another measurement" in result.stderr
    assert path.read_text() == before
    result = _run("work", "--out", "out", "--overwrite", cwd=trained)
    assert result.returncode == 0, result.stderr[-2000:]
    after = json.loads(path.read_text())
    assert after["command"] == "python -m poolstudy.bn_shift work --out out --overwrite"
    assert after["layers"] == json.loads(before)["layers"]  # the measurement itself is reproducible
    path.write_text(before)
