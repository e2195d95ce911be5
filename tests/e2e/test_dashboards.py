"""The dashboards README "Tracking and dashboards" names, started as a user would on loopback ports, each asked
once for its API pages: MLflow's UI on a poolstudy SQLite store, TensorBoard on job folders, optuna-dashboard
on the HPO sweeper's storages (SQLite URL, and the journal file given as its bare path). Every server is
stopped at the end of its test, whatever happens."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.tracking import sqlite_uri

pytest.importorskip("mlflow", reason="MLflow is not installed: pip install -e '.[dev]'")
pytest.importorskip("tensorboard", reason="TensorBoard is not installed: pip install -e '.[dev]'")
pytest.importorskip("optuna_dashboard", reason="optuna-dashboard is not installed: pip install -e '.[dev]'")

STARTUP_S = 60  # the servers import their web stacks; on a loaded 2-core machine that takes a while


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _command(script: str, fallback: list[str]) -> list[str]:
    """The console script next to this interpreter (as `pip install` puts it), else the module form."""
    here = Path(sys.executable).parent / script
    return [str(here)] if here.is_file() else ([found] if (found := shutil.which(script)) else fallback)


def _get(url: str, data: dict | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, data=None if data is None else json.dumps(data).encode(),
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return response.status, response.read()


@contextlib.contextmanager
def serving(args: list[str], ready_url: str, log: Path) -> Iterator[None]:
    """Start a server in its own process group; wait until ``ready_url`` answers; always stop it."""
    with open(log, "w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
                                env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"{args[0]} exited with {proc.returncode}: {log.read_text()[-2000:]}")
            try:
                if _get(ready_url)[0] == 200:
                    break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"{' '.join(args)} did not answer {ready_url} within {STARTUP_S} s: {log.read_text()[-2000:]}")
            time.sleep(0.3)
        yield
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=15)


def _one_job_logged(tmp_path: Path, uri: str | None) -> Path:
    """One job's trackers driven as the training loop drives them: MLflow (when ``uri``) and TensorBoard."""
    from poolstudy.tracking import record
    from poolstudy.tracking.base import JobContext, Trackers
    from poolstudy.tracking.mlflow_logger import MLflowTracker
    from poolstudy.tracking.tensorboard_logger import TensorBoardTracker

    folder = tmp_path / "sweep" / "0"
    folder.mkdir(parents=True)
    config = {"model.arch": "lenet", "model.downsample.type": "strided", "dataset.name": "mnist", "seed": 0,
              "optimizer.lr": 0.003}
    job = JobContext(config, folder, "dash", record.run_name(config), tags=record.job_tags(config, folder))
    trackers = Trackers(([MLflowTracker(uri, None, None)] if uri else []) + [TensorBoardTracker()], job)
    trackers.start()
    history = [{"epoch": e, "train_loss": 1 / e, "train_acc": 0.5, "val_loss": 1 / e, "val_acc": 0.6 + 0.1 * e,
                "lr": 0.01, "epoch_time_s": 1.0} for e in (1, 2)]
    for epoch_record in history:
        trackers.log_epoch(epoch_record)
    metrics = {"status": "complete", "val_acc": 0.8, "test_acc": 0.79, "epochs": 2, "history": history}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    trackers.finish(metrics, folder / "metrics.json")
    assert not trackers.failed
    return folder


@pytest.mark.slow
def test_mlflow_ui_serves_the_logged_run(tmp_path):
    from mlflow import MlflowClient

    uri = sqlite_uri(tmp_path)  # tables made once per session
    _one_job_logged(tmp_path, uri)
    (run,) = MlflowClient(uri).search_runs([MlflowClient(uri).get_experiment_by_name("dash").experiment_id])
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = _command("mlflow", [sys.executable, "-m", "mlflow"]) + [
        "ui", "--backend-store-uri", uri, "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with serving(command, f"{base}/health", tmp_path / "mlflow.log"):
        status, body = _get(f"{base}/api/2.0/mlflow/runs/get?run_id={run.info.run_id}")
        assert status == 200
        got = json.loads(body)["run"]
        assert got["info"]["status"] == "FINISHED"
        assert {"key": "model.downsample.type", "value": "strided"} in got["data"]["params"]
        status, body = _get(f"{base}/api/2.0/mlflow/metrics/get-history?run_id={run.info.run_id}&metric_key=val_acc")
        assert sorted((m["step"], round(m["value"], 6)) for m in json.loads(body)["metrics"]) == [(1, 0.7), (2, 0.8)]
        status, body = _get(base + "/")
        assert status == 200 and b"<html" in body.lower()  # the UI page itself


@pytest.mark.slow
def test_tensorboard_serves_the_event_files_of_a_sweep(tmp_path):
    _one_job_logged(tmp_path, None)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = _command("tensorboard", [sys.executable, "-m", "tensorboard.main"]) + [
        "--logdir", str(tmp_path / "sweep"), "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"{base}/data/runs", tmp_path / "tensorboard.log"):
        deadline = time.monotonic() + 20
        while json.loads(_get(f"{base}/data/runs")[1]) != ["0"] and time.monotonic() < deadline:
            time.sleep(0.5)  # TensorBoard reads the folder in the background after it starts
        assert json.loads(_get(f"{base}/data/runs")[1]) == ["0"]
        status, body = _get(f"{base}/data/plugin/scalars/scalars?run=0&tag=val_acc")
        assert status == 200 and [(step, round(v, 6)) for _, step, v in json.loads(body)] == [(1, 0.7), (2, 0.8)]
        status, body = _get(f"{base}/data/plugin/hparams/experiment", {"experimentName": ""})
        assert status == 200 and b"model.downsample.type" in body


def _hpo_storage(url: str) -> None:
    """A study as the HPO sweeper leaves it: named objective, trials labelled with folder, cell and role."""
    import optuna

    from poolstudy.hpo.storage import open_storage
    from poolstudy.tracking.optuna_labels import label_trial, name_objective

    study = optuna.create_study(study_name="lenet-strided-mnist", storage=open_storage(url), direction="maximize")
    name_objective(study)
    for number, value in enumerate((0.91, 0.95)):
        trial = study.ask({"optimizer.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2, log=True)})
        label_trial(trial, Path(f"/sweep/lenet-strided-mnist/trials/{number}"),
                    {"arch": "lenet", "downsample": "strided", "dataset": "mnist"})
        study.tell(trial, value)


@pytest.mark.slow
@pytest.mark.parametrize("form", ["sqlite", "journal"])
def test_optuna_dashboard_serves_the_sweepers_storage(tmp_path, form):
    if form == "sqlite":
        url = f"sqlite:///{tmp_path}/optuna.db"
        argument = url  # optuna-dashboard takes the SQLAlchemy URL
    else:
        url = f"journal:{tmp_path}/journal.log"
        argument = str(tmp_path / "journal.log")  # ... and a journal file as its bare path, without "journal:"
    _hpo_storage(url)
    port = _free_port()
    base = f"http://127.0.0.1:{port}"
    command = _command("optuna-dashboard", [sys.executable, "-c", "import sys; from optuna_dashboard._cli import main; "
                                            "sys.exit(main())"]) + [argument, "--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"{base}/api/studies", tmp_path / "dashboard.log"):
        studies = json.loads(_get(f"{base}/api/studies")[1])["study_summaries"]
        (study,) = studies
        assert study["study_name"] == "lenet-strided-mnist"
        detail = json.loads(_get(f"{base}/api/studies/{study['study_id']}")[1])
        assert detail["objective_names"] == ["val_acc"]  # from study.set_metric_names
        trials = detail["trials"]
        assert [t["values"] for t in trials] == [[0.91], [0.95]]
        attrs = {a["key"]: a["value"] for a in trials[1]["user_attrs"]}
        assert attrs["job_dir"] == "/sweep/lenet-strided-mnist/trials/1" and attrs["role"] == "trial"
        assert "strided" in attrs["cell"]
