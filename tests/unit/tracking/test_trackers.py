"""Experiment trackers against the real stores, without training: runs of a resumed or restarted job,
a failing tracker, the SQLite lock between processes, the URI rules, and the collector's back-fill
(--to-mlflow)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.tracking import mlflow_runs, sqlite_uri, tensorboard_scalars

mlflow = pytest.importorskip("mlflow", reason="MLflow is not installed: pip install -e '.[dev]'")
pytest.importorskip("tensorboard", reason="TensorBoard is not installed: pip install -e '.[dev]'")

from mlflow import MlflowClient  # noqa: E402

from poolstudy.tracking import mlflow_store, record  # noqa: E402
from poolstudy.tracking.base import JobContext, Trackers  # noqa: E402
from poolstudy.tracking.mlflow_logger import MLflowTracker  # noqa: E402
from poolstudy.tracking.tensorboard_logger import TensorBoardTracker, event_steps  # noqa: E402


def _context(tmp_path: Path, name: str = "job") -> JobContext:
    folder = tmp_path / name
    folder.mkdir(exist_ok=True)
    config = {"model.arch": "resnet", "model.downsample.type": "strided", "dataset.name": "cifar10", "seed": 3,
              "hpo.role": None, "logger.mlflow.tracking_uri": "postgresql://u:${oc.env:X}@h/db",
              "hpo.storage": "postgresql://u:secret@h/db"}
    return JobContext(config=config, folder=folder, experiment="exp", name=record.run_name(config),
                      tags=record.job_tags(config, folder))


def _metrics(epochs: int) -> dict:
    history = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.1 * e, "val_loss": 2.0 / e, "val_acc": 0.2 * e,
                "lr": 0.01, "epoch_time_s": 1.5} for e in range(1, epochs + 1)]
    return {"status": "complete", "val_acc": 0.5, "test_acc": 0.45, "epochs": epochs, "history": history,
            "environment": {"git_commit": "abc"}}


def _write_metrics(folder: Path, metrics: dict) -> Path:
    path = folder / "metrics.json"
    path.write_text(json.dumps(metrics))
    return path


def test_resumed_job_continues_its_run_with_each_epoch_once(tmp_path):
    """An interrupted job's run is KILLED; the resumed attempt takes it up again and logs its own epochs, none
    twice; TensorBoard likewise has each epoch once across the two attempts' event files."""
    uri = sqlite_uri(tmp_path)
    job = _context(tmp_path)
    first = Trackers([MLflowTracker(uri, None, None), TensorBoardTracker()], job)
    first.start()
    first.log_epoch(_metrics(2)["history"][0])
    first.end("interrupted", "KeyboardInterrupt")
    first.close()
    (run,) = mlflow_runs(uri)
    assert run.info.status == "KILLED" and run.data.tags["poolstudy.status"] == "interrupted"

    second = Trackers([MLflowTracker(uri, None, None), TensorBoardTracker()], job)
    second.start()
    metrics = _metrics(3)
    for epoch_record in metrics["history"][1:]:  # resumed from the checkpoint of epoch 1
        second.log_epoch(epoch_record)
    second.finish(metrics, _write_metrics(job.folder, metrics))
    assert not second.failed
    (run,) = mlflow_runs(uri)
    assert run.info.status == "FINISHED"
    steps = [m.step for m in MlflowClient(uri).get_metric_history(run.info.run_id, "train_loss")]
    assert sorted(steps) == [1, 2, 3]
    assert tensorboard_scalars(job.folder)["train_loss"] == pytest.approx({1: 1.0, 2: 0.5, 3: 1 / 3})
    params = run.data.params
    assert "logger.mlflow.tracking_uri" not in params and params["hpo.storage"] == "postgresql://u:***@h/db"
    assert params["hpo.role"] == "null" and run.info.run_name == "resnet-strided-cifar10 seed 3"

    again = Trackers([MLflowTracker(uri, None, None), TensorBoardTracker()], job)  # a job reusing the record
    again.start()
    again.finish(metrics, job.folder / "metrics.json")
    assert len(mlflow_runs(uri)) == 1 and len(list(job.folder.glob("events.out.tfevents.*"))) == 2


def test_job_that_starts_over_gets_a_new_run_and_tensorboard_shows_each_epoch_once(tmp_path):
    """An attempt that starts again at epoch 1 (no checkpoint) does not add to the earlier attempt's run: it gets
    its own; TensorBoard drops the earlier attempt's steps from that epoch on (purge_step)."""
    uri = sqlite_uri(tmp_path)
    job = _context(tmp_path)
    first = Trackers([MLflowTracker(uri, None, None), TensorBoardTracker()], job)
    first.start()
    for epoch_record in _metrics(2)["history"]:
        first.log_epoch({**epoch_record, "train_loss": 9.0})
    first.end("failed", "TrainingDivergedError: loss became nan")
    first.close()
    second = Trackers([MLflowTracker(uri, None, None), TensorBoardTracker()], job)
    second.start()
    metrics = _metrics(2)
    for epoch_record in metrics["history"]:
        second.log_epoch(epoch_record)
    second.finish(metrics, _write_metrics(job.folder, metrics))
    runs = sorted(mlflow_runs(uri), key=lambda r: r.info.start_time)
    assert [r.info.status for r in runs] == ["FAILED", "FINISHED"]
    client = MlflowClient(uri)
    assert sorted((m.step, m.value) for m in client.get_metric_history(runs[1].info.run_id, "train_loss")) == \
        [(1, 1.0), (2, 0.5)]
    assert tensorboard_scalars(job.folder)["train_loss"] == pytest.approx({1: 1.0, 2: 0.5})


def test_failing_tracker_is_dropped_with_one_warning_naming_it(tmp_path, caplog):
    class Broken:
        name = "broken"
        calls = 0

        def start(self, job):
            pass

        def log_epoch(self, epoch_record):
            Broken.calls += 1
            raise ConnectionError("server went away")

    trackers = Trackers([Broken(), TensorBoardTracker()], _context(tmp_path))
    trackers.start()
    for epoch_record in _metrics(2)["history"]:
        trackers.log_epoch(epoch_record)
    metrics = _metrics(2)
    trackers.finish(metrics, _write_metrics(trackers.folder, metrics))
    assert Broken.calls == 1 and list(trackers.failed) == ["broken"]
    (line,) = [r.getMessage() for r in caplog.records if "logger broken failed" in r.getMessage()]
    assert "ConnectionError: server went away" in line and str(trackers.folder / "metrics.json") in line
    assert event_steps(trackers.folder, "val_acc") == {1, 2}


def test_sqlite_lock_serialises_processes(tmp_path):
    """While one process uses the store, another waits for the lock file instead of meeting a locked database."""
    uri = sqlite_uri(tmp_path)
    held = threading.Event()
    release = threading.Event()

    def holder():
        with mlflow_store.store_lock(uri):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    code = ("import sys, time; sys.path.insert(0, %r); from poolstudy.tracking import mlflow_store as s; "
            "print('ready', flush=True); t = time.time(); ctx = s.store_lock(%r); ctx.__enter__(); "
            "print(time.time() - t, flush=True)") % (str(ROOT / "src"), uri)
    waiter = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert waiter.stdout.readline().strip() == "ready"
    time.sleep(1.0)
    release.set()
    thread.join()
    waited = float(waiter.communicate(timeout=60)[0])
    assert waited >= 0.9


def test_uri_rules(tmp_path):
    from poolstudy.errors import PoolStudyError

    base = Path("/launch/dir")
    assert mlflow_store.resolve_uri("sqlite:///outputs/mlflow.db", base) == "sqlite:////launch/dir/outputs/mlflow.db"
    assert mlflow_store.resolve_uri("sqlite:////abs/m.db", base) == "sqlite:////abs/m.db"
    assert mlflow_store.resolve_uri("http://127.0.0.1:5000", base) == "http://127.0.0.1:5000"
    for folder_store in ("./mlruns", "mlruns", "file:///tmp/mlruns", "/tmp/mlruns"):
        with pytest.raises(PoolStudyError, match="folder store, which MLflow >= 3.13"):
            mlflow_store.check_uri(folder_store)
    with pytest.raises(PoolStudyError, match=r"contains a password") as info:
        mlflow_store.check_uri("postgresql://bob:pw123@db/x")
    assert "pw123" not in str(info.value)
    mlflow_store.check_uri("postgresql://bob:${oc.env:PW}@db/x", "postgresql://bob:pw123@db/x")  # interpolation: fine
    with pytest.raises(PoolStudyError, match="not a tracking store"):
        mlflow_store.check_uri("s3://bucket/x")
    assert mlflow_store.default_artifact_location("sqlite:////a/b/m.db", "outputs/hpo") == "file:///a/b/mlartifacts/outputs_hpo"


@pytest.mark.slow
def test_backfill_committed_study_twice_adds_nothing_the_second_time(tmp_path, capsys):
    """The committed records of docs/studies/seed_replication into MLflow: one FINISHED run per job, equal to
    its metrics.json; the same command again adds no run."""
    from poolstudy import collect

    study = tmp_path / "seed_replication"
    shutil.copytree(ROOT / "docs" / "studies" / "seed_replication", study)
    uri = sqlite_uri(tmp_path)
    args = [str(study), "--out", str(tmp_path / "report"), "--quiet", "--no-plots", "--to-mlflow", uri]
    assert collect.main(args) == 0
    jobs = sorted(p.parent for p in study.rglob("metrics.json"))
    runs = mlflow_runs(uri, str(study))
    assert len(runs) == len(jobs) == 30
    assert "30 run(s) added, 0 record(s) already there" in capsys.readouterr().err
    by_folder = {r.data.tags["poolstudy.job_dir"]: r for r in runs}
    assert sorted(by_folder) == sorted(map(str, jobs))
    client = MlflowClient(uri)
    for folder in jobs[:3]:
        metrics = json.loads((folder / "metrics.json").read_text())
        run = by_folder[str(folder)]
        assert run.data.metrics["final/test_acc"] == pytest.approx(metrics["test_acc"])
        assert run.data.params["model.downsample.type"] == metrics["model"]["downsample"]["type"]
        history = client.get_metric_history(run.info.run_id, "val_acc")
        assert sorted((m.step, m.value) for m in history) == [(r["epoch"], pytest.approx(r["val_acc"]))
                                                              for r in metrics["history"]]
        assert run.data.tags["mlflow.source.git.commit"] == metrics["environment"]["git_commit"]

    assert collect.main(args) == 0
    assert "0 run(s) added, 30 record(s) already there" in capsys.readouterr().err
    assert len(mlflow_runs(uri)) == 30


@pytest.mark.slow
def test_backfill_of_an_hpo_study_groups_it_under_a_parent_run(tmp_path, capsys):
    from poolstudy import collect

    study = tmp_path / "tuned"
    shutil.copytree(ROOT / "docs" / "studies" / "seed_replication_tuned", study)
    uri = sqlite_uri(tmp_path)
    assert collect.main([str(study), "--out", str(tmp_path / "r"), "--quiet", "--no-plots", "--to-mlflow", uri,
                         "--mlflow-experiment", "tuned"]) == 0
    runs = mlflow_runs(uri, "tuned")
    parents = {r.info.run_id: r.info.run_name for r in runs if r.data.tags.get("poolstudy.role") == "study"}
    summaries = sorted(p.parent.name for p in study.rglob("study_summary.json"))
    assert sorted(parents.values()) == summaries
    tuned = [r for r in runs if r.data.tags["poolstudy.role"] in ("trial", "final")]
    untuned = [r for r in runs if r.data.tags["poolstudy.role"] == "none"]
    assert len(tuned) + len(untuned) + len(parents) == len(runs) == len(list(study.rglob("metrics.json"))) + len(parents)
    assert tuned and all(parents[r.data.tags["mlflow.parentRunId"]] == r.data.tags["poolstudy.study"] for r in tuned)
    assert untuned and not [r for r in untuned if "mlflow.parentRunId" in r.data.tags]
