"""The collector counts what it may count: one replicate per seed and cell, only poolstudy jobs, only
results whose snapshot, data and HPO trial are the ones they are labelled with (issues 15 and 22)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from scipy import stats

from helpers import ROOT, trainpy
from poolstudy.results import identity
from helpers.records import cells_by, collect, make_hpo_sweep, write_job


def run_collect(tmp_path: Path, *paths: Path, capsys, extra: tuple = ()) -> tuple[dict, str, str]:
    out = tmp_path / "out"
    code, stdout, stderr = collect(*paths, "--out", out, "--no-plots", *extra, capsys=capsys)
    assert code == 0, stderr
    return json.loads((out / "results.json").read_text()), stdout, stderr


def warning_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


# ---------------------------------------------------------------- one seed, one replicate (issue 22)

def test_repeated_sweep_values_count_once(tmp_path, capsys):
    """`-m model=maxpool,maxpool,strided,strided,strided`: five folders, two jobs. Before: n = 3, std 0.00,
    p = 0, 'worse†'. Each cell has one seed: no spread, no test, no verdict."""
    sweep = tmp_path / "sweep"
    for number, (operator, acc) in enumerate([("maxpool", 0.431), ("maxpool", 0.431), ("strided", 0.395),
                                              ("strided", 0.395), ("strided", 0.395)]):
        write_job(sweep / str(number), operator, "shapes", seed=0, test_acc=acc)
    results, stdout, stderr = run_collect(tmp_path, sweep, capsys=capsys)
    cells = cells_by(results)
    for operator, acc in (("maxpool", 0.431), ("strided", 0.395)):
        cell = cells[("shapes", operator)]
        assert cell["n_finished"] == 1 and cell["n_expected"] == 1
        assert cell["values"] == [acc] and cell["seeds"] == [0]
        assert cell["test_acc"]["std"] is None and cell["test_acc"]["ci95"] == [None, None]
        assert cell["comparison"] is None
    assert cells[("shapes", "strided")]["verdict"] == "n/a (n < 2)"
    assert results["counts"]["complete"] == 2
    assert "worse" not in stdout and "†" not in stdout.split("## Overview")[1].split("Test accuracy in %")[0]
    once = {d["kept"]: d["repeats"] for d in results["counted_once"]}
    assert once == {str(sweep / "0"): [str(sweep / "1")], str(sweep / "2"): [str(sweep / "3"), str(sweep / "4")]}
    assert "## Counted once" in stdout and "Not counted: 3 repeated job folders" in stdout
    lines = warning_lines(stderr)
    assert any(f"{sweep / '3'}, {sweep / '4'} repeat {sweep / '2'}" in line and "counted once" in line for line in lines)
    assert any(f"{sweep / '1'} repeats {sweep / '0'}" in line for line in lines)


def test_a_repeated_seed_is_not_a_second_replicate(tmp_path, capsys):
    """Seeds 0-2 plus a second folder of seed 1 (another thread count, data folder and progress bar, none of
    which changes the experiment): n = 3, and the statistics are those of the three seeds."""
    root = tmp_path / "runs"
    maxpool = [0.981, 0.984, 0.979]
    strided = [0.975, 0.972, 0.977]
    for seed in range(3):
        write_job(root / f"m{seed}", "maxpool", seed=seed, test_acc=maxpool[seed])
        write_job(root / f"s{seed}", "strided", seed=seed, test_acc=strided[seed])
    write_job(root / "m1_again", "maxpool", seed=1, test_acc=0.9841,
              config={"trainer.threads": 1, "data_dir": "/elsewhere", "trainer.progress": False})
    write_job(root / "s2_killed", "strided", seed=2, state="failed")  # a failed earlier attempt of seed 2
    results, stdout, stderr = run_collect(tmp_path, root, capsys=capsys)
    cells = cells_by(results)
    m, s = cells[("mnist", "maxpool")], cells[("mnist", "strided")]
    assert m["n_finished"] == m["n_expected"] == 3 and m["values"] == maxpool
    assert m["test_acc"]["std"] == pytest.approx(np.std(maxpool, ddof=1), rel=1e-12)
    assert s["n_finished"] == s["n_expected"] == 3 and s["counts"]["failed"] == 0
    assert s["comparison"]["p_welch"] == pytest.approx(stats.ttest_ind(strided, maxpool, equal_var=False).pvalue,
                                                       rel=1e-12)
    once = {d["kept"]: d for d in results["counted_once"]}
    assert once[str(root / "m1")]["repeats"] == [str(root / "m1_again")]
    assert once[str(root / "s2")]["repeats"] == [str(root / "s2_killed")]  # the finished folder is the one counted
    line = next(w for w in warning_lines(stderr) if "m1_again" in w)
    assert "test_acc differ (0.984 in" in line and "0.9841 in" in line  # said, not hidden
    assert not results["flags"]  # the repeat's threads/data_dir are no setting of the experiment


def test_same_seed_with_different_settings_counts_as_one_seed(tmp_path, capsys):
    """Two jobs of seed 0 in one cell that differ in a results-relevant key (optimizer.lr, not grouped by)
    are not replicates: the seed counts once, with their mean, and a flag names the key and folders."""
    root = tmp_path / "runs"
    maxpool = {("a", 0): 0.980, ("b", 0): 0.986, ("a", 1): 0.983, ("a", 2): 0.981}
    for (name, seed), acc in maxpool.items():
        write_job(root / f"m{name}{seed}", "maxpool", seed=seed, test_acc=acc,
                  config={"optimizer.lr": 0.01 if name == "b" else 0.003})
    strided = [0.975, 0.972, 0.977]
    for seed, acc in enumerate(strided):
        write_job(root / f"s{seed}", "strided", seed=seed, test_acc=acc)
    results, _, _ = run_collect(tmp_path, root, capsys=capsys)
    m = cells_by(results)[("mnist", "maxpool")]
    per_seed = [(0.980 + 0.986) / 2, 0.983, 0.981]
    assert m["seeds"] == [0, 1, 2] and m["values"] == pytest.approx(per_seed, abs=1e-15)
    assert m["n_finished"] == m["n_expected"] == 3
    assert m["test_acc"]["std"] == pytest.approx(np.std(per_seed, ddof=1), rel=1e-9)
    c = cells_by(results)[("mnist", "strided")]["comparison"]
    assert c["p_welch"] == pytest.approx(stats.ttest_ind(strided, per_seed, equal_var=False).pvalue, rel=1e-9)
    assert not results["counted_once"]
    flag = next(f for f in results["flags"] if "seed 0 has 2 jobs with different settings" in f)
    assert "optimizer.lr: 0.003 in" in flag and f"0.01 in {root / 'mb0'}" in flag and "not replicates" in flag

    # pooling the operators (--by dataset): each seed is one replicate, the mean over its jobs, flagged once
    results, _, _ = run_collect(tmp_path, root, capsys=capsys, extra=("--by", "dataset"))
    (cell,) = results["cells"]
    pooled = [np.mean([0.980, 0.986, strided[0]]), np.mean([0.983, strided[1]]), np.mean([0.981, strided[2]])]
    assert cell["n_finished"] == cell["n_expected"] == 3 and cell["values"] == pytest.approx(pooled, abs=1e-15)
    (flag,) = [f for f in results["flags"] if "not replicates" in f]
    assert "seed 0 has 3 jobs with different settings" in flag and "and so do seeds 1, 2 (in " in flag


def test_same_seed_from_another_code_version_counts_once_and_is_flagged(tmp_path, capsys):
    """The same config and seed run from two commits (one from a dirty tree) is one seed, not two; the
    code versions are named, and so is the dirty folder."""
    root = tmp_path / "runs"
    for seed in range(2):
        write_job(root / f"m{seed}", "maxpool", seed=seed, test_acc=0.98 + seed / 1000)
        write_job(root / f"s{seed}", "strided", seed=seed, test_acc=0.97 + seed / 1000)
    write_job(root / "m0_new", "maxpool", seed=0, test_acc=0.985, commit="c" * 40,
              metrics_extra={"environment": {"git_commit": "c" * 40, "git_dirty": True}})
    results, _, _ = run_collect(tmp_path, root, capsys=capsys)
    m = cells_by(results)[("mnist", "maxpool")]
    assert m["n_finished"] == 2 and m["values"] == pytest.approx([(0.98 + 0.985) / 2, 0.981])
    flags = results["flags"]
    assert any("seed 0 has 2 jobs" in f and "code version: aaaaaaaaaa in" in f and "cccccccccc (dirty) in" in f
               for f in flags)
    assert any("git_dirty: " + str(root / "m0_new") in f for f in flags)
    assert any("2 code versions" in f for f in flags)


# ---------------------------------------------------------------- foreign runs (issue 22)

def write_foreign(folder: Path, config: dict, metrics: dict | None = None) -> None:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics))


def test_mlflow_copies_of_job_folders_are_skipped_not_counted(tmp_path, capsys):
    """logger=mlflow logs each job's metrics.json and .hydra/ as artifacts into outputs/mlartifacts/: those
    copies are not jobs (counted, a copy stood in for its job and the job was 'repeated')."""
    root = tmp_path / "outputs"
    for seed in range(2):
        job = write_job(root / "multirun" / f"m{seed}", "maxpool", seed=seed, test_acc=0.98 + seed / 1000)
        shutil.copytree(job, root / "mlartifacts" / "poolstudy" / f"run{seed}" / "artifacts")
        shutil.copytree(job, root / "mlruns" / "1" / f"run{seed}" / "artifacts")
    results, stdout, stderr = run_collect(tmp_path, root, capsys=capsys)
    cell = cells_by(results)[("mnist", "maxpool")]
    assert cell["n_finished"] == 2 and cell["values"] == pytest.approx([0.98, 0.981])
    assert [j["path"] for j in results["jobs"]] == [str(root / "multirun" / "m0"), str(root / "multirun" / "m1")]
    assert not results["counted_once"] and not results["flags"]
    skipped = {s["path"]: s["reason"] for s in results["skipped"]}
    assert set(skipped) == {str(root / "mlartifacts"), str(root / "mlruns")}
    assert all(r.startswith("an MLflow artifact folder: copies of job files") for r in skipped.values())


def test_a_cells_mean_is_flagged_as_mixed_only_by_its_finished_jobs(tmp_path, capsys):
    """An invalid job of other settings (the README's first command without data) is 'not finished', not
    part of the mean; two finished jobs of other epochs are mixed, and said so."""
    root = tmp_path / "outputs"
    write_job(root / "ok0", "maxpool", seed=0, test_acc=0.98, config={"trainer.epochs": 1})
    write_job(root / "ok1", "maxpool", seed=1, test_acc=0.981, config={"trainer.epochs": 1})
    write_job(root / "bad", "maxpool", seed=2, state="invalid", config={"trainer.epochs": 5})
    assert not any("its jobs differ" in f for f in run_collect(tmp_path, root, capsys=capsys)[0]["flags"])
    write_job(root / "ok2", "maxpool", seed=3, test_acc=0.982, config={"trainer.epochs": 5})
    flags = run_collect(tmp_path, root, capsys=capsys)[0]["flags"]
    mixed = [f for f in flags if "its jobs differ" in f]
    assert len(mixed) == 1 and mixed[0].endswith(
        "maxpool k2 s2: its jobs differ in trainer.epochs: 1 (2 jobs), 5 (1 job); their mean mixes different settings.")


def test_other_projects_hydra_runs_are_skipped_not_counted(tmp_path, capsys):
    root = tmp_path / "outputs"
    for seed in range(2):
        write_job(root / "poolstudy" / f"m{seed}", "maxpool", seed=seed, test_acc=0.98 + seed / 1000)
        write_job(root / "poolstudy" / f"s{seed}", "strided", seed=seed, test_acc=0.97 + seed / 1000)
    # another project's runs: finished, running, and one that shares some key names with poolstudy
    write_foreign(root / "gan" / "0", {"lr": 0.0002, "epochs": 20, "generator": {"depth": 4}},
                  {"status": "complete", "test_acc": 0.5, "fid": 31.2})
    write_foreign(root / "gan" / "1", {"lr": 0.0001, "epochs": 20, "generator": {"depth": 4}})
    write_foreign(root / "resnet" / "0", {"model": {"arch": "resnet18"}, "dataset": {"name": "imagenet"}, "seed": 1,
                                          "trainer": {"epochs": 90}})
    (root / "tuner" / "study").mkdir(parents=True)
    (root / "tuner" / "study" / "study_summary.json").write_text(json.dumps({"best": 0.9}))
    # a folder Hydra left without a snapshot or results: nothing says whose it is
    (root / "empty" / ".hydra").mkdir(parents=True)
    results, stdout, stderr = run_collect(tmp_path, root, capsys=capsys)

    assert results["counts"] == {"complete": 4, "invalid": 0, "failed": 0, "pruned": 0, "partial": 0, "unreadable": 0}
    assert set(cells_by(results)) == {("mnist", "maxpool"), ("mnist", "strided")}
    assert all(c["n_expected"] == 2 for c in results["cells"])
    assert not any("?" in c["variant"] for c in results["cells"])
    assert not results["flags"] and not results["studies"]
    assert "running or killed" not in stdout.split("## Skipped")[0].replace("0 running or killed", "")
    skipped = {s["path"]: s["reason"] for s in results["skipped"]}
    assert set(skipped) == {str(root / "gan" / "0"), str(root / "gan" / "1"), str(root / "resnet" / "0"),
                            str(root / "tuner" / "study" / "study_summary.json"), str(root / "empty")}
    assert "has none of poolstudy's keys" in skipped[str(root / "gan" / "0")]
    assert "lacks model.downsample.type" in skipped[str(root / "resnet" / "0")]
    assert "lacks study_name, n_trials" in skipped[str(root / "tuner" / "study" / "study_summary.json")]
    assert "cannot tell which job it is" in skipped[str(root / "empty")]
    assert "## Skipped" in stdout and "5 skipped folders, not poolstudy's" in stdout
    assert sum("skipped: " in line for line in warning_lines(stderr)) == 5
    assert str(root / "gan") not in json.dumps(results["jobs"])

    # only foreign runs: one clear error, exit 2
    code, _, err = collect(root / "gan", "--out", tmp_path / "o2", capsys=capsys)
    assert code == 2 and "error: no poolstudy job to report" in err and "2 folder(s) skipped" in err
    assert "Traceback" not in err


# ---------------------------------------------------------------- snapshot vs metrics.json (issue 15 §1)

def overwrite_snapshot(job: Path, **dotted) -> None:
    """What a re-run with another config into the same folder leaves: Hydra's new snapshot, the old results."""
    path = job / ".hydra" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    for key, value in dotted.items():
        node = cfg
        *parents, last = key.split("__")
        for part in parents:
            node = node[part]
        node[last] = value
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))


def test_a_snapshot_that_disagrees_with_its_metrics_is_excluded(tmp_path, capsys):
    """maxpool trained into X, then `model=avgpool` re-run into X: before, maxpool's accuracy was reported as
    avgpool's and marked best. Now X is in no table, and the keys that disagree are named."""
    sweep = tmp_path / "sweep"
    for seed, (m, s, a) in enumerate([(0.990, 0.975, 0.980), (0.989, 0.974, 0.981)]):
        write_job(sweep / f"m{seed}", "maxpool", seed=seed, test_acc=m)
        write_job(sweep / f"s{seed}", "strided", seed=seed, test_acc=s)
        write_job(sweep / f"a{seed}", "avgpool", seed=seed, test_acc=a)
    write_job(sweep / "X", "maxpool", seed=2, test_acc=0.995)
    overwrite_snapshot(sweep / "X", model__downsample={"type": "avgpool", "kernel_size": 2, "stride": 2, "padding": 0})
    # the single-run case of the issue: a 1-epoch Adam run, then trainer.epochs=3 optimizer=sgd into the folder
    write_job(sweep / "Y", "strided", seed=3, test_acc=0.999, config={"trainer.epochs": 1})
    overwrite_snapshot(sweep / "Y", trainer__epochs=3, optimizer__lr=0.1,
                       optimizer___target_="torch.optim.SGD")
    results, stdout, stderr = run_collect(tmp_path, sweep, capsys=capsys)
    cells = cells_by(results)
    assert cells[("mnist", "avgpool")]["values"] == [0.980, 0.981] and not cells[("mnist", "avgpool")]["best"]
    assert cells[("mnist", "maxpool")]["best"] and cells[("mnist", "maxpool")]["values"] == [0.990, 0.989]
    assert cells[("mnist", "strided")]["n_expected"] == 2
    reasons = {e["path"]: e["reason"] for e in results["excluded"]}
    assert set(reasons) == {str(sweep / "X"), str(sweep / "Y")}
    assert "model.downsample.type: snapshot avgpool, metrics.json maxpool" in reasons[str(sweep / "X")]
    assert "model.downsample.kernel_size" not in reasons[str(sweep / "X")]  # only the keys that disagree
    y = reasons[str(sweep / "Y")]
    assert "trainer.epochs: snapshot 3, metrics.json 1" in y and "optimizer: snapshot SGD, metrics.json Adam" in y
    assert "optimizer.lr: snapshot 0.1, metrics.json 0.003" in y
    assert "## Excluded" in stdout and "2 job(s) excluded" in stdout and "99.50" not in stdout
    assert sum("excluded: " in line for line in warning_lines(stderr)) == 2
    assert results["counts"]["complete"] == 6 and str(sweep / "X") not in json.dumps(results["jobs"])


@pytest.mark.parametrize("key, snapshot, recorded", [
    ("seed", 4, 3),
    ("dataset.name", "fashion_mnist", "mnist"),
    ("model.arch", "allcnn_c", "lenet"),
    ("model.dropout", 0.1, 0.4),
    ("optimizer.weight_decay", 0.0005, 0.0),
    ("trainer.batch_size", 64, 128),
    ("model.downsample.padding", 1, 0),
])
def test_each_recorded_setting_is_checked(tmp_path, capsys, key, snapshot, recorded):
    root = tmp_path / "runs"
    for seed in range(2):
        write_job(root / f"m{seed}", "maxpool", seed=seed, test_acc=0.98)
    write_job(root / "X", "maxpool", seed=3, test_acc=0.99)
    overwrite_snapshot(root / "X", **{key.replace(".", "__"): snapshot})
    results, _, _ = run_collect(tmp_path, root, capsys=capsys)
    (excluded,) = results["excluded"]
    assert excluded["path"] == str(root / "X")
    assert f"{key}: snapshot {snapshot}, metrics.json {recorded}" in excluded["reason"]
    assert sum(c["n_expected"] for c in results["cells"]) == 2


def test_numbers_written_differently_agree_and_a_broken_snapshot_is_not_compared(tmp_path, capsys):
    """YAML's 1.0e-04 and JSON's 0.0001 are one learning rate; a job whose snapshot cannot be read is placed by
    its metrics.json, as before, with nothing to compare."""
    root = tmp_path / "runs"
    write_job(root / "m0", "maxpool", seed=0, test_acc=0.98, config={"optimizer.lr": 0.0001})
    text = (root / "m0" / ".hydra" / "config.yaml").read_text()
    (root / "m0" / ".hydra" / "config.yaml").write_text(text.replace("lr: 0.0001", "lr: 1.0e-04"))
    write_job(root / "m1", "maxpool", seed=1, test_acc=0.97, config={"optimizer.lr": 0.0001})
    (root / "m1" / ".hydra" / "config.yaml").write_text("model: [unclosed\n")
    results, _, stderr = run_collect(tmp_path, root, capsys=capsys)
    assert not results["excluded"]
    assert cells_by(results)[("mnist", "maxpool")]["values"] == [0.98, 0.97]
    assert any("config.yaml" in w and "placed by its metrics.json" in w for w in warning_lines(stderr))


def test_an_hpo_final_rerun_of_another_trial_into_its_folder_is_excluded(tmp_path, capsys):
    """A final's snapshot names trial 5 while its metrics.json was made for trial 2."""
    made = make_hpo_sweep(tmp_path / "hpo")
    final = tmp_path / "hpo" / "lenet-maxpool-mnist" / "final" / "seed0"
    metrics = json.loads((final / "metrics.json").read_text())
    metrics["hpo"]["trial"] = 2
    (final / "metrics.json").write_text(json.dumps(metrics))
    results, _, _ = run_collect(tmp_path, tmp_path / "hpo", capsys=capsys)
    (excluded,) = results["excluded"]
    assert excluded["path"] == str(final) and "hpo.trial: snapshot 5, metrics.json 2" in excluded["reason"]
    assert cells_by(results)[("mnist", "maxpool tuned")]["values"] == made["finals"]["lenet-maxpool-mnist"][1:]


# ---------------------------------------------------------------- accuracies that are no accuracy

@pytest.mark.parametrize("metrics_extra, expected", [
    ({"test_acc": float("nan")}, "metrics.json test_acc is NaN, not an accuracy between 0 and 1"),
    ({"val_acc": float("inf")}, "metrics.json val_acc is Infinity, not an accuracy"),
    ({"test_acc": 98.3}, "metrics.json test_acc is 98.3, not an accuracy"),
    ({"test_acc": "0.98"}, "metrics.json test_acc is 0.98, not an accuracy"),
    ({"test_acc_raw": -0.1}, "metrics.json test_acc_raw is -0.1, not an accuracy"),
    ({"test_acc": None}, "metrics.json has no test_acc"),
])
def test_a_non_finite_or_out_of_range_accuracy_is_excluded(tmp_path, capsys, metrics_extra, expected):
    root = tmp_path / "runs"
    for seed in range(2):
        write_job(root / f"m{seed}", "maxpool", seed=seed, test_acc=0.98 + seed / 1000)
    write_job(root / "bad", "maxpool", seed=2, test_acc=0.99, metrics_extra=metrics_extra)
    results, stdout, _ = run_collect(tmp_path, root, capsys=capsys)
    (excluded,) = results["excluded"]
    assert excluded["path"] == str(root / "bad") and expected in excluded["reason"]
    cell = cells_by(results)[("mnist", "maxpool")]
    assert cell["values"] == [0.98, 0.981] and cell["n_expected"] == 2  # not a silent 2/3


def test_the_compared_metric_must_be_there(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed in range(2):
        write_job(root / f"m{seed}", "maxpool", seed=seed, test_acc=0.98, metrics_extra={"shift_consistency": 0.9})
    write_job(root / "no_probes", "maxpool", seed=2, test_acc=0.98)
    results, _, _ = run_collect(tmp_path, root, capsys=capsys, extra=("--metric", "shift_consistency"))
    (excluded,) = results["excluded"]
    assert "has no shift_consistency (the compared --metric)" in excluded["reason"]


# ---------------------------------------------------------------- stale HPO finals (issue 15 §2)

def test_finals_of_a_trial_that_is_not_the_best_are_not_tuned_results(tmp_path, capsys):
    """After an extension found a better trial, finals of the old best (still in final/, or moved aside
    under superseded/) are excluded with the reason; the study's current finals are the tuned row."""
    made = make_hpo_sweep(tmp_path / "hpo")
    study = tmp_path / "hpo" / "lenet-strided-mnist"
    summary = json.loads((study / "study_summary.json").read_text())
    assert summary["best_trial"] == 4
    for seed in range(3):  # finals of trial 1, the best before the extension
        write_job(study / "superseded" / "trial1" / "final" / f"seed{seed}", "strided", seed=seed, test_acc=0.999,
                  config={"optimizer.lr": 0.002}, hpo={"role": "final", "study_name": study.name, "trial": 1})
    write_job(study / "final" / "seed3", "strided", seed=3, test_acc=0.998, config={"optimizer.lr": 0.002},
              hpo={"role": "final", "study_name": study.name, "trial": 1})
    results, stdout, _ = run_collect(tmp_path, tmp_path / "hpo", capsys=capsys)
    tuned = cells_by(results)[("mnist", "strided tuned")]
    assert tuned["values"] == made["finals"]["lenet-strided-mnist"] and tuned["n_expected"] == 3
    reasons = {e["path"]: e["reason"] for e in results["excluded"]}
    assert set(reasons) == {str(study / "superseded" / "trial1" / "final" / f"seed{s}") for s in range(3)} | {
        str(study / "final" / "seed3")}
    for reason in reasons.values():
        assert "a stale HPO final: it retrains trial 1" in reason and "names trial 4 as the study's best" in reason
    assert "99.90" not in stdout and "99.80" not in stdout

    # the study folder given as PATH itself, and a final whose trial ties with the best: kept
    tie = study / "trials" / "1" / "metrics.json"
    metrics = json.loads(tie.read_text())
    metrics["val_acc"] = summary["best_val_acc"]
    tie.write_text(json.dumps(metrics))
    results, _, _ = run_collect(tmp_path, study, capsys=capsys)
    assert not results["excluded"]


def test_a_final_without_a_best_trial_or_summary(tmp_path, capsys):
    made = make_hpo_sweep(tmp_path / "hpo")
    path = tmp_path / "hpo" / "lenet-maxpool-mnist" / "study_summary.json"
    summary = json.loads(path.read_text())
    summary["best_trial"] = None
    path.write_text(json.dumps(summary))
    (tmp_path / "hpo" / "lenet-strided-mnist" / "study_summary.json").unlink()
    results, _, stderr = run_collect(tmp_path, tmp_path / "hpo", capsys=capsys)
    assert {Path(e["path"]).parent.parent.name for e in results["excluded"]} == {"lenet-maxpool-mnist"}
    assert all("names no best trial" in e["reason"] for e in results["excluded"])
    # no summary to check against: kept, and said
    assert cells_by(results)[("mnist", "strided tuned")]["values"] == made["finals"]["lenet-strided-mnist"]
    assert sum("whether it retrains the best trial is not checked" in w for w in warning_lines(stderr)) == 3


def test_stale_finals_against_the_summary_the_sweeper_writes(tmp_path, capsys):
    """The contract with poolstudy.hpo.study_summary: its study_summary.json names the best trial."""
    import optuna

    from poolstudy.hpo.budget import Budget
    from poolstudy.hpo.study_summary import study_summary

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name="lenet-maxpool-mnist", direction="maximize")
    dist = {"optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-1, log=True)}
    for i, value in enumerate([0.95, 0.97, 0.96]):
        study.add_trial(optuna.trial.create_trial(params={"optimizer.lr": 0.001 * (i + 1)}, distributions=dist,
                                                  value=value))
    study_dir = tmp_path / "hpo" / study.study_name
    for seed in range(2):
        write_job(study_dir / "final" / f"seed{seed}", "maxpool", seed=seed, test_acc=0.98,
                  config={"optimizer.lr": 0.001}, hpo={"role": "final", "study_name": study.study_name, "trial": 0})
    settings = {"cell": ["model=maxpool", "dataset=mnist"], "sampler": "TPESampler", "sampler_seed": 0, "pruner": None,
                "search_space": {}, "epochs": 3, "final_seeds": 2}
    study_summary(study, Budget(3, 0, 0, 0, 3), settings, "sqlite:///x.db", "complete", study_dir,
                  {"arch": "lenet", "downsample": "maxpool", "dataset": "mnist"})
    results, _, _ = run_collect(tmp_path, tmp_path / "hpo", capsys=capsys)
    assert len(results["excluded"]) == 2
    assert all("retrains trial 0" in e["reason"] and "names trial 1" in e["reason"] for e in results["excluded"])
    assert not any(c["keys"].get("tuning") == "tuned" for c in results["cells"])


def test_a_copied_study_counts_each_trial_and_final_once(tmp_path, capsys):
    """The same HPO sweep reached twice (a copy in another folder): its trials are not new draws of the
    search and its finals not new seeds."""
    made = make_hpo_sweep(tmp_path / "hpo")
    shutil.copytree(tmp_path / "hpo" / "lenet-maxpool-mnist", tmp_path / "copy" / "lenet-maxpool-mnist")
    results, _, stderr = run_collect(tmp_path, tmp_path / "hpo", tmp_path / "copy", capsys=capsys)
    study = next(s for s in results["studies"] if s["name"] == "lenet-maxpool-mnist")
    values = made["trials"]["lenet-maxpool-mnist"]
    assert [t["number"] for t in study["trials"]] == list(range(len(values)))
    finished = [v for v in values if isinstance(v, float)]
    assert study["expected_max"]["budget"] == list(range(1, len(finished) + 1))
    assert study["expected_max"]["mean"][-1] < max(finished)  # the N-draw expectation of N values, not 2N
    tuned = cells_by(results)[("mnist", "maxpool tuned")]
    assert tuned["values"] == made["finals"]["lenet-maxpool-mnist"] and tuned["n_expected"] == 3
    assert len(results["counted_once"]) == 3
    assert sum(results["trial_counts"].values()) == sum(len(v) for v in made["trials"].values())
    lines = [w for w in warning_lines(stderr) if "of study 'lenet-maxpool-mnist' is also in" in w]
    assert len(lines) == len(values) and not any("two studies of one name" in w for w in lines)

    # one name, other results: two studies (other storages) mixed up by name, and said so
    trial = tmp_path / "copy" / "lenet-maxpool-mnist" / "trials" / "0" / "metrics.json"
    metrics = json.loads(trial.read_text())
    metrics["val_acc"] = 0.5
    trial.write_text(json.dumps(metrics))
    _, _, stderr = run_collect(tmp_path, tmp_path / "hpo", tmp_path / "copy", capsys=capsys)
    assert any("trial 0 of study" in w and "two studies of one name" in w for w in warning_lines(stderr))


# ---------------------------------------------------------------- data behind a cell

def test_cells_trained_on_different_data_are_flagged(tmp_path, capsys):
    """dataset=cifar10 reads the official batches or the JPEG copy, whichever data_dir holds: the config
    cannot tell, metrics.json can. The same files read from two folders are the same data."""
    root = tmp_path / "runs"
    jpeg = {"name": "cifar10", "source": "CIFAR-10 (JPEG q75 copy)", "image_shape": [3, 32, 32], "num_classes": 10,
            "train": 45000, "val": 5000, "test": 10000}
    batches = {**jpeg, "source": "CIFAR-10"}
    for seed in range(3):
        write_job(root / f"m{seed}", "maxpool", "cifar10", seed=seed, test_acc=0.62 + seed / 100,
                  metrics_extra={"dataset": jpeg if seed < 2 else batches})
        write_job(root / f"s{seed}", "strided", "cifar10", seed=seed, test_acc=0.60 + seed / 100,
                  metrics_extra={"dataset": batches})
        mnist = {"name": "mnist", "source": f"MNIST IDX files in /data{seed}/MNIST/raw", "image_shape": [1, 28, 28],
                 "num_classes": 10, "train": 54000, "val": 6000, "test": 10000}
        write_job(root / f"mm{seed}", "maxpool", "mnist", seed=seed, test_acc=0.98 + seed / 1000,
                  metrics_extra={"dataset": mnist})
        write_job(root / f"ms{seed}", "strided", "mnist", seed=seed, test_acc=0.97 + seed / 1000,
                  metrics_extra={"dataset": {**mnist, "source": f"MNIST IDX files in /other{seed}/MNIST/raw"}})
    results, _, _ = run_collect(tmp_path, root, capsys=capsys)
    flags = results["flags"]
    assert any(f.startswith("cifar10 / maxpool k2: its jobs differ in recorded data source: CIFAR-10 (JPEG q75 copy) "
                            "(2 jobs), CIFAR-10 (1 job)") for f in flags)
    assert not any(f.startswith("mnist") for f in flags)  # same files, other folders
    assert len(flags) == 1  # strided is uniform; maxpool, mixed, is flagged once

    # variants on wholly different data: their comparison is confounded
    for seed in range(3):
        m = json.loads((root / f"m{seed}" / "metrics.json").read_text())
        m["dataset"] = jpeg
        (root / f"m{seed}" / "metrics.json").write_text(json.dumps(m))
    results, _, _ = run_collect(tmp_path, root, capsys=capsys)
    assert any(f.startswith("cifar10: variants were run with different recorded data source (CIFAR-10: strided k5; "
                            "CIFAR-10 (JPEG q75 copy): maxpool k2)") for f in results["flags"])


def test_records_of_two_code_versions_naming_the_same_data_differently_are_not_flagged(tmp_path, capsys):
    """Records written before and after the data record grew: class names next to the count, the
    JPEG copy's archive named in its source, dataset.download=auto by default. The same data and
    settings, so no flag (seen when study 0's fixes were collected with study 1's records); a
    different class set or another download setting's different data still is."""
    root = tmp_path / "runs"
    old = {"name": "cifar10", "source": "CIFAR-10 (JPEG q75 copy)", "image_shape": [3, 32, 32], "num_classes": 10,
           "train": 45000, "val": 5000, "test": 10000}
    names = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
    new = {**old, "source": "CIFAR-10 (JPEG q75 copy) from /data/cifar10-jpeg.tar.gz", "classes": names}
    for seed in range(2):
        write_job(root / f"m{seed}", "maxpool", "cifar10", seed=seed, test_acc=0.62 + seed / 100,
                  config={"dataset.download": False}, metrics_extra={"dataset": old})
        write_job(root / f"s{seed}", "strided", "cifar10", seed=seed, test_acc=0.60 + seed / 100,
                  config={"dataset.download": "auto"}, metrics_extra={"dataset": new})
    results, _, _ = run_collect(tmp_path, root, capsys=capsys)
    assert results["flags"] == []

    other = {**new, "classes": [*names[:9], "lorry"]}
    for seed in range(2):
        write_job(root / f"o{seed}", "avgpool", "cifar10", seed=seed, test_acc=0.61 + seed / 100,
                  metrics_extra={"dataset": other})
    flags = run_collect(tmp_path, root, capsys=capsys)[0]["flags"]
    assert len(flags) == 1 and flags[0].startswith("cifar10: variants were run with different recorded class names ("
                                                   "airplane, automobile, bird, cat, deer, dog, frog, horse, ship, "
                                                   "lorry: avgpool k2; "), flags
    write_job(root / "s2", "strided", "cifar10", seed=2, test_acc=0.63, metrics_extra={"dataset": other})
    flags = run_collect(tmp_path, root, capsys=capsys)[0]["flags"]
    assert any(f.startswith("cifar10 / strided k5: its jobs differ in recorded class names: ") for f in flags), flags
    assert not any("recorded classes" in f or "dataset.download" in f or "data source" in f for f in flags), flags


def test_same_seed_on_another_subset_is_not_a_replicate(tmp_path, capsys):
    root = tmp_path / "runs"
    for seed in range(2):
        write_job(root / f"m{seed}", "maxpool", seed=seed, test_acc=0.98 + seed / 1000,
                  config={"dataset.test_subset": 1000},
                  metrics_extra={"dataset": {"name": "mnist", "source": "MNIST", "train": 54000, "val": 6000,
                                             "test": 1000}})
    write_job(root / "m0_full", "maxpool", seed=0, test_acc=0.99, config={"dataset.test_subset": None},
              metrics_extra={"dataset": {"name": "mnist", "source": "MNIST", "train": 54000, "val": 6000,
                                         "test": 10000}})
    results, _, _ = run_collect(tmp_path, root, capsys=capsys)
    cell = cells_by(results)[("mnist", "maxpool")]
    assert cell["n_finished"] == 2 and cell["values"] == pytest.approx([(0.98 + 0.99) / 2, 0.981])
    flags = results["flags"]
    assert any("seed 0 has 2 jobs with different settings" in f and "dataset.test_subset: 1000 in" in f
               and "recorded split sizes" in f for f in flags)
    assert any("its jobs differ in dataset.test_subset: 1000 (2 jobs), null (1 job)" in f for f in flags)


def test_identity_ignores_what_a_resumed_job_may_change():
    """A repeated folder is the same job on the same terms as a resumed checkpoint is (jobfolder.RESUME_IGNORES)."""
    from poolstudy.jobfolder import RESUME_IGNORES

    for key in RESUME_IGNORES:
        assert not identity.result_key(key) and not identity.result_key(f"{key}.x")
    for key in ("seed", "optimizer.lr", "dataset.train_subset", "model.downsample.type", "trainer.epochs",
                "trainer.deterministic", "dataset.root"):
        assert identity.result_key(key)
    assert identity.data_source("MNIST IDX files in /a b/MNIST/raw; test images shifted by 2 px (zero padding)") == \
        "MNIST IDX files; test images shifted by 2 px (zero padding)"
    assert identity.data_source("image folder /data/x.tar.gz") == "image folder"


# ---------------------------------------------------------------- real train.py folders

def _train(*args: str, env: dict) -> None:
    proc = trainpy.run(args, cwd=ROOT, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]


@pytest.mark.slow
def test_real_runs_repeated_replaced_and_foreign(tmp_path, capsys):
    """Folders train.py wrote: a sweep, the same maxpool job again in another folder with another thread
    count, a folder whose snapshot was replaced by another operator's, and another project's run."""
    env = {**os.environ, "POOLSTUDY_CACHE": str(tmp_path / "cache")}
    common = ["dataset=shapes", "trainer.epochs=1", "dataset.train_subset=600", "dataset.test_subset=200",
              "invariance.enabled=false", "trainer.progress=false"]
    _train("-m", "model=maxpool,strided", *common, f"hydra.sweep.dir={tmp_path / 'sweep'}", env=env)
    _train("model=maxpool", "trainer.threads=1", *common, f"hydra.run.dir={tmp_path / 'again' / 'maxpool'}", env=env)
    replaced = tmp_path / "again" / "replaced"
    shutil.copytree(tmp_path / "sweep" / "1", replaced)  # strided's results under an avgpool snapshot
    overwrite_snapshot(replaced, model__downsample={"type": "avgpool", "kernel_size": 2, "stride": 2, "padding": 0})
    write_foreign(tmp_path / "sweep" / "other_project", {"lr": 0.1, "epochs": 3})

    results, stdout, stderr = run_collect(tmp_path, tmp_path / "sweep", tmp_path / "again", capsys=capsys)
    metrics = {p.parent.name: json.loads(p.read_text()) for p in (tmp_path / "sweep").glob("*/metrics.json")}
    cells = cells_by(results)
    assert set(cells) == {("shapes", "maxpool"), ("shapes", "strided")}
    for number, operator in (("0", "maxpool"), ("1", "strided")):
        cell = cells[("shapes", operator)]
        assert metrics[number]["model"]["downsample"]["type"] == operator
        assert cell["n_finished"] == cell["n_expected"] == 1 and cell["values"] == [metrics[number]["test_acc"]]
        assert cell["comparison"] is None and cell["test_acc"]["std"] is None
    (once,) = results["counted_once"]
    assert once["kept"] == str(tmp_path / "sweep" / "0") and once["repeats"] == [str(tmp_path / "again" / "maxpool")]
    (excluded,) = results["excluded"]
    assert excluded["path"] == str(replaced)
    assert "model.downsample.type: snapshot avgpool, metrics.json strided" in excluded["reason"]
    assert [s["path"] for s in results["skipped"]] == [str(tmp_path / "sweep" / "other_project")]
    # no other flag than a dirty working tree where this test runs from one
    assert not [f for f in results["flags"] if "git_dirty" not in f] and not results["warnings"]
    assert "## Counted once" in stdout and "## Excluded" in stdout and "## Skipped" in stdout
