"""What the benchmark's parts share: train.py's set-up of a model, the project's batches, interleaved
timing of several loops, paired ratios and the machine record."""

from __future__ import annotations

import os
import resource
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from poolstudy.data.loader import Normalizer, TensorBatches
from poolstudy.jobs.run import build_model
from poolstudy.models.fast_cpu import FastCPUDropout, FastCPUMaxPool2d
from poolstudy.training.placement import place_model

ROOT = Path(__file__).resolve().parents[1]
CONF_DIR = ROOT / "conf"
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
ARCHS = sorted(p.stem for p in (CONF_DIR / "arch").glob("*.yaml"))
#: what a timed run is measured with: the wall clock, or (``--clock cpu``) this process's CPU time,
#: which other processes on a shared machine do not inflate (with one torch thread and no DataLoader
#: workers, whose time it would not count)
CLOCKS: dict[str, Callable[[], float]] = {"wall": time.perf_counter, "cpu": time.process_time}


def step(model, optimizer, x, y) -> None:
    loss = F.cross_entropy(model(x), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def job_config(model_name: str, data: str, arch: str = "lenet"):
    """``train.py``'s composed config for ``arch=<arch> model=<model_name> dataset=<data>``, defaults
    otherwise (arch=resnet: ResNet-20; arch=vgg: VGG-11)."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="config", overrides=[f"arch={arch}", f"model={model_name}", f"dataset={data}"])


def model_label(arch: str, model_name: str) -> str:
    return model_name if arch == "lenet" else f"{arch}/{model_name}"


def with_torch_layers(model: torch.nn.Module) -> None:
    """Swap the project's CPU speed layers for the torch layers they subclass, same arguments."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, FastCPUDropout):
                setattr(module, name, torch.nn.Dropout(child.p, child.inplace))
            elif isinstance(child, FastCPUMaxPool2d):
                setattr(module, name, torch.nn.MaxPool2d(child.kernel_size, child.stride, child.padding,
                                                         child.dilation, child.return_indices, child.ceil_mode))


def set_up(cfg, channels: int, device: torch.device, as_train_py: bool = True,
            channels_last: bool | str | None = None, fused: bool | None = None, fast_layers: bool | None = None):
    """(model, optimizer), seeded alike. ``as_train_py``: built, laid out and configured as
    ``train.py`` does it; otherwise as a plain script writes and holds them (torch's own layers,
    NCHW, the optimizer at torch's defaults). ``channels_last`` / ``fused`` / ``fast_layers``
    override either."""
    torch.manual_seed(0)
    model = build_model(cfg, channels, 10)
    if not (as_train_py if fast_layers is None else fast_layers):
        with_torch_layers(model)
    if channels_last is None:
        channels_last = cfg.trainer.channels_last if as_train_py else False
    place_model(model, channels_last, device)
    if fused is None and as_train_py:
        fused = cfg.optimizer.get("fused")
    return model, instantiate(cfg.optimizer, fused=fused)(model.parameters())


def project_batches(cfg, raw, n: int, batch_size: int, device: torch.device,
                     shuffle: bool = True) -> TensorBatches:
    """The first n training images as the project's device-resident batches, normalised with the
    dataset config's mean and std."""
    normalize = Normalizer(list(cfg.dataset.mean), list(cfg.dataset.std), device)
    generator = torch.Generator().manual_seed(0) if shuffle else None
    return TensorBatches(raw.train_x[:n].to(device), raw.train_y[:n].to(device), batch_size, normalize,
                         shuffle=shuffle, generator=generator)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def interleaved(runs: dict[str, Callable[[], int]], reps: int, device: torch.device, warm_up: bool = True,
                clock: Callable[[], float] = time.perf_counter) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """images/s of ``reps`` timed calls of each run (which returns images processed), after one warm-up
    call each unless the caller made it, and the minor page faults per image of each call. The runs
    take turns within each repetition, so a drift in the machine's speed (turbo, caches, another
    process) hits all of them alike instead of whichever happens to run last. ``clock``: one of
    ``CLOCKS`` (seconds)."""
    for run in runs.values() if warm_up else ():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    faults: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            sync(device)
            faults_before, start = minor_faults(), clock()
            images = run()
            sync(device)
            rates[name].append(images / (clock() - start))
            faults[name].append((minor_faults() - faults_before) / images)
    return rates, faults


def figures(runs: list[float]) -> dict:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


def paired_ratio(numerator: list[float], denominator: list[float]) -> dict:
    """Median, min, max and every value of the per-repetition ratios. The runs of one repetition
    ran back to back, so each ratio compares them under the same machine speed; on a shared VM,
    whose speed drifts from one repetition to the next, the ratio of two separately
    taken medians mixes repetitions and drifts with it."""
    return figures([a / b for a, b in zip(numerator, denominator, strict=True)])


def peak_memory(device: torch.device) -> dict:
    peak = {"rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == "cuda":
        peak["gpu_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    return peak


def machine(device: torch.device) -> dict:
    import platform

    return {"date": time.strftime("%Y-%m-%d"), "device": str(device),
            "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(), "torch": torch.__version__}


def rate(figures: dict) -> str:
    spread = 50 * (figures["max"] - figures["min"]) / figures["median"]
    return f"{figures['median']:>6.0f}±{spread:<2.0f}%"


def ratio_text(ratio: dict) -> str:
    return f"{ratio['median']:>5.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]"
