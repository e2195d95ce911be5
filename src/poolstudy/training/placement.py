"""Where a job's model lives: which GPU when ``trainer.device=auto``, and in which memory layout.

Launchers that run several jobs at once on one machine (joblib, submitit_local with
``gpus_per_node`` = all GPUs, several HPO workers) give every job the same visible GPUs, so
every job would otherwise train on cuda:0. A multirun job therefore takes
cuda:<job number mod visible GPUs>. A launcher that does assign GPUs (SLURM with
``gpus_per_node=1``, ``CUDA_VISIBLE_DEVICES`` per job) leaves one visible device, and the
rule then picks it.

``trainer.channels_last=auto`` stores conv weights (and so every conv output) in NHWC on the
CPU, where ``python -m benchmarks.bench --options`` measures it faster (docs/benchmark.md); on
CUDA and MPS it stays NCHW until measured there.
"""

from __future__ import annotations

import logging

import torch

from poolstudy.errors import PoolStudyError

log = logging.getLogger(__name__)


def cuda_index_for_job(job_number: int | None, visible_gpus: int) -> int | None:
    """The CUDA device index for a multirun job, or None for a single run (current device)."""
    if visible_gpus <= 1:
        return 0
    if job_number is None:
        return None
    return job_number % visible_gpus


def multirun_job_number() -> int | None:
    """Hydra's job number within a multirun; None in a single run or outside Hydra."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    return int(hydra_cfg.job.num) if hydra_cfg.mode == RunMode.MULTIRUN else None


def auto_cuda_device() -> torch.device:
    """The CUDA device this job should use; also made the current device."""
    index = cuda_index_for_job(multirun_job_number(), torch.cuda.device_count())
    if index is None:
        return torch.device("cuda")
    device = torch.device("cuda", index)
    torch.cuda.set_device(device)  # allocations without an explicit device go there too
    if torch.cuda.device_count() > 1:
        log.info("Job placed on %s of %d visible GPUs", device, torch.cuda.device_count())
    return device


def uses_channels_last(setting: bool | str, device: torch.device) -> bool:
    """``trainer.channels_last``: true, false, or auto (on for the CPU only)."""
    if setting == "auto":
        return device.type == "cpu"
    return bool(setting)


def place_model(model: torch.nn.Module, channels_last: bool | str, device: torch.device) -> torch.nn.Module:
    """Move ``model`` to ``device`` in the layout ``channels_last`` asks for; returns it."""
    model.to(device)
    if uses_channels_last(channels_last, device):
        model.to(memory_format=torch.channels_last)  # conv outputs follow the weights' layout
    return model


def resolve_device(name: str) -> torch.device:
    """``trainer.device``: auto (cuda, then mps, then cpu), cpu, mps, cuda or cuda:N; PoolStudyError when absent."""
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
