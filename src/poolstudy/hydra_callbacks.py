"""Hydra callbacks (``hydra.callbacks`` in conf/config.yaml).

Hydra creates the output folder itself, before the task function runs, and an unusable folder
ends in a Python traceback there. The check below runs first and stops with one message.
"""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from omegaconf import DictConfig


def unwritable_reason(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` cannot be created and written to, or None when it can. Leaves no trace."""
    existing = Path(folder).absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{existing} is a file, not a folder"
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".poolstudy-probe-", dir=existing))
    except OSError as exc:
        return f"{existing} is not writable ({exc.strerror or exc})"
    return None


def _stop_unless_writable(key: str, folder: Any) -> None:
    reason = unwritable_reason(str(folder))
    if reason:
        print(f"error: {key} = '{folder}' cannot be used as the output folder: {reason}. Give a folder you can "
              f"write to, e.g. {key}=outputs/mine (single runs set hydra.run.dir, multiruns hydra.sweep.dir).",
              file=sys.stderr)
        sys.exit(2)


class OutputFolderCheck(Callback):
    """Stops a run whose output folder (hydra.run.dir / hydra.sweep.dir) cannot be written."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        _stop_unless_writable("hydra.run.dir", config.hydra.run.dir)

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        _stop_unless_writable("hydra.sweep.dir", config.hydra.sweep.dir)
