"""A record of the software and hardware a run used, stored in every metrics.json.

A deterministic CPU run is bit-identical only on the same floating-point path: torch picks its
vectorised kernels by CPU capability (``ATEN_CPU_CAPABILITY`` or the instruction set found),
oneDNN and MKL pick theirs by instruction set too, and reductions are split by thread count.
So the record names the CPU and its vector extensions, torch's capability, the oneDNN, BLAS and
MKL builds, the threads actually used and the variables that steer these choices; on CUDA also
the CUDA, cuDNN and GPU. ``poolstudy.reproduce`` compares these fields between a record and its
re-run. Everything but the thread count and the deterministic flag is fixed for a process and
computed once (a few milliseconds).
"""

from __future__ import annotations

import copy
import functools
import importlib.metadata
import os
import platform
import re
import subprocess
from pathlib import Path

import torch

_PACKAGES = ("torch", "torchvision", "hydra-core", "omegaconf", "optuna", "numpy", "poolstudy")
_PROJECT_ROOT = Path(__file__).resolve().parents[3]

# /proc/cpuinfo flags that decide which kernels torch (ATen), oneDNN and MKL run.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "f16c", "avx_vnni", "avx512f", "avx512dq", "avx512bw", "avx512vl",
             "avx512_vnni", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
             "asimd", "sve", "sve2")
# Environment variables that change the floating-point path (kernel choice, rounding mode, threads).
FLOAT_ENV_VARS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ONEDNN_DEFAULT_FPMATH_MODE",
                  "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS", "MKL_DEBUG_CPU_TYPE", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                  "NVIDIA_TF32_OVERRIDE")


def _version(pkg: str) -> str | None:
    try:
        return importlib.metadata.version(pkg)
    except importlib.metadata.PackageNotFoundError:
        return None


# What a job's result depends on; edits elsewhere (README, RESULTS.md, archived records) are not "dirty".
RESULT_PATHS = ("src", "conf", "sweeps", "train.py", "pyproject.toml")


@functools.lru_cache(maxsize=1)
def git_state() -> dict:
    """Commit of the project checkout and whether its code or configs (RESULT_PATHS) differ from it,
    or nulls outside a git tree."""

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=_PROJECT_ROOT, capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no", "--", *RESULT_PATHS))
        return {"git_commit": commit, "git_dirty": dirty}
    except (OSError, subprocess.SubprocessError):
        return {"git_commit": None, "git_dirty": None}


def parse_cpuinfo(text: str) -> dict:
    """CPU model, ``vendor family/model/stepping`` and the ISA_FLAGS present, from the first
    processor block of Linux's /proc/cpuinfo (x86 ``flags`` or Arm ``Features``)."""
    fields: dict[str, str] = {}
    for line in text.split("\n\n", 1)[0].splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set((fields.get("flags") or fields.get("Features") or "").split())
    ident = " ".join(f"{name} {fields[key]}" for name, key in
                     (("family", "cpu family"), ("model", "model"), ("stepping", "stepping"),
                      ("implementer", "CPU implementer"), ("part", "CPU part")) if key in fields)
    return {"model": fields.get("model name") or fields.get("Hardware") or None,
            "id": " ".join(filter(None, (fields.get("vendor_id"), ident))) or None,
            "isa_flags": [flag for flag in ISA_FLAGS if flag in flags]}


def parse_torch_config(show: str, parallel: str) -> dict:
    """BLAS, LAPACK, MKL, oneDNN and the parallel backend of this torch build, from
    ``torch.__config__.show()`` and ``torch.__config__.parallel_info()``; None where absent."""

    def find(pattern: str, text: str = show) -> str | None:
        match = re.search(pattern, text)
        return " ".join(g for g in match.groups() if g) if match else None

    return {
        "blas": find(r"BLAS_INFO=([^,\s]+)"),
        "lapack": find(r"LAPACK_INFO=([^,\s]+)"),
        "mkl": find(r"Math Kernel Library Version ([\d.]+)\S*(?: Build (\d+))?"),
        "onednn": find(r"(?:MKL-DNN|oneDNN)\S* v(\S+)(?: \(Git Hash (\w{7}))?"),
        "parallel_backend": find(r"ATen parallel backend: (\S+)", parallel),
    }


@functools.lru_cache(maxsize=1)
def machine_record() -> dict:
    """The per-process part: versions, CPU, torch build and libraries, float-path environment variables."""
    try:
        cpu = parse_cpuinfo(Path("/proc/cpuinfo").read_text(errors="replace"))
    except OSError:  # not Linux
        cpu = {"model": platform.processor() or None, "id": None, "isa_flags": None}
    cpu["logical_cpus"] = os.cpu_count()
    libraries = parse_torch_config(torch.__config__.show(), torch.__config__.parallel_info())
    if not (torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled):
        libraries["onednn"] = None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {pkg: _version(pkg) for pkg in _PACKAGES},
        "torch_build": f"{torch.__version__} ({torch.version.git_version[:12]})",
        "cpu": cpu,
        # what torch's dispatcher uses: the instruction set found, or ATEN_CPU_CAPABILITY when set
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "libraries": libraries,
        "float_env": {name: os.environ[name] for name in FLOAT_ENV_VARS if name in os.environ},
    }


def _cuda_record(device: torch.device) -> dict:
    major, minor = torch.cuda.get_device_capability(device)
    return {"cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
            "gpu": torch.cuda.get_device_name(device), "gpu_capability": f"{major}.{minor}",
            "tf32_matmul": torch.backends.cuda.matmul.allow_tf32, "tf32_cudnn": torch.backends.cudnn.allow_tf32,
            "cudnn_benchmark": torch.backends.cudnn.benchmark}


def environment_record(device: torch.device) -> dict:
    """The ``environment`` entry of metrics.json for a job that ran on ``device``.

    Call it after training: ``torch_threads`` and ``deterministic`` are read as they are then.
    """
    machine = copy.deepcopy(machine_record())  # the cached one stays as computed
    record = {
        "python": machine["python"],
        "platform": machine["platform"],
        "packages": machine["packages"],
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": (torch.cuda.get_device_name(device) if device.type == "cuda"
                        else machine["cpu"]["model"] or platform.processor() or platform.machine()),
        "deterministic": torch.are_deterministic_algorithms_enabled(),
        "float32_matmul_precision": torch.get_float32_matmul_precision(),
        **machine,
        "cuda": _cuda_record(device) if device.type == "cuda" else None,
    }
    record.update(git_state())
    return record
