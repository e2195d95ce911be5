"""One job: compose -> check -> load data -> build model -> train -> evaluate -> metrics.json."""

from __future__ import annotations

import json
import logging
import os
import random
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from poolstudy.analysis.invariance import invariance_metrics
from poolstudy.config_checks import check_config
from poolstudy.data import load_splits
from poolstudy.errors import PoolStudyError
from poolstudy.models.summary import count_macs, count_params, format_summary, stage_sizes, trace_shapes
from poolstudy.models.surgery import format_points, point_records
from poolstudy.training.batchnorm import has_batchnorm, recalibrate_batchnorm
from poolstudy.training.checkpoint import JobCheckpoint, TrainingProgress
from poolstudy.training.loop import evaluate, train_epoch
from poolstudy.training.placement import auto_cuda_device, place_model
from poolstudy.training.schedule import build_scheduler
from poolstudy.utils.allocator import keep_freed_memory
from poolstudy.utils.environment import environment_record
from poolstudy.utils.io import atomic_write_json
from poolstudy.utils.stopwatch import PhaseStopwatch

log = logging.getLogger(__name__)

METRICS_FILE = "metrics.json"


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return auto_cuda_device()
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise PoolStudyError(f"trainer.device = {name!r} but no CUDA device is available; use auto or cpu.")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise PoolStudyError(f"trainer.device = {name!r} but MPS is not available; use auto or cpu.")
    return device


def seed_everything(seed: int, deterministic: bool) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
        # warn_only: CUDA max-pool backward has no deterministic kernel; CPU runs are exact.
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False


def finished_metrics(out_dir: Path) -> dict | None:
    """The metrics of a job that already completed in ``out_dir``, else None."""
    path = out_dir / METRICS_FILE
    if not path.is_file():
        return None
    try:
        metrics = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    return metrics if metrics.get("status") == "complete" else None


def build_model(cfg: DictConfig, in_channels: int, num_classes: int,
                image_size: int | None = None) -> torch.nn.Module:
    overrides = {}
    if cfg.model.get("in_channels") is None:
        overrides["in_channels"] = in_channels
    if cfg.model.get("num_classes") is None:
        overrides["num_classes"] = num_classes
    if "image_size" in cfg.model and cfg.model.image_size is None and image_size is not None:
        overrides["image_size"] = image_size  # read from the files (dataset=imagefolder)
    try:
        return instantiate(cfg.model, _convert_="all", **overrides)
    except InstantiationException as exc:  # Hydra wraps the model's own "model.x is not valid" errors
        if isinstance(exc.__cause__, PoolStudyError):
            raise exc.__cause__ from None
        raise


def _hpo_record(cfg: DictConfig) -> dict[str, Any] | None:
    hpo = cfg.get("hpo")
    if not hpo or not hpo.get("role"):
        return None
    return {"study_name": hpo.study_name, "role": hpo.role, "trial": hpo.trial}


def train_and_evaluate(cfg: DictConfig, out_dir: Path,
                       epoch_callback: Callable[[int, float], None] | None = None) -> dict[str, Any]:
    """Run one job and write ``out_dir/metrics.json``; returns the metrics.

    ``epoch_callback(epoch, val_acc)`` is called after each epoch's validation (the HPO
    sweeper's pruning hook); it may raise to stop the job.
    """
    check_config(cfg)
    done = finished_metrics(out_dir)
    if done is not None:
        log.info("%s already holds a complete %s; not training again.", out_dir, METRICS_FILE)
        return done

    job_start = time.perf_counter()
    phases = PhaseStopwatch()
    trainer = cfg.trainer
    if trainer.get("keep_freed_memory", False):
        keep_freed_memory()
    if trainer.threads:
        torch.set_num_threads(int(trainer.threads))
    device = resolve_device(trainer.device)
    seed_everything(int(cfg.seed), bool(trainer.deterministic))
    phases.lap("setup")

    data = load_splits(cfg.dataset, cfg.data_dir, cfg.cache_dir).to(device)
    phases.lap("data")
    log.info("Data: %s; train %d / val %d / test %d images of %s, %d classes",
             data.source, len(data.train[1]), len(data.val[1]), len(data.test[1]),
             "x".join(map(str, data.image_shape)), data.num_classes)

    def fresh_model() -> torch.nn.Module:  # also the untrained reference of the layer-wise probes
        return build_model(cfg, data.image_shape[0], data.num_classes, data.image_shape[-1])

    model = fresh_model()
    rows = trace_shapes(model, data.image_shape)  # before training: clear error on impossible shapes
    params, macs = count_params(model), count_macs(model, data.image_shape)
    points = point_records(model, rows)
    log.info("Model %s / %s:\n%s\n%s", cfg.model.arch, cfg.model.downsample.type, format_summary(rows, params, macs),
             format_points(points))
    place_model(model, trainer.get("channels_last", False), device)

    optimizer = instantiate(cfg.optimizer)(model.parameters())  # _partial_: true
    generator = torch.Generator().manual_seed(int(cfg.seed))
    train_batches = data.batches("train", int(trainer.batch_size), device, shuffle=True, generator=generator)
    val_batches = data.batches("val", int(trainer.eval_batch_size), device)
    test_batches = data.batches("test", int(trainer.eval_batch_size), device)
    epochs = int(trainer.epochs)
    scheduler = build_scheduler(cfg.scheduler, optimizer, epochs, len(train_batches))
    progress = None if trainer.progress == "auto" else bool(trainer.progress)

    checkpoint = JobCheckpoint(out_dir, cfg)
    done_so_far = checkpoint.restore(model, optimizer, scheduler, generator)  # epoch 0 unless resuming
    phases.lap("model")
    history = done_so_far.history
    train_seconds = done_so_far.train_seconds
    start = time.perf_counter() - done_so_far.wall_seconds
    for epoch in range(done_so_far.epoch + 1, epochs + 1):
        lr = optimizer.param_groups[0]["lr"]
        stats = train_epoch(model, train_batches, optimizer, scheduler, progress, desc=f"epoch {epoch}/{epochs}")
        train_seconds += stats.seconds
        val_loss, val_acc = evaluate(model, val_batches)
        history.append({"epoch": epoch, "train_loss": stats.loss, "train_acc": stats.acc, "val_loss": val_loss,
                        "val_acc": val_acc, "lr": lr, "epoch_time_s": stats.seconds})
        log.info("epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  lr %.2e  %.1fs",
                 epoch, epochs, stats.loss, 100 * stats.acc, val_loss, 100 * val_acc, lr, stats.seconds)
        if epoch_callback is not None:
            epoch_callback(epoch, val_acc)
        checkpoint.save(model, optimizer, scheduler, generator,
                        TrainingProgress(epoch, history, train_seconds, time.perf_counter() - start))
    wall = time.perf_counter() - start
    phases.lap("training")

    metrics: dict[str, Any] = {"status": "complete"}
    # the last epoch already validated this very model: no second pass over the validation set
    val_loss_raw, val_acc_raw = history[-1]["val_loss"], history[-1]["val_acc"]
    test_loss_raw, test_acc_raw = evaluate(model, test_batches)
    phases.lap("test")
    recalibrated = bool(trainer.bn_recalibration) and has_batchnorm(model)
    if recalibrated:
        recal_batches = data.batches("train", int(trainer.batch_size), device, shuffle=True,
                                     generator=torch.Generator().manual_seed(int(cfg.seed)))
        recalibrate_batchnorm(model, recal_batches, trainer.bn_recalibration_batches)
        val_loss, val_acc = evaluate(model, val_batches)
        test_loss, test_acc = evaluate(model, test_batches)
    else:
        val_loss, val_acc, test_loss, test_acc = val_loss_raw, val_acc_raw, test_loss_raw, test_acc_raw
    phases.lap("bn_recalibration")
    log.info("Final: val acc %.2f%%  test acc %.2f%%  (without BN re-estimation: val %.2f%%, test %.2f%%)",
             100 * val_acc, 100 * test_acc, 100 * val_acc_raw, 100 * test_acc_raw)

    metrics.update({
        "val_acc": val_acc, "val_loss": val_loss, "test_acc": test_acc, "test_loss": test_loss,
        "bn_recalibrated": recalibrated,
        "val_acc_raw": val_acc_raw, "val_loss_raw": val_loss_raw,
        "test_acc_raw": test_acc_raw, "test_loss_raw": test_loss_raw,
        "params": params, "macs": macs, "feature_maps": stage_sizes(rows), "downsampling_points": points,
        "train_time_s": wall, "images_per_s": epochs * len(data.train[1]) / train_seconds,
        "epochs": epochs, "seed": int(cfg.seed),
        "model": {"arch": cfg.model.arch, "downsample": OmegaConf.to_container(cfg.model.downsample, resolve=True),
                  "dropout": cfg.model.get("dropout")},
        "dataset": {"name": cfg.dataset.name, "source": data.source, "image_shape": list(data.image_shape),
                    "num_classes": data.num_classes, "train": len(data.train[1]), "val": len(data.val[1]),
                    "test": len(data.test[1]), "mean": data.mean, "std": data.std},
        "optimizer": {"name": cfg.optimizer._target_.rsplit(".", 1)[-1], "lr": cfg.optimizer.lr,
                      "weight_decay": cfg.optimizer.weight_decay, "batch_size": int(trainer.batch_size),
                      "scheduler": cfg.scheduler.name},
        "history": history,
        "hpo": _hpo_record(cfg),
        "environment": environment_record(device),
    })
    metrics.update(invariance_metrics(cfg, model, data, initial_model=fresh_model))
    phases.lap("probes")
    metrics["job_time_s"] = time.perf_counter() - job_start  # data, build, training, evaluation, probes
    metrics["time_breakdown_s"] = phases.seconds
    atomic_write_json(out_dir / METRICS_FILE, metrics)
    checkpoint.finish()
    return metrics
