"""Training-throughput benchmark: the project's loop against the usual peer and the model's limit.

    python -m poolstudy.bench                      # MNIST and 32x32x3, maxpool/strided, batch 64/256
    python -m poolstudy.bench --json bench.json --reps 5 --steps 100
    python -m poolstudy.bench --arch resnet vgg --data cifar10 --models published maxpool --batch-sizes 128

For each (data, model, batch size) it measures, in one process, with the same model, thread
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
import json
import os
import pickle
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from hydra.utils import instantiate

from poolstudy.data import load_raw
from poolstudy.data.catalogue import CIFAR_JPEG_LABEL
from poolstudy.data.loader import Normalizer, TensorBatches
from poolstudy.errors import PoolStudyError
from poolstudy.models.layers import FastCPUDropout, FastCPUMaxPool2d
from poolstudy.training.loop import train_epoch
from poolstudy.training.placement import place_model
from poolstudy.training.run import build_model
from poolstudy.utils.allocator import keep_freed_memory
from poolstudy.utils.io import atomic_write_json

ROOT = Path(__file__).resolve().parents[2]
CONF_DIR = ROOT / "conf"
MODELS = sorted(p.stem for p in (CONF_DIR / "model").glob("*.yaml"))
ARCHS = sorted(p.stem for p in (CONF_DIR / "arch").glob("*.yaml"))
PEER_DATASETS = ("mnist", "cifar10")  # the datasets torchvision has a class for, i.e. a peer


# ---------------------------------------------------------------- peers (torchvision classes)


def _write_idx(path: Path, array, magic: int) -> None:
    if not path.exists():
        header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
        path.write_bytes(header + array.tobytes())


def _peer_dataset(cfg, raw, root: Path):
    """The torchvision dataset class a user would reach for, on the official file layout, normalised
    with the dataset config's mean and std."""
    import torchvision.datasets as tvd
    import torchvision.transforms as T

    name = cfg.dataset.name
    transform = T.Compose([T.ToTensor(), T.Normalize(list(cfg.dataset.mean), list(cfg.dataset.std))])
    if name == "mnist":
        raw_dir = root / "MNIST" / "raw"
        raw_dir.mkdir(parents=True, exist_ok=True)
        # torchvision's class reads decompressed IDX files in its own layout
        for split, x, y in (("train", raw.train_x, raw.train_y), ("t10k", raw.test_x, raw.test_y)):
            _write_idx(raw_dir / f"{split}-images-idx3-ubyte", x[:, 0].numpy(), 2051)
            _write_idx(raw_dir / f"{split}-labels-idx1-ubyte", y.to(torch.uint8).numpy(), 2049)
        return tvd.MNIST(str(root), train=True, transform=transform, download=False)

    class LocalCIFAR10(tvd.CIFAR10):
        def _check_integrity(self) -> bool:  # our batches are re-made from the JPEG copy: no official md5
            return True

        def _load_meta(self) -> None:  # the same, without the md5 check of batches.meta
            with open(Path(self.root) / self.base_folder / self.meta["filename"], "rb") as fh:
                self.classes = pickle.load(fh)[self.meta["key"]]
            self.class_to_idx = {name: i for i, name in enumerate(self.classes)}

    batches = root / LocalCIFAR10.base_folder
    if not (batches / "data_batch_1").exists():
        batches.mkdir(parents=True, exist_ok=True)
        images = raw.train_x.permute(0, 2, 3, 1).reshape(len(raw.train_x), -1).numpy()
        for i, chunk in enumerate(range(0, len(images), 10000), start=1):
            with open(batches / f"data_batch_{i}", "wb") as fh:
                pickle.dump({"data": images[chunk:chunk + 10000].reshape(-1, 3072),
                             "labels": raw.train_y[chunk:chunk + 10000].tolist()}, fh)
        with open(batches / "test_batch", "wb") as fh:
            pickle.dump({"data": images[:10].reshape(-1, 3072), "labels": raw.train_y[:10].tolist()}, fh)
        with open(batches / "batches.meta", "wb") as fh:
            pickle.dump({"label_names": raw.classes}, fh)
    return LocalCIFAR10(str(root), train=True, transform=transform, download=False)


# ---------------------------------------------------------------- timed cases


def _step(model, optimizer, x, y) -> None:
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


def _with_torch_layers(model: torch.nn.Module) -> None:
    """Swap the project's CPU speed layers for the torch layers they subclass, same arguments."""
    for module in list(model.modules()):
        for name, child in module.named_children():
            if isinstance(child, FastCPUDropout):
                setattr(module, name, torch.nn.Dropout(child.p, child.inplace))
            elif isinstance(child, FastCPUMaxPool2d):
                setattr(module, name, torch.nn.MaxPool2d(child.kernel_size, child.stride, child.padding,
                                                         child.dilation, child.return_indices, child.ceil_mode))


def _set_up(cfg, channels: int, device: torch.device, as_train_py: bool = True,
            channels_last: bool | str | None = None, fused: bool | None = None, fast_layers: bool | None = None):
    """(model, optimizer), seeded alike. ``as_train_py``: built, laid out and configured as
    ``train.py`` does it; otherwise as a plain script writes and holds them (torch's own layers,
    NCHW, the optimizer at torch's defaults). ``channels_last`` / ``fused`` / ``fast_layers``
    override either."""
    torch.manual_seed(0)
    model = build_model(cfg, channels, 10)
    if not (as_train_py if fast_layers is None else fast_layers):
        _with_torch_layers(model)
    if channels_last is None:
        channels_last = cfg.trainer.channels_last if as_train_py else False
    place_model(model, channels_last, device)
    if fused is None and as_train_py:
        fused = cfg.optimizer.get("fused")
    return model, instantiate(cfg.optimizer, fused=fused)(model.parameters())


def _project_batches(cfg, raw, n: int, batch_size: int, device: torch.device,
                     shuffle: bool = True) -> TensorBatches:
    """The first n training images as the project's device-resident batches, normalised with the
    dataset config's mean and std."""
    normalize = Normalizer(list(cfg.dataset.mean), list(cfg.dataset.std), device)
    generator = torch.Generator().manual_seed(0) if shuffle else None
    return TensorBatches(raw.train_x[:n].to(device), raw.train_y[:n].to(device), batch_size, normalize,
                         shuffle=shuffle, generator=generator)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


#: what a timed run is measured with: the wall clock, or (``--clock cpu``) this process's CPU time,
#: which other processes on a shared machine do not inflate (with one torch thread and no DataLoader
#: workers, whose time it would not count)
CLOCKS = {"wall": time.perf_counter, "cpu": time.process_time}
_clock = CLOCKS["wall"]


def _interleaved(runs: dict[str, Callable[[], int]], reps: int, device: torch.device,
                 warm_up: bool = True) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """images/s of ``reps`` timed calls of each run (which returns images processed), after one warm-up
    call each unless the caller made it, and the minor page faults per image of each call. The runs
    take turns within each repetition, so a drift in the machine's speed (turbo, caches, another
    process) hits all of them alike instead of whichever happens to run last."""
    for run in runs.values() if warm_up else ():
        run()
    rates: dict[str, list[float]] = {name: [] for name in runs}
    faults: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(reps):
        for name, run in runs.items():
            _sync(device)
            faults_before, start = _minor_faults(), _clock()
            images = run()
            _sync(device)
            rates[name].append(images / (_clock() - start))
            faults[name].append((_minor_faults() - faults_before) / images)
    return rates, faults


def _figures(runs: list[float]) -> dict:
    return {"median": statistics.median(runs), "min": min(runs), "max": max(runs), "runs": runs}


def paired_ratio(numerator: list[float], denominator: list[float]) -> dict:
    """Median, min, max and every value of the per-repetition ratios. The runs of one repetition
    ran back to back, so each ratio compares them under the same machine speed; on a shared VM,
    whose speed drifts by 10-20 % from one repetition to the next, the ratio of two separately
    taken medians mixes repetitions and drifts with it."""
    return _figures([a / b for a, b in zip(numerator, denominator, strict=True)])


def bench_case(data: str, model_name: str, batch_size: int, raw, peer_root: Path, steps: int, reps: int,
               workers: list[int], device: torch.device, arch: str = "lenet") -> dict:
    channels = raw.train_x.shape[1]
    cfg = job_config(model_name, data, arch)
    n = steps * batch_size
    runs: dict[str, Callable[[], int]] = {}

    limit_model, limit_optimizer = _set_up(cfg, channels, device)
    xb, yb = next(iter(_project_batches(cfg, raw, batch_size, batch_size, device, shuffle=False)))

    def limit() -> int:
        for _ in range(steps):
            _step(limit_model, limit_optimizer, xb, yb)
        return n

    runs["limit"] = limit

    model, optimizer = _set_up(cfg, channels, device)
    batches = _project_batches(cfg, raw, n, batch_size, device)
    runs["project"] = lambda: (train_epoch(model, batches, optimizer, progress=False), n)[1]

    def data_path() -> int:  # the project's batches alone: shuffle, slice, normalise, no model
        for x, _ in batches:
            x.sum()  # touch the batch so lazy work cannot hide
        _sync(device)
        return n

    runs["data_path"] = data_path

    dataset = _peer_dataset(cfg, raw, peer_root)
    loaders = []
    peers = [(f"peer_w{w}", w, False) for w in workers] + [("peer_w0_same_settings", 0, True)]
    for name, w, as_train_py in peers:
        peer_model, peer_optimizer = _set_up(cfg, channels, device, as_train_py)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch_size, shuffle=True, num_workers=w,
                                             persistent_workers=w > 0, pin_memory=device.type == "cuda")
        loaders.append(loader)

        def peer(loader=loader, peer_model=peer_model, peer_optimizer=peer_optimizer) -> int:
            seen = 0
            for i, (xp, yp) in enumerate(loader):
                if i == steps:
                    break
                _step(peer_model, peer_optimizer, xp.to(device, non_blocking=True), yp.to(device, non_blocking=True))
                seen += len(yp)
            return seen

        runs[name] = peer

    results, faults = _interleaved(runs, reps, device)
    del loaders

    summary = {name: {**_figures(r), "page_faults_per_step": statistics.median(faults[name]) * batch_size}
               for name, r in results.items()}
    best_peer = max((f"peer_w{w}" for w in workers), key=lambda name: summary[name]["median"])
    project = results["project"]
    ratios = {
        "vs_peer": paired_ratio(project, results[best_peer]),
        "vs_peer_same_settings": paired_ratio(project, results["peer_w0_same_settings"]),
        "vs_limit": paired_ratio(project, results["limit"]),
        # the project loop's time its data path takes, timed alone: much less noisy than
        # project/limit, two runs of nearly the same work that each vary by 10-20 %
        "data_path_share": paired_ratio(project, results["data_path"]),
    }
    return {
        "data": data, "arch": arch, "model": model_name, "batch_size": batch_size, "steps": steps, "reps": reps,
        "images_per_s": summary, "best_peer": best_peer, "ratios": ratios,
        "ratio_vs_peer": ratios["vs_peer"]["median"],
        "ratio_vs_peer_same_settings": ratios["vs_peer_same_settings"]["median"],
        "ratio_vs_limit": ratios["vs_limit"]["median"],
        "data_path_share": ratios["data_path_share"]["median"],
    }


# ---------------------------------------------------------------- speed options

SPEED_OPTIONS = ("base", "fast_layers", "channels_last", "fused", "bf16_autocast", "compile", "train_defaults")


def _option_loop(option: str, data: str, model_name: str, raw, n: int, batch_size: int,
                 device: torch.device, arch: str = "lenet") -> Callable[[], int]:
    """The project's train_epoch on the plain set-up (torch's layers, NCHW, torch's optimizer
    defaults) with one speed option switched on (``fast_layers``: the project's FastCPUDropout and
    FastCPUMaxPool2d), or on train.py's own set-up (``train_defaults``); returns the timed callable."""
    cfg = job_config(model_name, data, arch)
    model, optimizer = _set_up(cfg, raw.train_x.shape[1], device, as_train_py=option == "train_defaults",
                               channels_last=True if option == "channels_last" else None,
                               fused=True if option == "fused" else None,
                               fast_layers=True if option == "fast_layers" else None)
    forward = torch.compile(model) if option == "compile" else model
    batches = _project_batches(cfg, raw, n, batch_size, device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=option == "bf16_autocast")

    def run() -> int:
        with autocast:
            train_epoch(forward, batches, optimizer, progress=False)
        return n

    return run


def bench_options(data: str, model_name: str, batch_size: int, raw, steps: int, reps: int,
                  device: torch.device, options: list[str] = list(SPEED_OPTIONS), arch: str = "lenet") -> dict:
    """images/s of the project loop under each speed option, repetitions interleaved so that drift in
    the machine's speed hits every option alike; compile and warm-up time are excluded."""
    n = steps * batch_size
    loops, warmup = {}, {}
    for option in options:
        start = time.perf_counter()
        loops[option] = _option_loop(option, data, model_name, raw, n, batch_size, device, arch)
        loops[option]()
        warmup[option] = time.perf_counter() - start
    rates, _ = _interleaved(loops, reps, device, warm_up=False)  # the timed first epochs were the warm-up
    return {"data": data, "arch": arch, "model": model_name, "batch_size": batch_size, "steps": steps, "reps": reps,
            "options": {option: {**_figures(r), "speedup_vs_base": paired_ratio(r, rates["base"])["median"],
                                 "first_epoch_s": warmup[option]}
                        for option, r in rates.items()}}


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


# ---------------------------------------------------------------- whole jobs and sweeps


def _run_train(args: list[str], env: dict) -> tuple[float, float, int]:
    """(wall seconds, peak RSS in MB, minor page faults) of one ``train.py`` process."""
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "train.py"), *args], cwd=ROOT, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    stderr = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"train.py {' '.join(args)} failed:\n{stderr[-2000:]}")
    return time.perf_counter() - start, usage.ru_maxrss / 1024, usage.ru_minflt


def _jobs(sweep_dir: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob("*/metrics.json"))]


def bench_sweeps(work: Path, env: dict, epochs: int, dataset: str = "mnist",
                 single_datasets: tuple[str, ...] = ("mnist", "cifar10"), overrides: tuple[str, ...] = ()) -> dict:
    """Multirun overhead, sequential vs 2 parallel jobs, probe overhead and peak RSS of single jobs.

    ``sequential_training_only`` repeats the sequential sweep without the measurements each job
    makes after training (BatchNorm re-estimation with its second test pass, the invariance
    probes), which separates the sweep machinery's overhead from that measurement work.
    ``overrides`` go to every train.py run (the tests shrink the data with them)."""
    grid = ["model=maxpool,strided", "seed=0,1,2,3", f"dataset={dataset}", f"trainer.epochs={epochs}",
            "trainer.progress=false", *overrides]
    report: dict = {}
    for name, extra in (("sequential", []),
                        ("sequential_training_only", ["trainer.bn_recalibration=false", "invariance.enabled=false"]),
                        ("parallel_2x1", ["hydra/launcher=local_parallel", "hydra.launcher.n_jobs=2"])):
        sweep_dir = work / name
        parallel = "hydra/launcher=local_parallel" in extra
        wall, rss, _ = _run_train(["-m", *grid, *extra, f"hydra.sweep.dir={sweep_dir}"], env)
        jobs = _jobs(sweep_dir)
        job_time = sum(j["job_time_s"] for j in jobs)
        train_time = sum(j["train_time_s"] for j in jobs)
        probes = sum(j.get("invariance", {}).get("time_s", 0.0) for j in jobs)
        phases = {phase: sum(j["time_breakdown_s"][phase] for j in jobs) for phase in jobs[0]["time_breakdown_s"]}
        report[name] = {
            "jobs": len(jobs), "wall_s": wall, "jobs_per_hour": 3600 * len(jobs) / wall,
            "sum_job_time_s": job_time, "sum_train_time_s": train_time,
            "wall_over_job_time": wall / job_time, "wall_over_train_time": wall / train_time,
            "probe_share_of_job_time": probes / job_time, "torch_threads": jobs[0]["environment"]["torch_threads"],
            "peak_rss_mb": rss,
            # where the wall time went: the jobs' phases summed and, for one job at a time, what ran
            # outside any job (interpreter and imports, Hydra's start-up and compositions, its files)
            "sum_phase_s": phases, "outside_jobs_s": None if parallel else wall - job_time,
        }
        print(f"{name:<24} {len(jobs)} jobs: wall {wall:.1f} s, {report[name]['jobs_per_hour']:.0f} jobs/h, "
              f"wall / sum(job time) {report[name]['wall_over_job_time']:.3f}, wall / sum(train time) "
              f"{report[name]['wall_over_train_time']:.3f}, probes {100 * report[name]['probe_share_of_job_time']:.1f}% "
              f"of job time, {report[name]['torch_threads']} thread(s)/job", flush=True)
        print(f"{'':<24} seconds: " + ("" if parallel else f"outside jobs {wall - job_time:.1f}, ")
              + ", ".join(f"{phase} {seconds:.1f}" for phase, seconds in phases.items()), flush=True)
    for data in single_datasets:
        for keep in (True, False):  # trainer.keep_freed_memory: the default, then the C library's allocator
            name = f"single_{data}" + ("" if keep else "_system_allocator")
            wall, rss, faults = _run_train([f"dataset={data}", f"trainer.epochs={epochs}", "trainer.progress=false",
                                            f"trainer.keep_freed_memory={str(keep).lower()}", *overrides,
                                            f"hydra.run.dir={work / name}"], env)
            job = json.loads((work / name / "metrics.json").read_text())
            epoch_s = sum(h["epoch_time_s"] for h in job["history"])
            report[name] = {"wall_s": wall, "peak_rss_mb": rss, "page_faults": faults, "epoch_time_s": epoch_s,
                            "keep_freed_memory": keep}
            print(f"single {data} job ({epochs} epoch(s), keep_freed_memory={keep}): wall {wall:.1f} s, training "
                  f"epochs {epoch_s:.1f} s, peak RSS {rss:.0f} MB, {faults} page faults", flush=True)
    return report


def _run_options(args: argparse.Namespace, raws: dict, device: torch.device, options: list[str]) -> list[dict]:
    print(f"{'data':<8} {'model':<8} {'batch':>5} | " + " ".join(f"{o:>13}" for o in options)
          + f"   (images/s, median of {args.reps}; speed-up vs base)")
    cases = []
    for data in args.data:
        for arch in args.arch:
            for model_name in args.models:
                for bs in args.batch_sizes:
                    case = bench_options(data, model_name, bs, raws[data], args.steps, args.reps, device, options, arch)
                    cases.append(case)
                    cells = " ".join(f"{o['median']:>6.0f} ({o['speedup_vs_base']:.2f})"
                                     for o in case["options"].values())
                    print(f"{data:<8} {_model_label(arch, model_name):<8} {bs:>5} | {cells}", flush=True)
    return cases


def _model_label(arch: str, model_name: str) -> str:
    return model_name if arch == "lenet" else f"{arch}/{model_name}"


def _rate(figures: dict) -> str:
    spread = 50 * (figures["max"] - figures["min"]) / figures["median"]
    return f"{figures['median']:>6.0f}±{spread:<2.0f}%"


def _ratio(ratio: dict) -> str:
    return f"{ratio['median']:>5.2f} [{ratio['min']:.2f}-{ratio['max']:.2f}]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m poolstudy.bench", description=__doc__.splitlines()[0])
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
    global _clock
    _clock = CLOCKS[args.clock]
    if args.threads:
        torch.set_num_threads(args.threads)
    from poolstudy.training.run import resolve_device

    try:
        device = resolve_device(args.device)
        cache = Path(args.cache_dir).expanduser()
        raws = {d: load_raw(d, Path(args.data_dir), cache) for d in args.data}
    except PoolStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    kept = args.allocator == "keep" and keep_freed_memory()
    cases = []
    if args.clock == "cpu" and device.type != "cpu":
        print("error: --clock cpu measures the CPU's time; use --device cpu", file=sys.stderr)
        return 2
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
        report["options"] = _run_options(args, raws, device, options)
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
                                      args.reps, args.workers, device, arch)
                    case["data_source"] = label
                    cases.append(case)
                    ips, ratios = case["images_per_s"], case["ratios"]
                    rates = " ".join(_rate(ips[name]) for name in (*(f"peer_w{w}" for w in args.workers),
                                                                    "peer_w0_same_settings", "project", "limit"))
                    print(f"{data:<8} {_model_label(arch, model_name):<8} {bs:>5} | {rates} | "
                          f"{_ratio(ratios['vs_peer'])} {case['ratio_vs_peer_same_settings']:>8.2f} "
                          f"{_ratio(ratios['vs_limit'])} {100 * case['data_path_share']:>8.1f}% "
                          f"{ips['project']['page_faults_per_step']:>6.0f}", flush=True)
    report.update({"cases": cases, "peak_memory": peak_memory(device)})
    print(f"peak memory: {report['peak_memory']}; machine: {report['machine']}")
    if args.json:
        atomic_write_json(args.json, report)
    return 0


if __name__ == "__main__":
    sys.exit(main())
