"""The job folder's contract: what a job leaves in its folder, how it is written and read, and which
configuration a folder's results belong to.

One folder per job (``hydra.run.dir``, or ``<hydra.sweep.dir>/<job number>``) holds

- ``.hydra/config.yaml``, ``hydra.yaml``, ``overrides.yaml``: the snapshot of the configuration that first
  ran there, written by the job once the folder was checked to be its own (``poolstudy.jobs.folder``);
- ``metrics.json``: a finished job's results (``"status": "complete"``);
- ``status.json``: how a job that did not finish ended (``invalid``, ``failed``, ``pruned``, ``interrupted``);
- ``checkpoint.pt``: the training state after the last finished epoch (``poolstudy.training.checkpoint``);
- ``.lock``: held while a process runs the job (``poolstudy.jobs.lock``); ``train.log``: Hydra's log.

An HPO study's folder holds ``study_summary.json``, its sweep folder ``hpo_summary.md`` / ``.csv``; a study
that ``sweeps/make_results.py`` ran holds ``study.json``; a multirun's folder Hydra's ``multirun.yaml``.

The job writes these files and everything else reads them: the collector (``poolstudy.results``), the HPO
sweeper, ``python -m poolstudy.reproduce`` and ``poolstudy.bn_shift``, the benchmark. This module is that
contract in one place; it imports only the standard library and ``poolstudy.utils.io``, so the collector can
use it without the job's code. Every write is atomic (a reader never sees half a file); a full disk raises
``poolstudy.utils.io.NoSpaceError``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from poolstudy.utils.io import atomic_write_json

SNAPSHOT_DIR = ".hydra"
CONFIG_SNAPSHOT = f"{SNAPSHOT_DIR}/config.yaml"
HYDRA_SNAPSHOT = f"{SNAPSHOT_DIR}/hydra.yaml"
OVERRIDES_SNAPSHOT = f"{SNAPSHOT_DIR}/overrides.yaml"
METRICS_FILE = "metrics.json"
STATUS_FILE = "status.json"
CHECKPOINT_FILE = "checkpoint.pt"
LOCK_FILE = ".lock"
LOG_FILE = "train.log"
STUDY_SUMMARY = "study_summary.json"
HPO_SUMMARY_MD = "hpo_summary.md"
HPO_SUMMARY_CSV = "hpo_summary.csv"
STUDY_RECORD = "study.json"
MULTIRUN_YAML = "multirun.yaml"

COMPLETE = "complete"  # metrics.json's status

# Config keys (and key prefixes: ``checkpoint`` covers ``checkpoint.keep``) that do not change what a job
# computes, in two strengths.
#
# RESUME_IGNORES: a re-run may differ in these and still resume or reuse a folder's checkpoint and metrics
# (a folder belongs to its configuration's identity, poolstudy.jobs.identity), and a sweep over one of them
# is refused (it would count one configuration several times). They say where data and outputs live and
# whether data may be downloaded, what the console shows, which resources run the job (threads and device:
# a requeued SLURM job may get others; threads change only the last bits of oneDNN's reductions,
# docs/reproducibility.md), how the sweeper reaches its storage, the checkpoint settings, and the experiment
# trackers (LOGGER_KEY).
# ``python -m poolstudy.reproduce`` does not list them as config differences either (threads and device are
# compared as conditions of the run).
# LOGGER_KEY: the logger group (conf/logger/, poolstudy.tracking) says where a job's metrics are also sent
# (MLflow, TensorBoard), never what it computes: a job may resume under another tracker, a job logged to
# MLflow and one that was not are one result, and the consistency check does not flag jobs that differ in it.
LOGGER_KEY = "logger"
RESUME_IGNORES = ("data_dir", "cache_dir", "dataset.download", "trainer.progress", "trainer.threads", "trainer.device",
                  "hpo.storage", "checkpoint", LOGGER_KEY)
# NOT_RESULT_KEYS: the collector's wider set. Jobs that differ only in these are one experiment for the tables
# (a seed counts once; poolstudy.results.identity). Beyond RESUME_IGNORES: settings that change at most the
# floating-point path or the memory used (the evaluation batch size, channels-last, the allocator), the HPO
# sweeper's bookkeeping (all of hpo.*: a trial and a final run of the same values are the same experiment)
# and Hydra's own node. A resumed job may not change these: a job folder's record comes from one setting,
# and an HPO trial's folder is not a final run's.
NOT_RESULT_KEYS = (*RESUME_IGNORES, "trainer.eval_batch_size", "trainer.keep_freed_memory", "trainer.channels_last",
                   "hydra", "hpo")


def under(key: str, keys: tuple[str, ...]) -> bool:
    """True when the dotted ``key`` is one of ``keys`` or lies under one of them."""
    return any(key == k or key.startswith(k + ".") for k in keys)


def read_json(path: Path) -> tuple[Any, str | None]:
    """(content, None), or (None, why it cannot be used) for a missing, unreadable or damaged file."""
    try:
        return json.loads(Path(path).read_text()), None
    except FileNotFoundError:
        return None, "does not exist"
    except (OSError, UnicodeDecodeError) as exc:
        return None, f"cannot be read ({exc})"
    except json.JSONDecodeError as exc:
        return None, f"is not valid JSON ({exc.msg} at line {exc.lineno}: truncated or damaged)"


def read_record(path: Path) -> dict[str, Any] | None:
    """A JSON object file (metrics.json, status.json, study_summary.json) as a dict; None when it is
    missing, unreadable, damaged or not an object."""
    record, _ = read_json(path)
    return record if isinstance(record, dict) else None


def read_status(folder: Path) -> dict[str, Any] | None:
    """``folder``'s status.json as a dict, None when there is none (or it cannot be used)."""
    return read_record(Path(folder) / STATUS_FILE)


def finished_metrics(folder: Path) -> dict[str, Any] | None:
    """The metrics of a job that completed in ``folder`` (a JSON object with status complete), else None."""
    metrics = read_record(Path(folder) / METRICS_FILE)
    return metrics if metrics is not None and metrics.get("status") == COMPLETE else None


def write_status(folder: Path, record: dict[str, Any]) -> None:
    """Write ``folder``'s status.json (atomically)."""
    atomic_write_json(Path(folder) / STATUS_FILE, record)


def write_metrics(folder: Path, metrics: dict[str, Any]) -> None:
    """Write ``folder``'s metrics.json (atomically)."""
    atomic_write_json(Path(folder) / METRICS_FILE, metrics)
