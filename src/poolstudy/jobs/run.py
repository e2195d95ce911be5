"""One job, phase by phase: set up the process -> load data -> build the model -> train -> evaluate -> probes
-> metrics.json. ``train_and_evaluate`` reads as that table of contents; each phase is a function below it,
and each lap of its stopwatch (metrics.json's ``time_breakdown_s``) is one phase."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from poolstudy.data import DataSplits, TensorBatches, load_splits
from poolstudy.errors import PoolStudyError
from poolstudy.evaluation.batchnorm import has_batchnorm, recalibrate_batchnorm
from poolstudy.evaluation.evaluate import evaluate
from poolstudy.evaluation.invariance import invariance_metrics
from poolstudy.jobfolder import METRICS_FILE, write_metrics
from poolstudy.jobs.config_checks import check_config
from poolstudy.jobs.interrupt import JobProgress
from poolstudy.models.profile import (LayerRow, check_batch_statistics, count_macs, count_params, format_summary,
                                     stage_sizes, trace_shapes)
from poolstudy.models.surgery import format_points, point_records
from poolstudy.tracking import Trackers
from poolstudy.training.checkpoint import JobCheckpoint, TrainingProgress
from poolstudy.training.loop import train_epoch
from poolstudy.training.placement import place_model, resolve_device
from poolstudy.training.schedule import build_scheduler
from poolstudy.training.seeding import seed_everything
from poolstudy.utils.allocator import keep_freed_memory
from poolstudy.utils.environment import environment_record
from poolstudy.utils.stopwatch import PhaseStopwatch

log = logging.getLogger(__name__)


def build_model(cfg: DictConfig, in_channels: int, num_classes: int,
                image_size: int | None = None) -> torch.nn.Module:
    """The job's model from ``cfg.model`` (its ``_target_``), for images of ``in_channels`` and ``num_classes`` classes
    (and, for a model with an ``image_size`` key such as arch=torchvision, images of ``image_size`` pixels a side)
    unless the config sets them; a PoolStudyError the model raises is raised as itself."""
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
                       epoch_callback: Callable[[int, float], None] | None = None,
                       progress: JobProgress | None = None, trackers: Trackers | None = None) -> dict[str, Any]:
    """Run one job and write ``out_dir/metrics.json``; returns the metrics.

    The caller has made sure that ``out_dir`` may hold this job (``poolstudy.jobs.folder.prepare``,
    under the folder's lock). ``epoch_callback(epoch, val_acc)`` is called after each epoch's
    validation (the HPO sweeper's pruning hook); it may raise to stop the job. ``progress`` is kept
    current (phase, epoch in progress, epochs in the checkpoint) for the report of an interrupted job.
    Each phase's wall time goes to metrics.json's ``time_breakdown_s`` under the name it is lapped with.
    ``trackers`` (the ``logger`` group, ``poolstudy.tracking``) get each epoch's record and, once
    metrics.json is written, the final metrics: a tracker cannot cost the result.
    """
    progress = progress if progress is not None else JobProgress(epochs=0)
    trackers = trackers if trackers is not None else Trackers([])
    check_config(cfg)
    progress.epochs = int(cfg.trainer.epochs)
    job_start = time.perf_counter()
    phases = PhaseStopwatch()

    device = set_up_process(cfg)
    phases.lap("setup")
    progress.phase = "data"
    data = load_data(cfg, device)
    phases.lap("data")
    progress.phase = "model"
    job = build_job(cfg, data, device, out_dir, progress)
    phases.lap("model")
    progress.phase = "training"
    trained = train(cfg, job, epoch_callback, progress, trackers)
    progress.phase = "evaluation"
    phases.lap("training")
    final = evaluate_final(cfg, job, data, device, trained.history, phases)
    metrics = metrics_record(cfg, job, data, device, trained, final)
    metrics.update(invariance_metrics(cfg, job.model, data, initial_model=job.fresh_model))
    phases.lap("probes")
    metrics["job_time_s"] = time.perf_counter() - job_start  # data, build, training, evaluation, probes
    metrics["time_breakdown_s"] = phases.seconds
    write_metrics(out_dir, metrics)
    progress.phase = "done"
    job.checkpoint.finish()
    trackers.finish(metrics, out_dir / METRICS_FILE)
    return metrics


# ---------------------------------------------------------------- the phases, in the order they run


def set_up_process(cfg: DictConfig) -> torch.device:
    """Allocator, threads, device and random seeds of this process; the device the job runs on."""
    trainer = cfg.trainer
    if trainer.get("keep_freed_memory", False):
        keep_freed_memory()
    if trainer.threads:
        torch.set_num_threads(int(trainer.threads))
    device = resolve_device(trainer.device)
    seed_everything(int(cfg.seed), bool(trainer.deterministic))
    return device


def load_data(cfg: DictConfig, device: torch.device) -> DataSplits:
    """The dataset's training, validation and test splits, on ``device``."""
    data = load_splits(cfg.dataset, cfg.data_dir, cfg.cache_dir).to(device)
    log.info("Data: %s; train %d / val %d / test %d images of %s, %d classes",
             data.source, len(data.train[1]), len(data.val[1]), len(data.test[1]),
             "x".join(map(str, data.image_shape)), data.num_classes)
    return data


@dataclass
class Job:
    """What the training and evaluation phases work on."""

    model: torch.nn.Module
    fresh_model: Callable[[], torch.nn.Module]  # an untrained model of the same config (the probes' reference)
    layers: list[LayerRow]  # each layer's output size at the data's image size
    points: list[dict[str, Any]]  # each downsampling point: name, what it was and became, output size
    params: int
    macs: int
    optimizer: torch.optim.Optimizer
    scheduler: Any
    generator: torch.Generator  # shuffles the training batches; saved in every checkpoint
    train_batches: TensorBatches
    val_batches: TensorBatches
    test_batches: TensorBatches
    checkpoint: JobCheckpoint
    restored: TrainingProgress  # epoch 0 unless resuming


def build_job(cfg: DictConfig, data: DataSplits, device: torch.device, out_dir: Path,
              progress: JobProgress) -> Job:
    """Model (its shapes checked at the data's size before anything trains), optimizer, schedule and
    batches; the folder's checkpoint restored into them when the job resumes."""
    trainer = cfg.trainer

    def fresh_model() -> torch.nn.Module:  # also the untrained reference of the layer-wise probes
        return build_model(cfg, data.image_shape[0], data.num_classes, data.image_shape[-1])

    model = fresh_model()
    rows = trace_shapes(model, data.image_shape)  # before training: clear error on impossible shapes
    check_batch_statistics(rows, int(trainer.batch_size))
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
    scheduler = build_scheduler(cfg.scheduler, optimizer, int(trainer.epochs), len(train_batches))

    checkpoint = JobCheckpoint(out_dir, cfg)
    progress.checkpoints = checkpoint.enabled
    restored = checkpoint.restore(model, optimizer, scheduler, generator)
    progress.saved_epoch = restored.epoch
    return Job(model, fresh_model, rows, points, params, macs, optimizer, scheduler, generator, train_batches,
               val_batches, test_batches, checkpoint, restored)


@dataclass
class Trained:
    history: list[dict[str, Any]]  # one entry per epoch, the restored ones included
    train_seconds: float  # in train_epoch, over all epochs
    wall_seconds: float  # of the training phase, over all attempts


def train(cfg: DictConfig, job: Job, epoch_callback: Callable[[int, float], None] | None,
          progress: JobProgress, trackers: Trackers) -> Trained:
    """The epochs the checkpoint does not hold yet: train, validate, report (log, trackers, the pruning
    hook), checkpoint."""
    trainer = cfg.trainer
    epochs = int(trainer.epochs)
    progress_bar = None if trainer.progress == "auto" else bool(trainer.progress)
    done_so_far = job.restored
    history = done_so_far.history
    train_seconds = done_so_far.train_seconds
    start = time.perf_counter() - done_so_far.wall_seconds
    for epoch in range(done_so_far.epoch + 1, epochs + 1):
        progress.epoch = epoch
        lr = job.optimizer.param_groups[0]["lr"]
        stats = train_epoch(job.model, job.train_batches, job.optimizer, job.scheduler, progress_bar,
                            desc=f"epoch {epoch}/{epochs}")
        train_seconds += stats.seconds
        val_loss, val_acc = evaluate(job.model, job.val_batches)
        history.append({"epoch": epoch, "train_loss": stats.loss, "train_acc": stats.acc, "val_loss": val_loss,
                        "val_acc": val_acc, "lr": lr, "epoch_time_s": stats.seconds})
        log.info("epoch %d/%d  train loss %.4f acc %.2f%%  val loss %.4f acc %.2f%%  lr %.2e  %.1fs",
                 epoch, epochs, stats.loss, 100 * stats.acc, val_loss, 100 * val_acc, lr, stats.seconds)
        trackers.log_epoch(history[-1])  # before the pruning hook may stop the job
        if epoch_callback is not None:
            epoch_callback(epoch, val_acc)
        job.checkpoint.save(job.model, job.optimizer, job.scheduler, job.generator,
                            TrainingProgress(epoch, history, train_seconds, time.perf_counter() - start))
        progress.saved_epoch = epoch if job.checkpoint.enabled else 0
    return Trained(history, train_seconds, time.perf_counter() - start)


@dataclass
class Final:
    """The final evaluation: after BatchNorm re-estimation (when the model has BatchNorm and it is on)
    and, ``*_raw``, of the model as trained."""

    val_loss: float
    val_acc: float
    test_loss: float
    test_acc: float
    val_loss_raw: float
    val_acc_raw: float
    test_loss_raw: float
    test_acc_raw: float
    recalibrated: bool


def evaluate_final(cfg: DictConfig, job: Job, data: DataSplits, device: torch.device, history: list[dict[str, Any]],
                   phases: PhaseStopwatch) -> Final:
    """Test the trained model, re-estimate its BatchNorm statistics, validate and test again (laps
    ``test`` and ``bn_recalibration``)."""
    trainer = cfg.trainer
    # the last epoch already validated this very model: no second pass over the validation set
    val_loss_raw, val_acc_raw = history[-1]["val_loss"], history[-1]["val_acc"]
    test_loss_raw, test_acc_raw = evaluate(job.model, job.test_batches)
    phases.lap("test")
    recalibrated = bool(trainer.bn_recalibration) and has_batchnorm(job.model)
    if recalibrated:
        recal_batches = data.batches("train", int(trainer.batch_size), device, shuffle=True,
                                     generator=torch.Generator().manual_seed(int(cfg.seed)))
        recalibrate_batchnorm(job.model, recal_batches, trainer.bn_recalibration_batches)
        val_loss, val_acc = evaluate(job.model, job.val_batches)
        test_loss, test_acc = evaluate(job.model, job.test_batches)
    else:
        val_loss, val_acc, test_loss, test_acc = val_loss_raw, val_acc_raw, test_loss_raw, test_acc_raw
    phases.lap("bn_recalibration")
    log.info("Final: val acc %.2f%%  test acc %.2f%%  (without BN re-estimation: val %.2f%%, test %.2f%%)",
             100 * val_acc, 100 * test_acc, 100 * val_acc_raw, 100 * test_acc_raw)
    return Final(val_loss, val_acc, test_loss, test_acc, val_loss_raw, val_acc_raw, test_loss_raw, test_acc_raw,
                 recalibrated)


def metrics_record(cfg: DictConfig, job: Job, data: DataSplits, device: torch.device, trained: Trained,
                   final: Final) -> dict[str, Any]:
    """metrics.json without the probes and the job's total time: results, what was trained on what, cost,
    history, HPO role and the environment (read now, after training: threads and determinism as used)."""
    trainer = cfg.trainer
    epochs = int(trainer.epochs)
    return {
        "status": "complete",
        "val_acc": final.val_acc, "val_loss": final.val_loss, "test_acc": final.test_acc, "test_loss": final.test_loss,
        "bn_recalibrated": final.recalibrated,
        "val_acc_raw": final.val_acc_raw, "val_loss_raw": final.val_loss_raw,
        "test_acc_raw": final.test_acc_raw, "test_loss_raw": final.test_loss_raw,
        "params": job.params, "macs": job.macs, "feature_maps": stage_sizes(job.layers),
        "downsampling_points": job.points,
        "train_time_s": trained.wall_seconds, "images_per_s": epochs * len(data.train[1]) / trained.train_seconds,
        "epochs": epochs, "seed": int(cfg.seed),
        "model": {"arch": cfg.model.arch, "downsample": OmegaConf.to_container(cfg.model.downsample, resolve=True),
                  "dropout": cfg.model.get("dropout")},
        "dataset": {"name": cfg.dataset.name, "source": data.source, "image_shape": list(data.image_shape),
                    "num_classes": data.num_classes, "train": len(data.train[1]), "val": len(data.val[1]),
                    "test": len(data.test[1]), "mean": data.mean, "std": data.std, "classes": data.classes},
        "optimizer": {"name": cfg.optimizer._target_.rsplit(".", 1)[-1], "lr": cfg.optimizer.lr,
                      "weight_decay": cfg.optimizer.weight_decay, "batch_size": int(trainer.batch_size),
                      "scheduler": cfg.scheduler.name},
        "history": trained.history,
        "hpo": _hpo_record(cfg),
        "environment": environment_record(device),
    }
