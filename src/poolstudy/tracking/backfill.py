"""``python -m poolstudy.collect PATHS --to-mlflow URI``: finished job records into MLflow, idempotently.

Every complete job the collector counts (including a repeated folder it counts once, excluding jobs it
excludes) becomes one FINISHED run with the same params, tags, per-epoch and final metrics and
artifacts as a job logged live with ``logger=mlflow`` (:mod:`poolstudy.tracking.record`). A run
carries the SHA-256 of the ``metrics.json`` it was made from (tag ``poolstudy.record_sha256``); a record
whose digest is already in the store, in any experiment (logged live, or by an earlier back-fill), is
skipped, so a second call adds nothing. Each PATH gets its experiment, named by the PATH as given
(``--mlflow-experiment`` names one for all); the jobs of an HPO study are child runs of the study's
parent run, as when logged live.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from poolstudy.results.records import COMPLETE, Job
from poolstudy.tracking import mlflow_store as store
from poolstudy.tracking import record


@dataclass
class Backfill:
    uri: str  # as given, password masked
    added: list[str] = field(default_factory=list)  # job paths logged now
    known: list[str] = field(default_factory=list)  # job paths whose record was already in the store
    experiments: dict[str, str] = field(default_factory=dict)  # name -> id

    def line(self) -> str:
        names = ", ".join(repr(n) for n in self.experiments) or "none"
        return (f"MLflow {self.uri}: {len(self.added)} run(s) added, {len(self.known)} record(s) already there "
                f"(experiments {names}).")


def _input_of(job: Job, inputs: list[str]) -> str:
    """The PATH argument a job was found under (the longest that contains it)."""
    folder = Path(job.path).absolute()
    owners = [p for p in inputs if folder == Path(p).absolute() or Path(p).absolute() in folder.parents]
    return max(owners, key=len) if owners else (inputs[0] if inputs else str(folder.parent))


def backfill(jobs: list[Job], inputs: list[str], uri: str, experiment: str | None = None) -> Backfill:
    """Log every complete job of ``jobs`` not yet in the MLflow store at ``uri`` (resolved against the
    current folder). Raises PoolStudyError for a URI that cannot be used (see mlflow_store.check_uri)."""
    store.check_uri(uri, key="--to-mlflow")
    resolved = store.resolve_uri(uri, Path.cwd())
    result = Backfill(store.mask(uri))
    with store.store_lock(resolved):
        client = store.client(resolved)
        known = store.recorded_shas(client)
        for job in jobs:
            if job.status != COMPLETE or not job.metrics:
                continue
            folder = Path(job.path).absolute()
            metrics_file = folder / "metrics.json"
            sha = record.file_sha256(metrics_file)
            if sha in known:
                result.known.append(job.path)
                continue
            name = experiment or _input_of(job, inputs)
            if name not in result.experiments:
                result.experiments[name] = store.experiment_id(client, name, store.default_artifact_location(resolved, name))
            _log_record(client, result.experiments[name], job, folder, sha, resolved)
            known.add(sha)
            result.added.append(job.path)
    return result


def _log_record(client, exp_id: str, job: Job, folder: Path, sha: str, uri: str) -> None:
    metrics = job.metrics
    config = dict(job.config)
    end_ms = int(os.stat(folder / "metrics.json").st_mtime * 1000)
    took = metrics.get("job_time_s") if isinstance(metrics.get("job_time_s"), (int, float)) else 0.0
    start_ms = end_ms - int(1000 * took)
    tags = record.job_tags(config, folder, record.git_commit(metrics))
    if config.get("hpo.role") and config.get("hpo.study_name"):
        tags["mlflow.parentRunId"] = store.parent_run(client, exp_id, str(config["hpo.study_name"]), None, uri)
    run = client.create_run(exp_id, start_time=start_ms, tags=tags, run_name=record.run_name(config))
    store.log_batch(client, run.info.run_id, params=record.params(config))
    store.complete_run(client, run.info.run_id, metrics, folder, sha, set(), end_ms, end_time_ms=end_ms)
