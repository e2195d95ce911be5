"""The project's loop under each CPU/GPU speed option (``python -m benchmarks.bench --options``).

Each option is switched on alone on the plain set-up (torch's layers, NCHW, torch's optimizer
defaults), plus train.py's own set-up (``train_defaults``): what ``trainer.channels_last``,
``optimizer.fused`` and the CPU speed layers (:mod:`poolstudy.models.fast_cpu`) gain.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import torch

from benchmarks.common import figures, interleaved, job_config, model_label, paired_ratio, project_batches, set_up
from poolstudy.training.loop import train_epoch


SPEED_OPTIONS = ("base", "fast_layers", "channels_last", "fused", "bf16_autocast", "compile", "train_defaults")


def _option_loop(option: str, data: str, model_name: str, raw, n: int, batch_size: int,
                 device: torch.device, arch: str = "lenet") -> Callable[[], int]:
    """The project's train_epoch on the plain set-up (torch's layers, NCHW, torch's optimizer
    defaults) with one speed option switched on (``fast_layers``: the project's FastCPUDropout and
    FastCPUMaxPool2d), or on train.py's own set-up (``train_defaults``); returns the timed callable."""
    cfg = job_config(model_name, data, arch)
    model, optimizer = set_up(cfg, raw.train_x.shape[1], device, as_train_py=option == "train_defaults",
                               channels_last=True if option == "channels_last" else None,
                               fused=True if option == "fused" else None,
                               fast_layers=True if option == "fast_layers" else None)
    forward = torch.compile(model) if option == "compile" else model
    batches = project_batches(cfg, raw, n, batch_size, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=option == "bf16_autocast")

    def run() -> int:
        with autocast:
            train_epoch(forward, batches, optimizer, progress=False)
        return n

    return run


def bench_options(data: str, model_name: str, batch_size: int, raw, steps: int, reps: int,
                  device: torch.device, options: list[str] = list(SPEED_OPTIONS), arch: str = "lenet",
                  clock: Callable[[], float] = time.perf_counter) -> dict:
    """images/s of the project loop under each speed option, repetitions interleaved so that drift in
    the machine's speed hits every option alike; compile and warm-up time are excluded."""
    n = steps * batch_size
    loops, warmup = {}, {}
    for option in options:
        start = time.perf_counter()
        loops[option] = _option_loop(option, data, model_name, raw, n, batch_size, device, arch)
        loops[option]()
        warmup[option] = time.perf_counter() - start
    rates, _ = interleaved(loops, reps, device, warm_up=False, clock=clock)  # the timed first epochs were the warm-up
    return {"data": data, "arch": arch, "model": model_name, "batch_size": batch_size, "steps": steps, "reps": reps,
            "options": {option: {**figures(r), "speedup_vs_base": paired_ratio(r, rates["base"])["median"],
                                 "first_epoch_s": warmup[option]}
                        for option, r in rates.items()}}


def run_options(args: argparse.Namespace, raws: dict, device: torch.device, options: list[str],
                clock: Callable[[], float] = time.perf_counter) -> list[dict]:
    print(f"{'data':<8} {'model':<8} {'batch':>5} | " + " ".join(f"{o:>13}" for o in options)
          + f"   (images/s, median of {args.reps}; speed-up vs base)")
    cases = []
    for data in args.data:
        for arch in args.arch:
            for model_name in args.models:
                for bs in args.batch_sizes:
                    case = bench_options(data, model_name, bs, raws[data], args.steps, args.reps, device, options,
                                         arch, clock)
                    cases.append(case)
                    cells = " ".join(f"{o['median']:>6.0f} ({o['speedup_vs_base']:.2f})"
                                     for o in case["options"].values())
                    print(f"{data:<8} {model_label(arch, model_name):<8} {bs:>5} | {cells}", flush=True)
    return cases
