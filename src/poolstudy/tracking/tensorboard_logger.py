"""``logger=tensorboard``: TensorBoard event files in the job folder (torch's ``SummaryWriter``).

Per epoch the scalars of :data:`poolstudy.tracking.record.EPOCH_KEYS` (step = epoch); at the end the
final metrics (``final/...``, ``final/acc_vs_shift`` with step = shift in pixels) and an hparams entry
(the flattened configuration as hyper-parameters, the final accuracies as its metrics), so that
``tensorboard --logdir <sweep dir>`` lists every job folder as a run and its HParams tab compares
them. A resumed job appends a new event file; epochs an earlier attempt already wrote are not written
again, and a job that reuses a finished record writes it only when the folder has no final scalars yet.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from poolstudy.errors import PoolStudyError
from poolstudy.tracking import record
from poolstudy.tracking.base import JobContext

EVENT_GLOB = "events.out.tfevents.*"
HPARAM_METRICS = ("final/val_acc", "final/test_acc", "final/val_acc_raw", "final/test_acc_raw",
                  "final/shift_consistency")
DONE_TAG = "final/test_acc"  # present once a job's final results are in its event files


def event_steps(folder: Path, tag: str) -> set[int]:
    """Steps of scalar ``tag`` in the event files directly in ``folder`` (tensorboard's reader)."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader

    steps: set[int] = set()
    for path in sorted(folder.glob(EVENT_GLOB)):
        for event in EventFileLoader(str(path)).Load():
            if event.HasField("summary") and any(v.tag == tag for v in event.summary.value):
                steps.add(int(event.step))
    return steps


def hparam_dict(config: dict[str, Any]) -> dict[str, int | float | str | bool]:
    """The run's params (:func:`poolstudy.tracking.record.params`), numbers and booleans kept as such."""
    return {key: config[key] if isinstance(config[key], (bool, int, float)) else text
            for key, text in record.params(config).items()}


class TensorBoardTracker:
    name = "tensorboard"

    def __init__(self, flush_secs: int = 30):
        self.flush_secs = int(flush_secs)
        self.writer = None
        self.job: JobContext | None = None
        self.logged_epochs: set[int] = set()
        self.done_before = False

    def start(self, job: JobContext) -> None:
        try:
            import torch.utils.tensorboard  # noqa: F401
        except ImportError:
            raise PoolStudyError("logger=tensorboard needs TensorBoard: pip install -e \".[tensorboard]\".") from None
        self.job = job
        self.logged_epochs = event_steps(job.folder, "train_loss")
        self.done_before = bool(event_steps(job.folder, DONE_TAG))

    def _writer(self, first_epoch: int | None = None):
        """The SummaryWriter, made at the first write (a job that writes nothing leaves no event file). An
        attempt that starts at an epoch an earlier one already wrote (it started over) purges the earlier
        attempt's events from that step on (``purge_step``), so TensorBoard shows each epoch once."""
        if self.writer is None:
            from torch.utils.tensorboard import SummaryWriter

            purge = first_epoch if first_epoch is not None and first_epoch in self.logged_epochs else None
            if purge is not None:
                self.logged_epochs = {e for e in self.logged_epochs if e < purge}
            self.writer = SummaryWriter(log_dir=str(self.job.folder), flush_secs=self.flush_secs, purge_step=purge)
        return self.writer

    def _scalars(self, values: dict[str, float], step: int) -> None:
        for key, value in values.items():
            self._writer().add_scalar(key, value, step)

    def log_epoch(self, epoch_record: dict[str, Any]) -> None:
        epoch = int(epoch_record["epoch"])
        self._writer(epoch)
        self._scalars(record.epoch_metrics(epoch_record), epoch)
        self.logged_epochs.add(epoch)
        self._writer().flush()

    def finish(self, metrics: dict[str, Any], metrics_file: Path) -> None:
        if self.done_before:
            self.close()
            return
        from torch.utils.tensorboard.summary import hparams

        for epoch_record in record.history(metrics):
            if epoch_record["epoch"] not in self.logged_epochs:
                self._scalars(record.epoch_metrics(epoch_record), epoch_record["epoch"])
        epochs = int(metrics.get("epochs") or 0)
        finals = record.final_metrics(metrics)
        self._scalars(finals, epochs)
        for shift, acc in record.shift_series(metrics):
            self._writer().add_scalar(record.SHIFT_SERIES, acc, shift)
        metric_dict = {key: finals[key] for key in HPARAM_METRICS if key in finals}
        for summary in hparams(hparam_dict(self.job.config), metric_dict):
            self._writer().file_writer.add_summary(summary, epochs)
        self.close()

    def end(self, status: str, reason: str) -> None:
        self.close()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
