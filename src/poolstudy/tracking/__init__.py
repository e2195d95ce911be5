"""Experiment trackers for jobs: the ``logger`` config group (``none``, ``mlflow``, ``tensorboard``, or
several: ``'logger=[mlflow,tensorboard]'``). docs/tracking.md.

The job shell (:func:`poolstudy.jobs.shell.run_job`) opens :func:`job_trackers` around a job; the training
loop reports each epoch and, after ``metrics.json`` is written, the final record
(:mod:`poolstudy.tracking.base` says why a tracker can never cost a result). The collector back-fills
finished records into MLflow (:mod:`poolstudy.tracking.backfill`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from omegaconf import DictConfig, OmegaConf

from poolstudy.errors import PoolStudyError
from poolstudy.tracking import record
from poolstudy.tracking.base import JobContext, Tracker, Trackers

__all__ = ["JobContext", "Tracker", "Trackers", "build", "check_logger_config", "job_context", "job_trackers"]

LOGGERS = ("mlflow", "tensorboard")
SINGLE_RUN_EXPERIMENT = "poolstudy"


def _raw(config: DictConfig, key: str) -> Any:
    node = OmegaConf.to_container(config, resolve=False)
    for part in key.split("."):
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def _resolved(config: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(config, key, throw_on_missing=True)
    except Exception:  # an unset ${oc.env:...}: the environment check names it
        return None


def check_logger_config(config: DictConfig) -> None:
    """Refuse a logger configuration that cannot work, before anything is written: an unknown logger
    key, a folder store or a password in ``logger.mlflow.tracking_uri``, a tracker whose package is
    not installed. Raises PoolStudyError naming the key and the fix."""
    import importlib.util

    from poolstudy.tracking import mlflow_store

    logger = config.get("logger") or {}
    unknown = [name for name in logger if name not in LOGGERS]
    if unknown:
        raise PoolStudyError(f"logger.{unknown[0]}: unknown tracker; choose logger=none, logger=mlflow, "
                             "logger=tensorboard or several, e.g. 'logger=[mlflow,tensorboard]'.")
    if "mlflow" in logger:
        mlflow_store.check_uri(_raw(config, mlflow_store.KEY), _resolved(config, mlflow_store.KEY))
        if importlib.util.find_spec("mlflow") is None:
            raise PoolStudyError("logger=mlflow needs MLflow, which is not installed: pip install -e \".[mlflow]\" "
                                 "(mlflow-skinny; the UI, mlflow ui, needs the full package: \".[ui]\"), or drop "
                                 "logger=mlflow.")
    if "tensorboard" in logger and importlib.util.find_spec("tensorboard") is None:
        raise PoolStudyError("logger=tensorboard needs TensorBoard, which is not installed: pip install -e "
                             "\".[tensorboard]\", or drop logger=tensorboard.")


def _experiment(hydra_cfg: Any) -> tuple[str, Path | None]:
    """(experiment name, sweep dir): a multirun's sweep dir relative to the launch directory when inside it."""
    from hydra.types import RunMode

    if hydra_cfg is None or hydra_cfg.mode != RunMode.MULTIRUN:
        return SINGLE_RUN_EXPERIMENT, None
    cwd = Path(hydra_cfg.runtime.cwd)
    sweep = Path(str(hydra_cfg.sweep.dir))
    sweep = sweep if sweep.is_absolute() else cwd / sweep
    try:
        name = str(sweep.relative_to(cwd))
    except ValueError:
        name = str(sweep)
    return name, sweep


def job_context(cfg: DictConfig, folder: Path, hydra_cfg: Any = None) -> JobContext:
    from poolstudy.utils.environment import git_state

    try:
        config = record.flatten(OmegaConf.to_container(cfg, resolve=True))
    except Exception:  # an unresolvable entry: the snapshot's text
        config = record.flatten(OmegaConf.to_container(cfg, resolve=False))
    experiment, sweep_dir = _experiment(hydra_cfg)
    role = config.get("hpo.role")
    return JobContext(config=config, folder=Path(folder).absolute(), experiment=experiment,
                      name=record.run_name(config), group=config.get("hpo.study_name") if role else None,
                      tags=record.job_tags(config, Path(folder).absolute(), git_state().get("git_commit")),
                      sweep_dir=sweep_dir)


def build(cfg: DictConfig, folder: Path, hydra_cfg: Any = None) -> Trackers:
    """The trackers ``cfg.logger`` asks for (none: an empty Trackers whose calls do nothing)."""
    logger = cfg.get("logger") or {}
    if not logger:
        return Trackers([])
    check_logger_config(cfg)
    from poolstudy.data.paths import launch_dir

    trackers: list[Tracker] = []
    if "mlflow" in logger:
        from poolstudy.tracking import mlflow_store
        from poolstudy.tracking.mlflow_logger import MLflowTracker

        options = logger.mlflow
        trackers.append(MLflowTracker(mlflow_store.resolve_uri(str(options.tracking_uri), launch_dir()),
                                      options.get("experiment"), options.get("artifact_location")))
    if "tensorboard" in logger:
        from poolstudy.tracking.tensorboard_logger import TensorBoardTracker

        trackers.append(TensorBoardTracker(logger.tensorboard.get("flush_secs", 30)))
    return Trackers(trackers, job_context(cfg, folder, hydra_cfg))


def _ending(exc: BaseException) -> str:
    import optuna

    from poolstudy.errors import TrainingDivergedError

    if isinstance(exc, optuna.TrialPruned):
        return "pruned"
    if isinstance(exc, (KeyboardInterrupt, SystemExit)):
        return "interrupted"
    if isinstance(exc, PoolStudyError) and not isinstance(exc, TrainingDivergedError):
        return "invalid"
    return "failed"


@contextlib.contextmanager
def job_trackers(cfg: DictConfig, folder: Path) -> Iterator[Trackers]:
    """The job's trackers for a ``with`` block around the job; call ``.start()`` once the folder is the
    job's. A job that leaves the block with an exception ends its runs as failed, invalid, interrupted
    or pruned; the exception goes on unchanged."""
    from hydra.core.hydra_config import HydraConfig

    trackers = build(cfg, folder, HydraConfig.get() if HydraConfig.initialized() else None)
    try:
        yield trackers
    except BaseException as exc:
        trackers.end(_ending(exc), f"{type(exc).__name__}: {exc}"[:1000])
        raise
    finally:
        trackers.close()
