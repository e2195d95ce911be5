"""Relative data paths mean "relative to where train.py was started", whatever Hydra's job cwd is.

With ``hydra.job.chdir=true`` Hydra runs each job inside its output folder, so a relative
``data_dir`` such as ``../shared/datasets`` (docs/data.md's ``POOLSTUDY_DATA``) would point
somewhere else in every job. Relative ``data_dir``, ``cache_dir`` and ``dataset.root`` are
therefore resolved against Hydra's launch directory (``hydra.runtime.cwd``), or the current
directory when no Hydra job is running.
"""

from __future__ import annotations

import os
from pathlib import Path


def launch_dir() -> Path:
    """The directory train.py was started in (Hydra's ``hydra.runtime.cwd``), else the cwd."""
    try:
        from hydra.core.hydra_config import HydraConfig

        if HydraConfig.initialized():
            return Path(HydraConfig.get().runtime.cwd)
    except (ImportError, ValueError):
        pass
    return Path.cwd()


def resolve_data_path(value: str | os.PathLike) -> Path:
    """``~`` expanded; a relative path joined to :func:`launch_dir`; ``..`` collapsed (no symlinks resolved)."""
    path = Path(os.path.expanduser(str(value)))
    if not path.is_absolute():
        path = launch_dir() / path
    return Path(os.path.normpath(path))


def describe(value: str | os.PathLike, key: str) -> str:
    """A hint for messages when ``value`` was relative: what it was resolved against."""
    raw = os.path.expanduser(str(value))
    if os.path.isabs(raw):
        return ""
    return f" ({key} = {str(value)!r} is relative: it is resolved against the launch directory {launch_dir()})"
