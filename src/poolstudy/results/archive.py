"""Copy a study's small records (what the collector reads) out of its output folder.

A committed archive lets the report be regenerated without re-training: each job's ``metrics.json``
or ``status.json`` and its ``.hydra/config.yaml`` + ``overrides.yaml`` snapshot, the HPO summaries and
the multirun's ``multirun.yaml``. Checkpoints, logs, Optuna databases and ``.hydra/hydra.yaml`` (which
holds this machine's absolute paths) stay behind.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from poolstudy.errors import PoolStudyError
from poolstudy.jobfolder import (CONFIG_SNAPSHOT, HPO_SUMMARY_CSV, HPO_SUMMARY_MD, METRICS_FILE, MULTIRUN_YAML,
                                 OVERRIDES_SNAPSHOT, SNAPSHOT_DIR, STATUS_FILE, STUDY_RECORD, STUDY_SUMMARY)

KEPT_FILES = {METRICS_FILE, STATUS_FILE, STUDY_SUMMARY, HPO_SUMMARY_CSV, HPO_SUMMARY_MD, MULTIRUN_YAML, STUDY_RECORD}
KEPT_SNAPSHOT = {Path(CONFIG_SNAPSHOT).name, Path(OVERRIDES_SNAPSHOT).name}


def archive(source: Path, target: Path) -> int:
    """Replaces ``target`` with the records under ``source``; returns the number of files copied."""
    if not source.is_dir():
        raise PoolStudyError(f"{source}: no such output folder to archive records from.")
    if target.resolve() == source.resolve() or source.resolve() in target.resolve().parents:
        raise PoolStudyError(f"{target}: lies inside {source}; archive to a folder outside the outputs.")
    staging = target.with_name(f".{target.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)
    copied = 0
    for dirpath, dirnames, filenames in os.walk(source):
        here = Path(dirpath)
        dirnames.sort()
        keep = KEPT_SNAPSHOT if here.name == SNAPSHOT_DIR else KEPT_FILES
        for name in sorted(set(filenames) & keep):
            destination = staging / here.relative_to(source) / name
            destination.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(here / name, destination)
            copied += 1
    if copied == 0:
        raise PoolStudyError(f"{source}: holds no records (metrics.json, status.json, .hydra/config.yaml); "
                             "nothing archived.")
    # the old archive goes only once the new one is complete
    shutil.rmtree(target, ignore_errors=True)
    staging.rename(target)
    return copied
