"""The Hydra task function's shell: user mistakes become one clear message, not a traceback."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import optuna
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from poolstudy.errors import PoolStudyError, TrainingDivergedError
from poolstudy.training.run import train_and_evaluate
from poolstudy.utils.io import atomic_write_json

log = logging.getLogger("poolstudy")


def threads_per_job(parallel_jobs: int, cpus: int | None = None) -> int:
    """Torch threads for each of ``parallel_jobs`` concurrent jobs on ``cpus`` cores."""
    cpus = cpus or os.cpu_count() or 1
    return max(1, cpus // max(1, parallel_jobs))


def _share_cores(cfg: DictConfig, hydra_cfg) -> None:
    """Under a parallel launcher, split the cores between its jobs (unless trainer.threads is set)."""
    n_jobs = hydra_cfg.launcher.get("n_jobs")
    if cfg.trainer.get("threads") is None and isinstance(n_jobs, int) and n_jobs != 1:
        import torch

        parallel = (os.cpu_count() or 1) if n_jobs < 0 else n_jobs
        torch.set_num_threads(threads_per_job(parallel))


def _pruning_hook(cfg: DictConfig):
    hpo = cfg.get("hpo")
    if hpo and hpo.get("role") == "trial":
        from poolstudy.hpo.reporting import TrialReporter

        return TrialReporter(hpo)
    return None


def run_job(cfg: DictConfig) -> float | None:
    """Returns the final validation accuracy (what sweepers optimise).

    In a single run a user error exits with status 2. In a multirun the job is recorded
    as invalid or failed in its folder (``status.json``) and the other jobs go on.
    """
    hydra_cfg = HydraConfig.get()
    out_dir = Path(hydra_cfg.runtime.output_dir)
    multirun = hydra_cfg.mode == RunMode.MULTIRUN
    _share_cores(cfg, hydra_cfg)
    try:
        return train_and_evaluate(cfg, out_dir, _pruning_hook(cfg))["val_acc"]
    except optuna.TrialPruned as exc:
        atomic_write_json(out_dir / "status.json", {"status": "pruned", "error": str(exc)})
        log.info("job %s %s", hydra_cfg.job.num, exc)
        return None
    except (PoolStudyError, TrainingDivergedError) as exc:
        status = "invalid" if isinstance(exc, PoolStudyError) else "failed"
        atomic_write_json(out_dir / "status.json", {"status": status, "error": str(exc)})
        if not multirun:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2 if status == "invalid" else 1)
        log.error("job %s %s: %s", hydra_cfg.job.num, status, exc)
        return None
