"""An MLflow tracking store as poolstudy uses it: URI rules, the SQLite lock, experiments, study parent
runs and logging a finished record. Shared by the live logger (``logger=mlflow``) and the collector's
back-fill (``python -m poolstudy.collect ... --to-mlflow URI``).

**URIs.** A database: ``sqlite:///<file>`` (a relative file is resolved against the launch directory),
``postgresql://user@host/db`` (and SQLAlchemy's other databases), or an MLflow server
(``http(s)://``). Folder stores (``file:``, a bare path such as ``./mlruns``) are refused: MLflow
>= 3.13 no longer accepts them. A password typed into the URI is refused, as for the Optuna storage
(``poolstudy.hpo.storage``): Hydra would save it in every snapshot. It comes from ``PGPASSWORD``,
``~/.pgpass`` or an ``${oc.env:VAR}`` interpolation, and messages show the URI masked.

**Many processes, one SQLite file.** SQLite serialises writers itself, but MLflow creates its tables
(schema migrations) on first use without a lock between processes, and a writer that waits longer
than SQLite's busy timeout (5 s) fails with "database is locked". Every use of an SQLite store is
therefore done under an exclusive ``fcntl`` lock on ``<file>.lock`` (one short transaction at a time).

**Grouping.** The jobs of one HPO study are child runs of one parent run per study (MLflow's
``mlflow.parentRunId`` tag), so MLflow's UI shows trials and final runs of a study together and
compares them; every run also carries the tags of :mod:`poolstudy.tracking.record`
(``poolstudy.study``, ``poolstudy.role``, ...) for grouping by tag.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from poolstudy.errors import PoolStudyError
from poolstudy.tracking import record
from poolstudy.utils import db_url

KEY = "logger.mlflow.tracking_uri"
DATABASE_SCHEMES = ("sqlite", "postgresql", "mysql", "mssql", "oracle")
SERVER_SCHEMES = ("http", "https", "databricks")
LOCK_TIMEOUT_S = 300  # waiting for another job's MLflow call on the same SQLite file
BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's limits per log_batch call
ARTIFACTS = ("metrics.json", ".hydra/config.yaml", "train.log")
FINISHED, FAILED, KILLED = "FINISHED", "FAILED", "KILLED"
# how a job that did not finish ends its run
END_STATUS = {"failed": FAILED, "invalid": FAILED, "interrupted": KILLED, "pruned": KILLED}
# an unreachable server is reported after a few seconds, not after MLflow's default minutes of retries
HTTP_ENV = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2", "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
            "MLFLOW_HTTP_REQUEST_TIMEOUT": "30"}


def mask(uri: str) -> str:
    return record.mask_url_password(uri)


def scheme(uri: str) -> str:
    match = re.match(r"^([A-Za-z][\w.-]*)(\+[\w.-]+)?:", uri)
    return match.group(1).lower() if match else ""


def check_uri(raw: Any, resolved: Any = None, key: str = KEY) -> None:
    """Refuse a URI that MLflow cannot log to or that would put a password into a snapshot.

    ``raw``: the URI as written (interpolations unresolved: the password rule applies to it);
    ``resolved``: its value, when it could be resolved. Raises PoolStudyError naming ``key``.
    """
    if raw is None or not str(raw).strip():
        raise PoolStudyError(f"{key} is empty; give a database URL such as sqlite:///outputs/mlflow.db.")
    raw = str(raw)
    db_url.refuse_written_password(raw, key)
    uri = str(resolved) if resolved is not None else raw
    kind = scheme(uri)
    if kind in ("", "file") or len(kind) == 1:  # a path (or a Windows drive letter)
        raise PoolStudyError(
            f"{key} = {mask(uri)!r} is a folder store, which MLflow >= 3.13 no longer accepts. Log to a database "
            f"instead: {key}=sqlite:///outputs/mlflow.db (one file, no server), "
            f"postgresql://user@host/db for many machines, or an MLflow server's http(s):// URL.")
    if kind not in DATABASE_SCHEMES + SERVER_SCHEMES:
        raise PoolStudyError(
            f"{key} = {mask(uri)!r}: {kind}: is not a tracking store poolstudy can log to; use "
            f"sqlite:///outputs/mlflow.db, postgresql://user@host/db or http(s)://host:port (an MLflow server).")


def resolve_uri(uri: str, base: Path) -> str:
    """The URI a process connects with: a relative SQLite file joined to ``base`` (the launch directory);
    postgresql:// with the installed driver (psycopg2 when psycopg 3 is absent)."""
    kind = scheme(uri)
    if kind == "sqlite":
        path = sqlite_file(uri)
        if path is not None and not path.is_absolute():
            path = Path(os.path.normpath(base / path))
        return f"sqlite:///{path}" if path is not None else uri
    if kind == "postgresql":
        return db_url.with_installed_driver(uri)
    return uri


def sqlite_file(uri: str) -> Path | None:
    """The file of ``sqlite:///<file>`` (relative or absolute as written); None for in-memory and others."""
    if scheme(uri) != "sqlite":
        return None
    rest = re.sub(r"^sqlite(\+\w+)?://", "", uri)
    if not rest.startswith("/"):  # sqlite://host/... is not a file URL
        return None
    database = rest[1:].split("?", 1)[0]
    if not database or database == ":memory:":
        return None
    return Path(os.path.expanduser(database))


@contextlib.contextmanager
def store_lock(uri: str) -> Iterator[None]:
    """Exclusive lock for one use of an SQLite store by this process (no-op for other stores)."""
    path = sqlite_file(uri)
    if path is None:
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(f"{path}.lock", "a") as handle:
        deadline = time.monotonic() + LOCK_TIMEOUT_S
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as exc:
                if exc.errno not in (errno.EAGAIN, errno.EACCES):
                    raise
                if time.monotonic() > deadline:
                    raise TimeoutError(f"another process held {path}.lock for over {LOCK_TIMEOUT_S} s") from None
                time.sleep(0.05)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def quiet_mlflow_logs() -> None:
    """MLflow and alembic announce every schema migration at INFO level into each job's log."""
    for name in ("mlflow", "alembic"):
        logging.getLogger(name).setLevel(logging.WARNING)


def client(uri: str):
    """An MlflowClient for ``uri`` (resolved); creating it creates an SQLite store's tables."""
    for name, value in HTTP_ENV.items():
        os.environ.setdefault(name, value)
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise PoolStudyError("logger=mlflow needs MLflow: pip install -e \".[mlflow]\" (mlflow-skinny; the UI needs "
                             "the full package, \".[ui]\").") from None
    quiet_mlflow_logs()  # after the import: MLflow sets its loggers' levels when imported
    mlflow_client = MlflowClient(tracking_uri=uri)
    mlflow_client.search_experiments(max_results=1)  # connect now: an unreachable store fails here, not later
    return mlflow_client


def default_artifact_location(uri: str, experiment: str) -> str | None:
    """``<folder of the SQLite file>/mlartifacts/<experiment>`` (as a file URI) for SQLite stores; None
    (MLflow's default) for others. MLflow's own default is ./mlruns in whatever the current folder is."""
    path = sqlite_file(uri)
    if path is None:
        return None
    slug = re.sub(r"[^\w.\-]+", "_", experiment).strip("_") or "experiment"
    return (path.parent / "mlartifacts" / slug).as_uri()


def experiment_id(mlflow_client, name: str, artifact_location: str | None) -> str:
    """The id of experiment ``name``, created if missing (another process may create it meanwhile)."""
    from mlflow.exceptions import MlflowException

    found = mlflow_client.get_experiment_by_name(name)
    if found is not None:
        if found.lifecycle_stage == "deleted":
            raise PoolStudyError(f"the MLflow experiment {name!r} is deleted (in its trash); restore it with "
                                 f"`mlflow experiments restore --experiment-id {found.experiment_id}` or set "
                                 "logger.mlflow.experiment to another name.")
        return found.experiment_id
    try:
        return mlflow_client.create_experiment(name, artifact_location=artifact_location)
    except MlflowException:
        found = mlflow_client.get_experiment_by_name(name)
        if found is None:
            raise
        return found.experiment_id


def quote(value: str) -> str:
    """A string literal of MLflow's search syntax."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise PoolStudyError(f"{value!r} holds both kinds of quotes; MLflow's search cannot match it.")


def search(mlflow_client, experiment_ids: list[str], filter_string: str) -> list:
    """Every run matching ``filter_string`` (all pages)."""
    runs, token = [], None
    while True:
        page = mlflow_client.search_runs(experiment_ids, filter_string, max_results=1000, page_token=token)
        runs += list(page)
        token = page.token
        if not token:
            return runs


def parent_run(mlflow_client, exp_id: str, study: str, lock_dir: Path | None, uri: str) -> str:
    """The run id of study ``study``'s parent run in the experiment, created when missing.

    Jobs of one study that start together would each create one: the search and the creation happen
    under the SQLite store's lock, or for other stores under a lock file in ``lock_dir`` (the sweep dir;
    workers on several machines with separate sweep dirs may still create one each, and the earliest is
    used from then on).
    """
    lock = contextlib.nullcontext()
    if sqlite_file(uri) is None and lock_dir is not None:
        lock = _file_lock(lock_dir / ".mlflow-parent.lock")
    with lock:
        found = search(mlflow_client, [exp_id], f"tags.`{record.STUDY_TAG}` = {quote(study)} and "
                                                f"tags.`{record.ROLE_TAG}` = '{record.PARENT_ROLE}'")
        if found:
            return min(found, key=lambda r: (r.info.start_time, r.info.run_id)).info.run_id
        run = mlflow_client.create_run(exp_id, run_name=study, tags={record.STUDY_TAG: study,
                                                                     record.ROLE_TAG: record.PARENT_ROLE})
        mlflow_client.set_terminated(run.info.run_id, FINISHED)
        return run.info.run_id


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def recorded_shas(mlflow_client) -> set[str]:
    """The metrics.json digests of every run in the store (any experiment): records already logged."""
    ids = [e.experiment_id for e in mlflow_client.search_experiments(max_results=50000)]
    shas: set[str] = set()
    for start in range(0, len(ids), 100):
        for run in search(mlflow_client, ids[start:start + 100], f"tags.`{record.RECORD_TAG}` LIKE '%'"):
            shas.add(run.data.tags.get(record.RECORD_TAG))
    return shas


def _chunks(items: list, size: int) -> Iterator[list]:
    for start in range(0, len(items), size):
        yield items[start:start + size]


def log_batch(mlflow_client, run_id: str, metrics: list | None = None, params: dict[str, str] | None = None,
              tags: dict[str, str] | None = None) -> None:
    """``log_batch`` split into MLflow's per-call limits."""
    from mlflow.entities import Param, RunTag

    for chunk in _chunks(list(metrics or []), BATCH["metrics"]):
        mlflow_client.log_batch(run_id, metrics=chunk)
    for chunk in _chunks([Param(k, v) for k, v in (params or {}).items()], BATCH["params"]):
        mlflow_client.log_batch(run_id, params=chunk)
    for chunk in _chunks([RunTag(k, v) for k, v in (tags or {}).items()], BATCH["tags"]):
        mlflow_client.log_batch(run_id, tags=chunk)


def epoch_metric_list(records: list[dict[str, Any]], timestamp_ms: int) -> list:
    from mlflow.entities import Metric

    return [Metric(key, value, timestamp_ms, int(r["epoch"]))
            for r in records for key, value in record.epoch_metrics(r).items()]


def final_metric_list(metrics: dict[str, Any], timestamp_ms: int) -> list:
    from mlflow.entities import Metric

    out = [Metric(key, value, timestamp_ms, 0) for key, value in record.final_metrics(metrics).items()]
    out += [Metric(record.SHIFT_SERIES, acc, timestamp_ms, shift) for shift, acc in record.shift_series(metrics)]
    return out


def log_artifacts(mlflow_client, run_id: str, folder: Path) -> list[str]:
    """The job's metrics.json, .hydra/config.yaml and train.log that exist; returns those logged."""
    logged = []
    for name in ARTIFACTS:
        path = folder / name
        if path.is_file():
            parent = str(Path(name).parent)
            mlflow_client.log_artifact(run_id, str(path), None if parent == "." else parent)
            logged.append(name)
    return logged


def complete_run(mlflow_client, run_id: str, metrics: dict[str, Any], folder: Path, sha: str,
                 logged_epochs: set[int], timestamp_ms: int, end_time_ms: int | None = None) -> None:
    """Log what a finished record adds to a run: the epochs not yet logged, the final metrics, the record's
    digest and commit, the artifacts; then mark the run FINISHED."""
    missing = [r for r in record.history(metrics) if r["epoch"] not in logged_epochs]
    tags = {record.RECORD_TAG: sha, record.STATUS_TAG: "complete"}
    commit = record.git_commit(metrics)
    if commit:
        tags[record.GIT_TAG] = commit
    log_batch(mlflow_client, run_id, epoch_metric_list(missing, timestamp_ms) + final_metric_list(metrics, timestamp_ms),
              tags=tags)
    log_artifacts(mlflow_client, run_id, folder)
    mlflow_client.set_terminated(run_id, FINISHED, end_time=end_time_ms)
