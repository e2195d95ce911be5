"""Hydra callbacks (``hydra.callbacks`` in conf/config.yaml), run by the process that parsed the command line.

Hydra creates the output folder itself, before the task function runs, and an unusable folder,
an unset environment variable or an ill-formed sweep ends in a Python traceback there. The
checks below run first (on_run_start / on_multirun_start) and stop with one message and exit
status 2, before anything is written. ``MultirunOutcomes`` collects what each job of a multirun
ended with and, at the end, names the jobs that did not finish and exits non-zero.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from omegaconf import DictConfig

from poolstudy.errors import PoolStudyError
from poolstudy.jobs import multirun, sweep
from poolstudy.jobs.interrupt import main_process_command
from poolstudy.jobs.strict_callback import StrictCallback


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` cannot be created and written to, or None when it can. Leaves no trace."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".poolstudy-probe-", dir=existing))
    except OSError as exc:
        return f"{existing} is not writable ({exc.strerror or exc})"
    return None


def _stop(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _stop_unless_writable(key: str, folder: Any) -> None:
    reason = unwritable_reason(str(folder))
    if reason:
        _stop(f"{key} = '{folder}' cannot be used as the output folder: {reason}. Give a folder you can "
              f"write to, e.g. {key}=outputs/mine (single runs set hydra.run.dir, multiruns hydra.sweep.dir).")


class ConfigEnvCheck(StrictCallback):
    """Stops a run whose config uses ``${oc.env:NAME}`` (no default) with NAME unset, naming the key."""

    def _check(self, config: DictConfig) -> None:
        try:
            sweep.check_env_refs(config)
        except PoolStudyError as exc:
            _stop(str(exc))

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._check(config)


def _stop_if_hydra_writes_the_snapshot(config: DictConfig) -> None:
    subdir = config.hydra.get("output_subdir")
    if subdir is not None:
        _stop(f"hydra.output_subdir = {subdir!r}: poolstudy writes each job's snapshot to .hydra itself, after "
              "checking that the folder holds no other configuration's results; Hydra would write it before that "
              "check. Leave hydra.output_subdir null (drop the override).")


class OutputFolderCheck(StrictCallback):
    """Stops a run whose output folder (hydra.run.dir / hydra.sweep.dir) cannot be written, or whose
    snapshot Hydra would write before the job-folder check (hydra.output_subdir set)."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _stop_if_hydra_writes_the_snapshot(config)
        _stop_unless_writable("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _stop_if_hydra_writes_the_snapshot(config)
        _stop_unless_writable("hydra.sweep.dir", config.hydra.sweep.dir)


class SweepCheck(StrictCallback):
    """Stops a sweep that would run identical jobs (repeated values, a swept setting outside the identity)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            sweep.check_overrides(list(config.hydra.overrides.task), multirun=True)
            sweep.check_overrides(sweep.grid_params(config), multirun=True)  # a study file's grid
        except PoolStudyError as exc:
            _stop(str(exc))


class MultirunOutcomes(StrictCallback):
    """Collects every job's outcome (``poolstudy.jobs.multirun``); at the end lists the jobs that did not finish.

    Under Hydra's basic sweeper such a multirun exits with status 1 after all its jobs ran. The HPO
    sweeper counts failed trials in its budget and applies its own end-of-sweep policy.
    """

    def __init__(self) -> None:
        self.info: multirun.Multirun | None = None

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = str(Path(str(config.hydra.sweep.dir)).absolute())
        self.info = multirun.start(sweep_dir, main_process_command(True, sweep_dir))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.info is None:
            return
        entries = multirun.finish(self.info)
        self.info = None
        message = multirun.summary(entries)
        if message and config.hydra.sweeper.get("_target_") == sweep.BASIC_SWEEPER:
            print(message, file=sys.stderr)
            sys.exit(1)
