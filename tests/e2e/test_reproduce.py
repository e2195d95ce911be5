"""python -m poolstudy.reproduce: re-run a recorded job and compare it with its record.

Comparison logic on constructed metrics (identical / within noise naming the condition / beyond
noise, with the noise rule's numbers recomputed here), the environment record's parsers, bad
input, and end-to-end runs: a fresh synthetic job, and the committed record
docs/studies/seed_replication/0."""

from __future__ import annotations

import copy
import json
import math
import os
import re
import statistics
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from helpers import ROOT, SHARED_DATA, require_real, trainpy
from poolstudy.results.reproducibility import (BEYOND_NOISE, IDENTICAL, TOLERANCE_SDS, WITHIN_NOISE, compare_configs,
                                                compare_runs, seed_noise)
from poolstudy.reproduce import default_out_dir, load_record, main, sibling_seeds
from poolstudy.utils import environment

COMMITTED = ROOT / "docs" / "studies" / "seed_replication" / "0"

NEW_ENV = {
    "python": "3.11.7", "platform": "Linux", "torch_threads": 1, "device": "cpu", "device_name": "Xeon",
    "packages": {"torch": "2.14.1", "numpy": "2.4.6", "poolstudy": "0.1.0"},
    "deterministic": True, "float32_matmul_precision": "highest", "torch_build": "2.14.1+cpu (5c4886908584)",
    "cpu": {"model": "Xeon", "id": "GenuineIntel family 6 model 143 stepping 8",
            "isa_flags": ["avx", "avx2", "fma", "avx512f"], "logical_cpus": 2},
    "cpu_capability": "AVX512", "float_env": {},
    "libraries": {"blas": "mkl", "lapack": "mkl", "mkl": "2024.2 20240605", "onednn": "3.12.0 80afa71",
                  "parallel_backend": "OpenMP"},
    "cuda": None, "git_commit": "a" * 40, "git_dirty": False,
}


def metrics(test_acc=0.99, val_acc=0.988, params=52174, env=None, seed=0) -> dict:
    return {
        "status": "complete", "val_acc": val_acc, "val_loss": 0.036, "test_acc": test_acc, "test_loss": 0.029,
        "bn_recalibrated": True, "val_acc_raw": 0.97, "val_loss_raw": 0.09, "test_acc_raw": 0.975,
        "test_loss_raw": 0.078, "params": params, "macs": 1021200, "train_time_s": 71.0, "images_per_s": 4000.0,
        "epochs": 1, "seed": seed, "job_time_s": 80.0, "time_breakdown_s": {"setup": 1.0, "training": 71.0},
        "dataset": {"name": "mnist", "source": "MNIST IDX files in /data/MNIST/raw", "train": 54000, "val": 6000,
                    "test": 10000, "mean": [0.1307], "std": [0.3081]},
        "history": [{"epoch": 1, "train_loss": 0.781, "train_acc": 0.797, "val_loss": 0.36, "val_acc": 0.881,
                     "lr": 0.00012, "epoch_time_s": 14.5}],
        "hpo": None, "shift_consistency": 0.956, "acc_vs_shift": {"0": 0.9925, "1": 0.99},
        "prediction_distance_1px": 0.0124,
        "invariance": {"enabled": True, "test_images": 2000, "time_s": 3.2},
        "environment": copy.deepcopy(NEW_ENV if env is None else env),
    }


def binomial(p: float, n: int) -> float:
    p = (p * n + 1) / (n + 2)
    return math.sqrt(p * (1 - p) / n)


# -- comparison logic ---------------------------------------------------------------------------

def test_identical_when_only_timings_and_the_data_folder_differ():
    rec, new = metrics(), metrics()
    new.update(train_time_s=50.0, images_per_s=9000.0, job_time_s=60.0, time_breakdown_s={"setup": 9.0})
    new["history"][0]["epoch_time_s"] = 9.9
    new["invariance"]["time_s"] = 1.0
    new["dataset"]["source"] = "MNIST IDX files in /elsewhere/MNIST/raw"
    cmp = compare_runs(rec, new)
    assert cmp.verdict == IDENTICAL and cmp.exit_code == 0
    assert cmp.first_difference is None and cmp.fixed_differences == []
    assert cmp.conditions == []
    assert cmp.notes == ["data read from MNIST IDX files in /elsewhere/MNIST/raw (record: MNIST IDX files in "
                         "/data/MNIST/raw)"]


def test_within_noise_names_the_recorded_conditions_that_differ():
    rec = metrics(test_acc=0.9908)
    env = {**copy.deepcopy(NEW_ENV), "cpu_capability": "AVX2", "torch_threads": 2,
           "float_env": {"ATEN_CPU_CAPABILITY": "avx2"}}
    new = metrics(test_acc=0.9898, env=env)
    new["history"][0]["train_loss"] = 0.78119
    cmp = compare_runs(rec, new)
    assert cmp.verdict == WITHIN_NOISE and cmp.exit_code == 3
    assert cmp.because == "torch CPU capability AVX512 vs AVX2; threads 1 vs 2; ATEN_CPU_CAPABILITY (unset) vs avx2"
    assert cmp.unrecorded == []
    assert cmp.first_difference.path == "history.0.train_loss"  # the earliest in training
    assert cmp.float_differences == 2 and cmp.fixed_differences == []
    test_acc = next(f for f in cmp.judged if f.path == "test_acc")
    # no siblings: the binomial standard error of 10,000 test images
    assert test_acc.sigma == pytest.approx(binomial(0.9908, 10000)) and test_acc.sigma_source == "binomial, n=10000"
    assert test_acc.delta == pytest.approx(0.001) and test_acc.within is True
    assert next(f for f in cmp.judged if f.path == "test_loss").within is True  # equal: within, though not judged


def test_old_record_within_noise_because_of_an_unrecorded_condition():
    old_env = {k: NEW_ENV[k] for k in ("python", "platform", "packages", "torch_threads", "device", "device_name",
                                       "git_commit", "git_dirty")}
    rec, new = metrics(test_acc=0.9908, env=old_env), metrics(test_acc=0.9898)
    cmp = compare_runs(rec, new)
    assert cmp.verdict == WITHIN_NOISE
    lacks = ["torch CPU capability", "CPU", "CPU vector extensions", "torch build", "oneDNN", "MKL", "BLAS",
             "parallel backend", "deterministic", "float32 matmul precision", "float-path environment variables"]
    assert cmp.unrecorded == lacks
    assert cmp.because == f"of an unrecorded condition (the record lacks: {', '.join(lacks)})"
    # a differing commit is named, with the conditions that could not be compared
    new["environment"]["git_commit"] = "b" * 40
    cmp = compare_runs(rec, new)
    assert cmp.because == f"code aaaaaaa vs bbbbbbb (or a condition not recorded: the record lacks: {', '.join(lacks)})"
    assert any("--code record" in note for note in cmp.notes)
    # ... unless the re-run ran the record's own commit
    assert compare_runs(rec, new, code_from_record=True).because.startswith("of an unrecorded condition")


def test_beyond_noise_at_the_tolerance_from_sibling_seeds():
    siblings = [metrics(test_acc=a, seed=s) for s, a in zip((1, 2, 3, 4), (0.9918, 0.9894, 0.9914, 0.9923))]
    rec = metrics(test_acc=0.9908)
    sd = statistics.stdev([0.9908, 0.9918, 0.9894, 0.9914, 0.9923])  # 0.00112
    assert sd > binomial(0.9908, 10000)  # so the seeds' spread is the noise
    assert seed_noise("test_acc", rec, siblings) == (pytest.approx(sd), "5 seeds")
    tolerance = TOLERANCE_SDS * sd
    inside, outside = metrics(test_acc=0.9908 - 0.99 * tolerance), metrics(test_acc=0.9908 - 1.01 * tolerance)
    assert compare_runs(rec, inside, siblings).verdict == WITHIN_NOISE
    cmp = compare_runs(rec, outside, siblings)
    assert cmp.verdict == BEYOND_NOISE and cmp.exit_code == 4 and cmp.because is None
    bad = [f.path for f in cmp.judged if f.within is False]
    assert bad == ["test_acc"]
    assert next(f for f in cmp.judged if f.path == "test_acc").tolerance == pytest.approx(3 * math.sqrt(2) * sd)


def test_small_seed_spread_is_floored_by_the_binomial_error_and_losses_need_siblings():
    rec = metrics(test_acc=0.99)
    siblings = [metrics(test_acc=0.99, seed=1), metrics(test_acc=0.9901, seed=2)]
    assert seed_noise("test_acc", rec, siblings) == (pytest.approx(binomial(0.99, 10000)), "binomial, n=10000")
    assert seed_noise("acc_vs_shift.0", rec, []) == (pytest.approx(binomial(0.9925, 2000)), "binomial, n=2000")
    assert seed_noise("test_loss", rec, []) == (None, "no sibling seeds")
    assert seed_noise("test_loss", rec, [metrics(seed=1), metrics(seed=2)]) == (None, "sibling seeds all equal")
    new = metrics(test_acc=0.99)
    new["test_loss"] = 5.0  # not judged without siblings, but an accuracy is judged and equal
    assert compare_runs(rec, new).verdict == WITHIN_NOISE
    siblings = [dict(metrics(seed=s), test_loss=v) for s, v in ((1, 0.030), (2, 0.028))]
    assert compare_runs(rec, new, siblings).verdict == BEYOND_NOISE


def test_a_fixed_or_missing_figure_is_beyond_noise_whatever_the_accuracies():
    rec = metrics()
    cmp = compare_runs(rec, metrics(params=52175))
    assert cmp.verdict == BEYOND_NOISE and [f.path for f in cmp.fixed_differences] == ["params"]
    new = metrics()
    del new["shift_consistency"]
    cmp = compare_runs(rec, new)
    assert cmp.verdict == BEYOND_NOISE and [f.path for f in cmp.fixed_differences] == ["shift_consistency"]
    new = metrics()
    new["history"][0]["lr"] = 0.00013  # the schedule does not depend on floating-point order
    assert compare_runs(rec, new).verdict == BEYOND_NOISE
    new = metrics()
    new["bn_recalibrated"] = 1  # True == 1 in Python, not in a record
    assert compare_runs(rec, new).verdict == BEYOND_NOISE


def test_config_differences_are_conditions_except_where_and_how_it_ran():
    rec = {"seed": 0, "data_dir": "/a", "trainer": {"threads": None, "progress": "auto", "eval_batch_size": 1024},
           "checkpoint": {"keep": False}}
    new = {"seed": 0, "data_dir": "/b", "trainer": {"threads": 1, "progress": False, "eval_batch_size": 512},
           "checkpoint": {"keep": True}}
    diffs = compare_configs(rec, new)
    assert [str(d) for d in diffs] == ["config trainer.eval_batch_size 1024 vs 512"]
    cmp = compare_runs(metrics(test_acc=0.99), metrics(test_acc=0.9899), config_differences=diffs)
    assert cmp.verdict == WITHIN_NOISE and cmp.because == "config trainer.eval_batch_size 1024 vs 512"


# -- the environment record --------------------------------------------------------------------

CPUINFO_X86 = """processor\t: 0
vendor_id\t: GenuineIntel
cpu family\t: 6
model\t\t: 143
model name\t: Intel(R) Xeon(R) Platinum 8480+
stepping\t: 8
flags\t\t: fpu sse4_2 avx avx2 fma f16c avx512f avx512dq avx512bw avx512vl avx512_vnni avx512_bf16 amx_tile amx_bf16

processor\t: 1
model name\t: something else
"""
CPUINFO_ARM = """processor\t: 0
BogoMIPS\t: 50.00
Features\t: fp asimd evtstrm aes sve
CPU implementer\t: 0x41
CPU part\t: 0xd0c
"""


def test_cpuinfo_gives_the_model_and_the_vector_extensions_kernels_are_chosen_by():
    assert environment.parse_cpuinfo(CPUINFO_X86) == {
        "model": "Intel(R) Xeon(R) Platinum 8480+", "id": "GenuineIntel family 6 model 143 stepping 8",
        "isa_flags": ["sse4_2", "avx", "avx2", "fma", "f16c", "avx512f", "avx512dq", "avx512bw", "avx512vl",
                      "avx512_vnni", "avx512_bf16", "amx_tile", "amx_bf16"]}
    assert environment.parse_cpuinfo(CPUINFO_ARM) == {"model": None, "id": "implementer 0x41 part 0xd0c",
                                                      "isa_flags": ["asimd", "sve"]}


def test_torch_config_gives_blas_mkl_onednn_versions():
    show = ("  - Intel(R) oneAPI Math Kernel Library Version 2024.2-Product Build 20240605 for Intel(R) 64\n"
            "  - Intel(R) MKL-DNN v3.12.0 (Git Hash 80afa71049cd69a3df32adcccb623b12cd7baa22)\n"
            "  - Build settings: BLAS_INFO=mkl, BUILD_TYPE=Release, LAPACK_INFO=mkl, PERF_WITH_AVX=1\n")
    assert environment.parse_torch_config(show, "ATen parallel backend: OpenMP\n") == {
        "blas": "mkl", "lapack": "mkl", "mkl": "2024.2 20240605", "onednn": "3.12.0 80afa71",
        "parallel_backend": "OpenMP"}
    assert environment.parse_torch_config("  - Build settings: BLAS_INFO=open, \n", "") == {
        "blas": "open", "lapack": None, "mkl": None, "onednn": None, "parallel_backend": None}


def test_environment_record_of_this_process(monkeypatch):
    # torch fixes its capability at its first use in a process: fix it before the variable is set,
    # or every later test in this process would run the DEFAULT kernels
    capability = torch.backends.cpu.get_cpu_capability()
    environment.machine_record.cache_clear()
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    record = environment.environment_record(torch.device("cpu"))
    assert record["float_env"] == {"ATEN_CPU_CAPABILITY": "default"}  # as set, though too late to matter here
    assert record["cpu_capability"] == capability == torch.backends.cpu.get_cpu_capability()
    assert record["torch_threads"] == torch.get_num_threads()
    assert record["deterministic"] == torch.are_deterministic_algorithms_enabled()
    assert record["torch_build"].startswith(torch.__version__) and record["cuda"] is None
    assert record["libraries"]["onednn"] == (None if not torch.backends.mkldnn.is_available()
                                             else record["libraries"]["onednn"])
    if Path("/proc/cpuinfo").is_file():
        assert record["cpu"] == {**environment.parse_cpuinfo(Path("/proc/cpuinfo").read_text()),
                                 "logical_cpus": os.cpu_count()}
    environment.environment_record(torch.device("cpu"))
    assert environment.machine_record.cache_info().misses == 1  # computed once per process
    environment.machine_record.cache_clear()


def test_cuda_record_names_gpu_cuda_cudnn_and_tf32(monkeypatch):
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA H200")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (9, 0))
    monkeypatch.setattr(torch.backends.cudnn, "version", lambda: 92400)
    record = environment.environment_record(torch.device("cuda:0"))
    assert record["device"] == "cuda:0" and record["device_name"] == "NVIDIA H200"
    assert record["cuda"] == {"cuda": torch.version.cuda, "cudnn": 92400, "gpu": "NVIDIA H200", "gpu_capability": "9.0",
                              "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
                              "tf32_cudnn": torch.backends.cudnn.allow_tf32,
                              "cudnn_benchmark": torch.backends.cudnn.benchmark}
    assert environment.environment_record(torch.device("cpu"))["cuda"] is None


def test_cuda_rerun_is_within_noise_because_of_its_kernels_or_a_named_gpu_condition():
    cuda = {"cuda": "13.0", "cudnn": 92400, "gpu": "NVIDIA H200", "gpu_capability": "9.0", "tf32_matmul": False,
            "tf32_cudnn": True, "cudnn_benchmark": False}
    env = {**NEW_ENV, "device": "cuda:0", "device_name": "NVIDIA H200", "cuda": cuda}
    rec, new = metrics(test_acc=0.99, env=env), metrics(test_acc=0.9899, env=env)
    cmp = compare_runs(rec, new)
    assert cmp.verdict == WITHIN_NOISE
    assert cmp.because == "of non-deterministic cuda:0 kernels (never guaranteed bit-identical)"
    new["environment"]["cuda"] = {**cuda, "gpu": "NVIDIA A100", "cudnn": 91000}
    assert compare_runs(rec, new).because == "GPU NVIDIA H200 vs NVIDIA A100; cuDNN 92400 vs 91000"


# -- the command: bad input, dry run -----------------------------------------------------------

def write_job(folder: Path, config: dict, metrics_: dict | None) -> Path:
    (folder / ".hydra").mkdir(parents=True)
    (folder / ".hydra" / "config.yaml").write_text(yaml.safe_dump(config))
    if metrics_ is not None:
        (folder / "metrics.json").write_text(json.dumps(metrics_))
    return folder


def test_siblings_are_the_other_seeds_of_the_same_config_once_each(tmp_path):
    config = {"seed": 0, "model": {"type": "maxpool"}, "data_dir": "/a", "trainer": {"threads": None}}
    rec = write_job(tmp_path / "0", config, metrics(seed=0))
    write_job(tmp_path / "1", {**config, "seed": 1, "data_dir": "/b"}, metrics(test_acc=0.91, seed=1))
    write_job(tmp_path / "1b", {**config, "seed": 1}, metrics(test_acc=0.92, seed=1))  # seed 1 again: once
    write_job(tmp_path / "2", {**config, "seed": 2, "model": {"type": "strided"}}, metrics(seed=2))
    write_job(tmp_path / "3", {**config, "seed": 3}, None)  # not finished
    write_job(tmp_path / "4", {**config, "seed": 0}, metrics(test_acc=0.93, seed=0))  # the record's own seed
    (tmp_path / "notes").mkdir()
    assert [m["test_acc"] for m in sibling_seeds(load_record(rec))] == [0.91]


def test_bad_input_exits_2_with_one_message(tmp_path, capsys):
    unfinished = write_job(tmp_path / "job", {"seed": 0}, {"status": "running"})
    assert main([str(unfinished)]) == 2
    err = capsys.readouterr().err
    assert "not a complete record" in err and str(unfinished / "metrics.json") in err
    assert main([str(tmp_path / "nope")]) == 2
    assert "is not a folder" in capsys.readouterr().err
    job = write_job(tmp_path / "done", {"seed": 0}, metrics())
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "metrics.json").write_text("{}")
    assert main([str(job), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert "already exists and is not an empty folder" in err and "--out outputs/reproduce/" in err
    assert main([str(job), "--out", str(job / "inside")]) == 2
    assert "is the record's own folder or inside it" in capsys.readouterr().err
    assert main([str(job), "--threads", "0"]) == 2
    assert "--threads 0" in capsys.readouterr().err
    unknown = {**NEW_ENV, "git_commit": "0123456" + "0" * 33}
    job = write_job(tmp_path / "unknown_commit", {"seed": 0}, metrics(env=unknown))
    assert main([str(job), "--code", "record", "--out", str(tmp_path / "new")]) == 2
    err = capsys.readouterr().err
    assert "commit 0123456" in err and "is not in the git repository" in err and "--code current" in err
    assert not (tmp_path / "new").exists()
    assert sorted(p.name for p in job.iterdir()) == [".hydra", "metrics.json"]  # the record untouched


def test_dry_run_prints_the_exact_command_and_runs_nothing(tmp_path, capsys):
    out = tmp_path / "rerun"
    assert main([str(COMMITTED), "--out", str(out), "--dry-run"]) == 0
    printed = capsys.readouterr().out
    command = re.search(r"^command: (.*)$", printed, re.M).group(1)
    assert command.split() == [sys.executable, str(ROOT / "train.py"), "--config-path", str(COMMITTED / ".hydra"),
                               "--config-name", "config", f"hydra.run.dir={out}", "++trainer.threads=1",
                               "++trainer.device=cpu"]
    assert f"re-run: {out}" in printed and not out.exists()
    # options and train.py overrides in any order, as the README shows them
    assert main([str(COMMITTED), "--threads", "2", "data_dir=/data dir", "--out", str(out), "--dry-run"]) == 0
    command = re.search(r"^command: (.*)$", capsys.readouterr().out, re.M).group(1)
    assert command.endswith(f"hydra.run.dir={out} ++trainer.threads=2 ++trainer.device=cpu 'data_dir=/data dir'")
    record = load_record(COMMITTED)
    assert str(default_out_dir(record)).startswith("outputs/reproduce/seed_replication-0_")


@pytest.mark.slow
def test_a_failing_rerun_exits_5_and_compares_nothing(tmp_path, cache_dir):
    out = tmp_path / "rerun"
    proc = reproduce(str(COMMITTED), "--out", str(out), f"data_dir={tmp_path / 'empty'}", cache_dir=cache_dir)
    assert proc.returncode == 5, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "MNIST not found" in proc.stderr  # train.py's own message, shown as it is
    assert f"the re-run failed (exit 2) and wrote no complete metrics.json in {out}" in proc.stderr
    assert "Traceback" not in proc.stderr and not (out / "reproduce.json").exists()


# -- end to end --------------------------------------------------------------------------------

TINY = ["dataset=shapes", "trainer.epochs=1", "dataset.train_subset=800", "dataset.test_subset=300",
        "invariance.subset=100", "trainer.progress=false"]


def reproduce(*args: str, cache_dir: Path, env: dict | None = None, timeout: int = 900):
    full_env = {**os.environ, "POOLSTUDY_DATA": str(SHARED_DATA), "POOLSTUDY_CACHE": str(cache_dir), **(env or {})}
    return subprocess.run([sys.executable, "-m", "poolstudy.reproduce", *args], cwd=ROOT, env=full_env,
                          capture_output=True, text=True, timeout=timeout)


def verdict_line(stdout: str) -> str:
    return re.search(r"^verdict: (.*)$", stdout, re.M).group(1)


@pytest.fixture(scope="module")
def tiny_record(tmp_path_factory, cache_dir) -> Path:
    """A fresh synthetic-data job (one epoch, a few seconds), recorded once for the tests below."""
    record = tmp_path_factory.mktemp("tiny") / "record"
    proc = trainpy.run([*TINY, f"hydra.run.dir={record}"], cwd=ROOT,
                       env={**os.environ, "POOLSTUDY_CACHE": str(cache_dir)}, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return record


@pytest.mark.slow
def test_fresh_job_reproduces_identically_and_the_printed_command_runs(tiny_record, cache_dir, tmp_path):
    record = tiny_record
    before = {p.relative_to(record): p.read_bytes() for p in record.rglob("*") if p.is_file()}
    recorded = json.loads((record / "metrics.json").read_text())
    assert recorded["environment"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()

    proc = reproduce(str(record), "--out", str(tmp_path / "again"), cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert verdict_line(proc.stdout) == "identical (every recorded figure equal, timings aside)"
    report = json.loads((tmp_path / "again" / "reproduce.json").read_text())
    assert report["verdict"] == IDENTICAL and report["conditions_differing"] == []
    assert {p.relative_to(record): p.read_bytes() for p in record.rglob("*") if p.is_file()} == before  # untouched

    # the --dry-run command (here the --code record form, which exports the record's commit) runs as typed
    proc = reproduce(str(record), "--out", str(tmp_path / "typed"), "--code", "record", "--dry-run",
                     cache_dir=cache_dir)
    assert proc.returncode == 0, proc.stderr
    command = re.search(r"^command: (.*)$", proc.stdout, re.M).group(1)
    assert command.startswith("CODE=$(mktemp -d) && git -C ")
    typed = subprocess.run(["bash", "-c", command], cwd=tmp_path, capture_output=True, text=True, timeout=900,
                           env={**os.environ, "POOLSTUDY_CACHE": str(cache_dir)})
    assert typed.returncode == 0, typed.stderr[-3000:]
    rerun = json.loads((tmp_path / "typed" / "metrics.json").read_text())
    assert rerun["status"] == "complete" and rerun["environment"]["git_commit"] is None  # ran outside the checkout


@pytest.mark.slow
def test_other_cpu_capability_differs_within_noise_and_is_named(tiny_record, cache_dir, tmp_path):
    if torch.backends.cpu.get_cpu_capability() == "DEFAULT":
        pytest.skip("torch already runs its DEFAULT (non-vectorised) kernels on this CPU")
    record = tiny_record
    capability = torch.backends.cpu.get_cpu_capability()
    proc = reproduce(str(record), "--out", str(tmp_path / "default"), cache_dir=cache_dir,
                     env={"ATEN_CPU_CAPABILITY": "default"})
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert verdict_line(proc.stdout) == (f"differs within seed noise, because torch CPU capability {capability} vs "
                                         f"DEFAULT; ATEN_CPU_CAPABILITY (unset) vs default")


@pytest.mark.realdata
@pytest.mark.slow
@pytest.mark.parametrize("code", ["current", pytest.param("record", marks=pytest.mark.heavy)])
def test_committed_record_differs_within_noise_on_another_cpu(code, cache_dir, tmp_path):
    """docs/studies/seed_replication/0 (5 epochs of MNIST, about a minute): its CPU was not recorded.

    Measured on an AVX2 AMD EPYC with torch 2.14.1 as recorded: the re-run differs from epoch 1 on
    by seed noise, with this code and with the record's own commit alike (same figures), so the
    cause is an unrecorded condition (the floating-point path of the CPU). On the machine that
    made the record this test would see "identical" and fail: then the record is reproducible there.
    """
    require_real("MNIST")
    out = tmp_path / "rerun"
    proc = reproduce(str(COMMITTED), "--out", str(out), "--code", code, cache_dir=cache_dir)
    assert proc.returncode == 3, proc.stdout[-3000:] + proc.stderr[-3000:]
    lacks = ("the record lacks: torch CPU capability, CPU, CPU vector extensions, torch build, oneDNN, MKL, BLAS, "
             "parallel backend, deterministic, float32 matmul precision, float-path environment variables")
    verdict = verdict_line(proc.stdout)
    if code == "record":
        assert verdict == f"differs within seed noise, because of an unrecorded condition ({lacks})"
    else:
        assert re.fullmatch(rf"differs within seed noise, because code 31accea vs [0-9a-f]{{7}}"
                            rf"( \+ uncommitted changes)? \(or a condition not recorded: {re.escape(lacks)}\)", verdict)
    report = json.loads((out / "reproduce.json").read_text())
    judged = {f["figure"]: f for f in report["judged"]}
    assert judged["test_acc"]["sigma_from"] == "5 seeds" and all(f["within"] is not False for f in report["judged"])
    assert report["first_difference"]["figure"] == "history.0.train_loss"
    assert report["fixed_differences"] == []
