"""Experiment trackers in real train.py jobs: MLflow on SQLite read back with MlflowClient, TensorBoard
event files read back with tensorboard's reader, an HPO study as one parent run with its Optuna labels,
parallel jobs on one SQLite file, and tracker failures that keep the result."""

from __future__ import annotations

import json
import socket
import sqlite3
from pathlib import Path

import pytest

from helpers import ROOT
from helpers.tracking import NO_PROBES, TINY, mlflow_runs, sqlite_uri, tensorboard_scalars

mlflow = pytest.importorskip("mlflow", reason="MLflow is not installed: pip install -e '.[dev]'")
pytest.importorskip("tensorboard", reason="TensorBoard is not installed: pip install -e '.[dev]'")

from mlflow import MlflowClient  # noqa: E402

from poolstudy.tracking import record  # noqa: E402
from poolstudy.tracking.tensorboard_logger import event_steps  # noqa: E402

@pytest.mark.slow
def test_one_job_read_back_from_mlflow_and_tensorboard(run_train, tmp_path):
    """Params, per-epoch histories (step = epoch), final metrics, tags and artifacts equal metrics.json."""
    job = tmp_path / "run"
    proc = run_train(*TINY, "trainer.epochs=2", "invariance.subset=40", "invariance.layerwise=false",
                     "logger=[mlflow,tensorboard]", f"logger.mlflow.tracking_uri={sqlite_uri(tmp_path)}",
                     f"hydra.run.dir={job}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "logger mlflow failed" not in proc.stdout + proc.stderr
    metrics = json.loads((job / "metrics.json").read_text())

    client = MlflowClient(sqlite_uri(tmp_path))
    (run,) = mlflow_runs(sqlite_uri(tmp_path), "poolstudy")  # single runs: the "poolstudy" experiment
    assert run.info.status == "FINISHED"
    params, tags, final = run.data.params, run.data.tags, run.data.metrics
    assert params["model.downsample.type"] == "maxpool" and params["dataset.name"] == "shapes"
    assert params["trainer.epochs"] == "2" and params["checkpoint.enabled"] == "true"
    assert float(params["optimizer.lr"]) == metrics["optimizer"]["lr"]
    assert not [k for k in params if k.startswith("logger.")]
    for key in record.EPOCH_KEYS:
        history = client.get_metric_history(run.info.run_id, key)
        assert sorted((m.step, m.value) for m in history) == [(r["epoch"], pytest.approx(r[key]))
                                                              for r in metrics["history"]]
    for key in ("test_acc", "test_acc_raw", "val_acc", "val_acc_raw", "test_loss", "params", "macs",
                "train_time_s", "job_time_s", "shift_consistency", "prediction_distance_1px"):
        assert final[f"final/{key}"] == pytest.approx(metrics[key]), key
    shift = client.get_metric_history(run.info.run_id, "final/acc_vs_shift")
    assert {m.step: m.value for m in shift} == pytest.approx({int(k): v for k, v in metrics["acc_vs_shift"].items()})
    assert tags["poolstudy.study"] == "lenet-maxpool-shapes" and tags["poolstudy.role"] == "none"
    assert (tags["poolstudy.arch"], tags["poolstudy.operator"], tags["poolstudy.dataset"], tags["poolstudy.seed"]) == \
        ("lenet", "maxpool", "shapes", "0")
    assert tags["mlflow.source.git.commit"] == metrics["environment"]["git_commit"]
    assert tags["poolstudy.job_dir"] == str(job) and tags["poolstudy.status"] == "complete"
    assert tags["poolstudy.record_sha256"] == record.file_sha256(job / "metrics.json")
    names = {a.path for a in client.list_artifacts(run.info.run_id)} | \
        {a.path for a in client.list_artifacts(run.info.run_id, ".hydra")}
    assert {"metrics.json", "train.log", ".hydra/config.yaml"} <= names
    copy = Path(client.download_artifacts(run.info.run_id, "metrics.json", str(tmp_path / "dl")))
    assert copy.read_bytes() == (job / "metrics.json").read_bytes()
    assert (tmp_path / "mlartifacts").is_dir()  # next to the database, not in the launch folder
    assert not (ROOT / "mlruns").exists()

    scalars = tensorboard_scalars(job)  # TensorBoard: the same numbers in the job folder's event files
    for key in record.EPOCH_KEYS:
        assert scalars[key] == pytest.approx({r["epoch"]: r[key] for r in metrics["history"]}, rel=1e-6), key
    assert scalars["final/test_acc"] == pytest.approx({2: metrics["test_acc"]})
    assert scalars["final/acc_vs_shift"] == pytest.approx({int(k): v for k, v in metrics["acc_vs_shift"].items()})
    hparams = _hparams(job)
    assert hparams["model.downsample.type"] == "maxpool" and hparams["trainer.epochs"] == 2.0
    assert not [k for k in hparams if k.startswith("logger.")]


def _hparams(folder: Path) -> dict:
    """The hyper-parameters of the hparams plugin's session-start record in a run's event files."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.plugins.hparams import plugin_data_pb2

    acc = EventAccumulator(str(folder))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")["_hparams_/session_start_info"]
    start = plugin_data_pb2.HParamsPluginData.FromString(content).session_start_info
    out = {}
    for key, value in start.hparams.items():
        kind = value.WhichOneof("kind")
        out[key] = getattr(value, kind)
    return out


@pytest.mark.slow
def test_hpo_study_is_one_parent_run_and_optuna_labels(run_train, tmp_path):
    """Trials and final runs of a study are child runs of its parent; the Optuna study names its objective
    and each trial holds its job folder, cell and role."""
    import optuna

    sweep = tmp_path / "hpo"
    proc = run_train("-m", "hparams_search=optuna", f"hydra.sweep.dir={sweep}", "hydra.sweeper.n_trials=2",
                     "hydra.sweeper.final_seeds=1", *TINY, *NO_PROBES, "trainer.epochs=1", "logger=mlflow",
                     f"logger.mlflow.tracking_uri={sqlite_uri(tmp_path)}", "logger.mlflow.experiment=my-hpo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = mlflow_runs(sqlite_uri(tmp_path), "my-hpo")
    (parent,) = [r for r in runs if r.data.tags.get("poolstudy.role") == "study"]
    assert parent.info.run_name == "lenet-maxpool-shapes"
    children = [r for r in runs if r is not parent]
    assert sorted((r.data.tags["poolstudy.role"], r.info.run_name) for r in children) == \
        [("final", "final seed 0"), ("trial", "trial 0"), ("trial", "trial 1")]
    assert {r.data.tags["mlflow.parentRunId"] for r in children} == {parent.info.run_id}
    assert {r.data.tags["poolstudy.study"] for r in children} == {"lenet-maxpool-shapes"}
    assert all(r.info.status == "FINISHED" for r in runs)

    study = optuna.load_study(study_name="lenet-maxpool-shapes", storage=f"sqlite:///{sweep}/optuna.db")
    assert study.metric_names == ["val_acc"]
    for trial in study.trials:
        assert trial.user_attrs["job_dir"] == str(sweep / "lenet-maxpool-shapes" / "trials" / str(trial.number))
        assert trial.user_attrs["role"] == "trial"
        assert trial.user_attrs["cell"] == {"arch": "lenet", "downsample": "maxpool", "dataset": "shapes"}
        trial_run = [r for r in children if r.data.tags.get("poolstudy.trial") == str(trial.number)
                     and r.data.tags["poolstudy.role"] == "trial"]
        assert trial_run[0].data.metrics["final/val_acc"] == pytest.approx(trial.value)


@pytest.mark.slow
def test_parallel_jobs_share_one_sqlite_file(run_train, tmp_path):
    """Three jobs in separate processes (joblib, 3 at once) logging to one new SQLite file: every run
    complete, none lost, the database intact."""
    sweep = tmp_path / "sweep"
    proc = run_train("-m", "hydra/launcher=local_parallel", "hydra.launcher.n_jobs=3", "seed=0,1,2", *TINY,
                     *NO_PROBES, "trainer.epochs=3", "logger=mlflow",
                     f"logger.mlflow.tracking_uri={sqlite_uri(tmp_path, migrated=False)}", f"hydra.sweep.dir={sweep}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "logger mlflow failed" not in proc.stdout + proc.stderr, proc.stdout[-3000:]
    runs = mlflow_runs(sqlite_uri(tmp_path), str(sweep))
    assert sorted(r.data.tags["poolstudy.seed"] for r in runs) == ["0", "1", "2"]
    client = MlflowClient(sqlite_uri(tmp_path))
    for run in runs:
        folder = Path(run.data.tags["poolstudy.job_dir"])
        metrics = json.loads((folder / "metrics.json").read_text())
        assert run.info.status == "FINISHED" and run.data.metrics["final/test_acc"] == pytest.approx(metrics["test_acc"])
        assert [m.step for m in sorted(client.get_metric_history(run.info.run_id, "val_acc"), key=lambda m: m.step)] \
            == [1, 2, 3]
    with sqlite3.connect(tmp_path / "mlflow.db") as con:
        assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_unreachable_server_is_one_warning_and_the_result_is_kept(run_train, tmp_path):
    job = tmp_path / "run"
    proc = run_train(*TINY, *NO_PROBES, "trainer.epochs=1", "logger=[mlflow,tensorboard]",
                     f"logger.mlflow.tracking_uri=http://127.0.0.1:{_closed_port()}", f"hydra.run.dir={job}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((job / "metrics.json").read_text())["status"] == "complete"
    output = proc.stdout + proc.stderr  # Hydra's console log is stdout
    warnings = [line for line in output.splitlines() if "logger mlflow failed" in line]
    assert len(warnings) == 1, output[-3000:]
    assert "WARNING" in warnings[0] and "metrics.json" in warnings[0] and "Traceback" not in output
    assert "logger mlflow failed" in (job / "train.log").read_text()
    assert event_steps(job, "train_loss") == {1} and event_steps(job, "final/test_acc")  # TensorBoard went on


@pytest.mark.slow
def test_locked_sqlite_is_one_warning_and_the_result_is_kept(run_train, tmp_path):
    """Another program holds the database's write lock for the whole job: MLflow's writes time out (SQLite's
    5 s busy timeout); the job finishes and says which logger failed."""
    sqlite_uri(tmp_path)  # the store exists
    con = sqlite3.connect(tmp_path / "mlflow.db", isolation_level=None)
    con.execute("BEGIN IMMEDIATE")  # the write lock, held like a long-running writer would
    try:
        job = tmp_path / "run"
        proc = run_train(*TINY, *NO_PROBES, "trainer.epochs=1", "logger=mlflow",
                         f"logger.mlflow.tracking_uri={sqlite_uri(tmp_path)}", f"hydra.run.dir={job}")
    finally:
        con.execute("ROLLBACK")
        con.close()
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((job / "metrics.json").read_text())["status"] == "complete"
    output = proc.stdout + proc.stderr
    assert "logger mlflow failed" in output and "locked" in output, output[-3000:]
