"""A record of the software and hardware a run used, stored in every metrics.json."""

from __future__ import annotations

import functools
import importlib.metadata
import platform
import subprocess
from pathlib import Path

import torch

_PACKAGES = ("torch", "torchvision", "hydra-core", "omegaconf", "optuna", "numpy", "poolstudy")
_PROJECT_ROOT = Path(__file__).resolve().parents[3]


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


def environment_record(device: torch.device) -> dict:
    record = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {pkg: _version(pkg) for pkg in _PACKAGES},
        "torch_threads": torch.get_num_threads(),
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine(),
    }
    record.update(git_state())
    return record
