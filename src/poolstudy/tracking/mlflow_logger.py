"""``logger=mlflow``: one MLflow run per job, logged while the job runs (see :mod:`.mlflow_store`).

Run lifecycle: the run is made (or, for a resumed job, the job folder's unfinished run is taken up
again) at the first epoch; each epoch logs its scalars with ``step`` = epoch; once ``metrics.json`` is
written, the final metrics, the record's digest, the commit and the artifacts are logged and the run
is FINISHED. A job that ends without a result marks its run FAILED (failed, invalid) or KILLED
(interrupted, pruned), with the reason in the ``poolstudy.status`` tag. A job that reuses a finished
record logs it once, unless a run of that very ``metrics.json`` is already in the store.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from poolstudy.tracking import mlflow_store as store
from poolstudy.tracking import record
from poolstudy.tracking.base import JobContext


def _now_ms() -> int:
    return int(time.time() * 1000)


class MLflowTracker:
    name = "mlflow"

    def __init__(self, uri: str, experiment: str | None, artifact_location: str | None):
        self.uri = uri  # resolved (absolute SQLite file)
        self.experiment = experiment
        self.artifact_location = artifact_location
        self.client = None
        self.job: JobContext | None = None
        self.exp_id: str | None = None
        self.run_id: str | None = None
        self.logged_epochs: set[int] = set()

    def start(self, job: JobContext) -> None:
        self.job = job
        name = self.experiment or job.experiment
        with store.store_lock(self.uri):
            self.client = store.client(self.uri)
            location = self.artifact_location or store.default_artifact_location(self.uri, name)
            self.exp_id = store.experiment_id(self.client, name, location)

    def _run(self, first_epoch: int | None = None) -> str:
        """The job's run: the unfinished run of an earlier attempt that this attempt continues (it logged
        exactly the epochs before ``first_epoch``), else a new one (under the study's parent run). An attempt
        that starts over (no checkpoint) gets a new run; the earlier one stays FAILED or KILLED."""
        if self.run_id is not None:
            return self.run_id
        job = self.job
        found = store.search(self.client, [self.exp_id],
                             f"tags.`{record.FOLDER_TAG}` = {store.quote(str(job.folder))}")
        for run in sorted((r for r in found if r.info.status != store.FINISHED), key=lambda r: -r.info.start_time):
            logged = {m.step for m in self.client.get_metric_history(run.info.run_id, "train_loss")}
            if first_epoch is None or logged == set(range(1, first_epoch)):
                self.run_id, self.logged_epochs = run.info.run_id, logged
                self.client.update_run(self.run_id, status="RUNNING")
                return self.run_id
            break  # the latest attempt does not end where this one starts
        tags = dict(job.tags)
        if job.group:
            tags["mlflow.parentRunId"] = store.parent_run(self.client, self.exp_id, job.group, job.sweep_dir, self.uri)
        run = self.client.create_run(self.exp_id, run_name=job.name, tags=tags)
        self.run_id = run.info.run_id
        store.log_batch(self.client, self.run_id, params=record.params(job.config))
        return self.run_id

    def log_epoch(self, epoch_record: dict[str, Any]) -> None:
        with store.store_lock(self.uri):
            run_id = self._run(int(epoch_record["epoch"]))
            store.log_batch(self.client, run_id, store.epoch_metric_list([epoch_record], _now_ms()))
        self.logged_epochs.add(int(epoch_record["epoch"]))

    def finish(self, metrics: dict[str, Any], metrics_file: Path) -> None:
        sha = record.file_sha256(metrics_file)
        with store.store_lock(self.uri):
            if self.run_id is None and sha in store.recorded_shas(self.client):
                return  # a reused record that is already in the store
            run_id = self._run()
            store.complete_run(self.client, run_id, metrics, self.job.folder, sha, self.logged_epochs, _now_ms())

    def end(self, status: str, reason: str) -> None:
        if self.run_id is None:
            return  # nothing was logged for this job
        with store.store_lock(self.uri):
            store.log_batch(self.client, self.run_id, tags={record.STATUS_TAG: status,
                                                            record.TAG + "reason": reason[:4000]})
            self.client.set_terminated(self.run_id, store.END_STATUS.get(status, store.FAILED))
