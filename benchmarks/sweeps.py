"""Whole ``train.py`` runs (``python -m benchmarks.bench --sweeps``): multirun overhead, sequential
against two parallel jobs, the share of the probes, and peak memory and page faults of single jobs
with and without ``trainer.keep_freed_memory``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchmarks.common import ROOT
from poolstudy.jobfolder import METRICS_FILE


def run_train(args: list[str], env: dict) -> tuple[float, float, int]:
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
    return [json.loads(p.read_text()) for p in sorted(sweep_dir.glob(f"*/{METRICS_FILE}"))]


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
        wall, rss, _ = run_train(["-m", *grid, *extra, f"hydra.sweep.dir={sweep_dir}"], env)
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
            wall, rss, faults = run_train([f"dataset={data}", f"trainer.epochs={epochs}", "trainer.progress=false",
                                            f"trainer.keep_freed_memory={str(keep).lower()}", *overrides,
                                            f"hydra.run.dir={work / name}"], env)
            job = json.loads((work / name / METRICS_FILE).read_text())
            epoch_s = sum(h["epoch_time_s"] for h in job["history"])
            report[name] = {"wall_s": wall, "peak_rss_mb": rss, "page_faults": faults, "epoch_time_s": epoch_s,
                            "keep_freed_memory": keep}
            print(f"single {data} job ({epochs} epoch(s), keep_freed_memory={keep}): wall {wall:.1f} s, training "
                  f"epochs {epoch_s:.1f} s, peak RSS {rss:.0f} MB, {faults} page faults", flush=True)
    return report
