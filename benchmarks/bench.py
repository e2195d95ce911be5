"""Training-throughput benchmark: the project's loop against the usual peer and the model's limit.

    python -m benchmarks.bench                      # MNIST and 32x32x3, maxpool/strided, batch 64/256
    python -m benchmarks.bench --json bench.json --reps 5 --steps 100
    python -m benchmarks.bench --arch resnet vgg --data cifar10 --models published --batch-sizes 128 \
        --threads 1 --workers 0 --clock cpu   # ResNet-20 and VGG-11 as published, timed in CPU time

For each (data, architecture, model, batch size) it measures, in one process, with the same model, thread
count and device, warm-up excluded, ``--reps`` repetitions of ``--steps`` training steps:

1. ``peer_w0`` / ``peer_w2``: the pytorch/examples style — a torchvision dataset class with
   per-sample ``ToTensor`` + ``Normalize`` behind a shuffling ``DataLoader`` (0 and 2 workers),
   training the same model as a plain script would write and hold it: torch's own layers
   (``nn.Dropout``, ``nn.MaxPool2d``), NCHW, the optimizer at torch's defaults;
2. ``project``: :func:`poolstudy.training.loop.train_epoch` over device-resident batches,
   the very function ``train.py`` runs, on the model and optimizer as ``train.py`` sets them up
   from its default config (``trainer.channels_last``, ``optimizer.fused``);
3. ``limit``: forward + backward + optimizer step of that same set-up, repeated on one
   pre-loaded batch;
4. ``peer_w0_same_settings``: the peer's data pipeline (0 workers) feeding the project's set-up,
   which separates what the data path gains from what the model settings gain;
5. ``data_path``: the project's batches alone (shuffle, slice, normalise), no model; its time
   over the project's is ``data_path_share``, what the loop adds to the model's own step.

It prints images/s (median, and the half-range over repetitions as ± % of it) and the ratios
project/peer (the peer with the higher median), project/peer with the same settings and
project/limit: each the median, with min–max, of the per-repetition ratios (every repetition
runs each loop once, back to back, so a drift in the machine's speed cancels out of them).
Also the project's minor page faults per step, and peak RSS (and peak GPU memory where present).

The process runs with ``train.py``'s allocator setting (``trainer.keep_freed_memory``; ``--allocator
system`` for the C library's defaults). It is process-wide, so the peers run with it too: the
ratios do not count what it gains.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from benchmarks.common import ARCHS, CLOCKS, MODELS, machine, model_label, peak_memory, rate, ratio_text
from benchmarks.loop import PEER_DATASETS, bench_case
from benchmarks.options import SPEED_OPTIONS, run_options
from benchmarks.sweeps import bench_sweeps
from poolstudy.data import load_raw
from poolstudy.data.cifar10 import CIFAR_JPEG_LABEL
from poolstudy.errors import PoolStudyError
from poolstudy.training.placement import resolve_device
from poolstudy.utils.allocator import keep_freed_memory
from poolstudy.utils.io import atomic_write_json


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench", description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["mnist", "cifar10"], choices=PEER_DATASETS)
    parser.add_argument("--models", nargs="+", default=["maxpool", "strided"], choices=MODELS)
    parser.add_argument("--arch", nargs="+", default=["lenet"], choices=ARCHS,
                        help="architectures at their config defaults (resnet: ResNet-20, vgg: VGG-11)")
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[64, 256])
    parser.add_argument("--steps", type=int, default=20, help="training steps per repetition")
    parser.add_argument("--reps", type=int, default=15, help="timed repetitions (after one warm-up)")
    parser.add_argument("--workers", nargs="+", type=int, default=[0, 2], help="DataLoader num_workers of the peer")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--clock", choices=sorted(CLOCKS), default="wall",
                        help="wall: elapsed time; cpu: this process's CPU time, steadier on a machine shared with "
                             "other work (needs --threads 1 --workers 0 and a CPU device)")
    parser.add_argument("--allocator", choices=("keep", "system"), default="keep",
                        help="keep: freed memory stays in the process, as train.py's trainer.keep_freed_memory=true "
                             "sets it (process-wide, so the peers run with it too); system: the C library's defaults")
    parser.add_argument("--data-dir", default=os.environ.get("POOLSTUDY_DATA", "./data"))
    parser.add_argument("--cache-dir", default=os.environ.get("POOLSTUDY_CACHE", "~/.cache/poolstudy"))
    parser.add_argument("--json", type=Path, help="write all figures to this file")
    parser.add_argument("--sweeps", action="store_true",
                        help="also time whole train.py runs: an 8-job multirun sequential and 2x1-thread parallel, "
                             "and the peak RSS of one MNIST and one CIFAR-10 job")
    parser.add_argument("--sweep-epochs", type=int, default=1)
    parser.add_argument("--skip-loop", action="store_true", help="only the --sweeps part")
    parser.add_argument("--options", nargs="*", choices=SPEED_OPTIONS, metavar="OPTION",
                        help=f"instead of peer/project/limit: the project loop under these speed options "
                             f"(default: all of {', '.join(SPEED_OPTIONS)}; base always)")
    args = parser.parse_args(argv)
    if args.steps < 1 or args.reps < 1 or any(b < 1 for b in args.batch_sizes):
        parser.error("--steps, --reps and --batch-sizes must be >= 1")
    if args.clock == "cpu" and (args.threads != 1 or args.workers != [0]):
        parser.error("--clock cpu needs --threads 1 --workers 0: other threads spin and DataLoader workers run "
                     "in other processes, so their time would be miscounted")
    clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        device = resolve_device(args.device)
        cache = Path(args.cache_dir).expanduser()
        raws = {d: load_raw(d, Path(args.data_dir), cache) for d in args.data}
    except PoolStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.clock == "cpu" and device.type != "cpu":
        print("error: --clock cpu measures the CPU's time; use --device cpu", file=sys.stderr)
        return 2
    kept = args.allocator == "keep" and keep_freed_memory()
    cases = []
    report: dict = {"machine": {**machine(device), "allocator": args.allocator, "keep_freed_memory": kept},
                    "clock": args.clock}
    if args.sweeps:
        env = {**os.environ, "POOLSTUDY_DATA": str(args.data_dir), "POOLSTUDY_CACHE": str(cache)}
        with tempfile.TemporaryDirectory(prefix="poolstudy-bench-") as work:
            report["sweeps"] = bench_sweeps(Path(work), env, args.sweep_epochs)
    if args.skip_loop:
        args.data = []
    if args.options is not None:
        options = ["base", *[o for o in SPEED_OPTIONS if o in args.options and o != "base"]] \
            if args.options else list(SPEED_OPTIONS)
        report["options"] = run_options(args, raws, device, options, clock)
        args.data = []
    if args.data:
        peer_heads = " ".join(f"{f'peer w{w}':>10}" for w in args.workers)
        print(f"{'data':<8} {'model':<8} {'batch':>5} | {peer_heads} {'peer w0*':>10} {'project':>10} {'limit':>10} "
              f"| {'vs peer':>16} {'vs peer*':>8} {'vs limit':>16} {'data path':>9} {'faults':>6}\n  (images/s: median "
              f"± half-range of {args.reps} repetitions; ratios: median [min-max] of the per-repetition ratios; * = the "
              f"project's model settings; faults: the project's minor page faults per step)")
    for data in args.data:
        label = raws[data].source if data == "mnist" else CIFAR_JPEG_LABEL
        for arch in args.arch:
            for model_name in args.models:
                for bs in args.batch_sizes:
                    case = bench_case(data, model_name, bs, raws[data], cache / "bench-peer" / data, args.steps,
                                      args.reps, args.workers, device, arch, clock)
                    case["data_source"] = label
                    cases.append(case)
                    ips, ratios = case["images_per_s"], case["ratios"]
                    rates = " ".join(rate(ips[name]) for name in (*(f"peer_w{w}" for w in args.workers),
                                                                    "peer_w0_same_settings", "project", "limit"))
                    print(f"{data:<8} {model_label(arch, model_name):<8} {bs:>5} | {rates} | "
                          f"{ratio_text(ratios['vs_peer'])} {case['ratio_vs_peer_same_settings']:>8.2f} "
                          f"{ratio_text(ratios['vs_limit'])} {100 * case['data_path_share']:>8.1f}% "
                          f"{ips['project']['page_faults_per_step']:>6.0f}", flush=True)
    report.update({"cases": cases, "peak_memory": peak_memory(device)})
    print(f"peak memory: {report['peak_memory']}; machine: {report['machine']}")
    if args.json:
        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
