"""Per-epoch checkpoints in the job folder, so that a killed job resumes where it stopped.

At the end of every epoch the job saves everything the next epoch depends on: model,
optimizer and scheduler state, every random number generator (torch CPU and CUDA, NumPy,
Python, and the torch.Generator that shuffles the training batches), the history and the
time spent. Restoring all of it before the next epoch makes a resumed CPU run bit-identical
to one that was never interrupted. The file is replaced atomically (write, then rename), so a
kill at any moment leaves the previous epoch's checkpoint or the new one, never a torn file.

A checkpoint written by another configuration (``poolstudy.jobs.identity``) is neither resumed nor
overwritten: restoring it raises JobFolderError.

Once ``metrics.json`` is written the checkpoint is deleted unless ``checkpoint.keep`` is
true: a finished job is never trained again, so keeping it only costs disk space.
"""

from __future__ import annotations

import io
import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from omegaconf import DictConfig

from poolstudy.jobfolder import CHECKPOINT_FILE
from poolstudy.jobs.identity import describe, differences, run_identity
from poolstudy.jobs.folder import JobFolderError
from poolstudy.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)

FORMAT_VERSION = 1


@dataclass
class TrainingProgress:
    """Where training stands: ``epoch`` epochs done (0 for a fresh start)."""

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    train_seconds: float = 0.0
    wall_seconds: float = 0.0


def _rng_states() -> dict[str, Any]:
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    states = {
        "python": random.getstate(),
        # as a tensor, so that the file loads with torch.load(weights_only=True)
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": pos,
                  "has_gauss": has_gauss, "cached_gaussian": cached},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    random.setstate(states["python"])
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"],
                         n["cached_gaussian"]))
    torch.set_rng_state(states["torch"])
    cuda = states.get("cuda")
    if cuda and torch.cuda.is_available():
        if len(cuda) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(cuda)
        else:  # dropout on another GPU layout draws differently; CUDA runs are not bit-exact anyway
            log.warning("The checkpoint holds CUDA RNG states for %d devices, this machine has %d; "
                        "CUDA random streams restart.", len(cuda), torch.cuda.device_count())


class JobCheckpoint:
    """Saves and restores the training state of the job in ``out_dir``."""

    def __init__(self, out_dir: Path, cfg: DictConfig):
        settings = cfg.get("checkpoint") or {}
        self.path = Path(out_dir) / CHECKPOINT_FILE
        self.enabled = bool(settings.get("enabled", True))
        self.keep = bool(settings.get("keep", False))
        self.identity = run_identity(cfg)

    def restore(self, model: torch.nn.Module, optimizer, scheduler, generator: torch.Generator) -> TrainingProgress:
        """Load the last checkpoint into the given objects; a fresh TrainingProgress when there is none."""
        if not self.enabled or not self.path.is_file():
            return TrainingProgress()
        try:
            state = torch.load(self.path, map_location="cpu", weights_only=True)
            if state.get("format") != FORMAT_VERSION:
                raise ValueError(f"format {state.get('format')!r}, expected {FORMAT_VERSION}")
        except Exception as exc:  # unreadable: losing the progress is better than refusing to run
            log.warning("Ignoring %s, which cannot be read (%s); training from the start (the file is replaced "
                        "at the end of the first epoch).", self.path,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            return TrainingProgress()
        changed = differences(state["identity"], self.identity)
        if changed:  # resuming would mix two configurations; starting over would destroy the other's progress
            raise JobFolderError(
                f"{self.path} was written by a different configuration than this run's ({describe(changed)}): "
                f"resuming would mix two configurations, starting over would destroy its progress. Nothing was "
                f"changed. Move {self.path.name} aside to train this configuration from the start there, or run it "
                f"in another folder.")
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if scheduler is not None:
            scheduler.load_state_dict(state["scheduler"])
        generator.set_state(state["shuffle_generator"])
        _set_rng_states(state["rng"])
        progress = TrainingProgress(state["epoch"], state["history"], state["train_seconds"], state["wall_seconds"])
        log.info("Resumed from %s after epoch %d.", self.path, progress.epoch)
        return progress

    def save(self, model: torch.nn.Module, optimizer, scheduler, generator: torch.Generator,
             progress: TrainingProgress) -> None:
        if not self.enabled:
            return
        state = {
            "format": FORMAT_VERSION,
            "identity": self.identity,
            "epoch": progress.epoch,
            "history": progress.history,
            "train_seconds": progress.train_seconds,
            "wall_seconds": progress.wall_seconds,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict() if scheduler is not None else None,
            "shuffle_generator": generator.get_state(),
            "rng": _rng_states(),
        }
        buffer = io.BytesIO()
        torch.save(state, buffer)
        atomic_write_bytes(self.path, buffer.getvalue())

    def finish(self) -> None:
        """Called once metrics.json is written."""
        if not self.keep:
            self.path.unlink(missing_ok=True)
