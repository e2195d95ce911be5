"""Learning-rate schedules, all stepped once per optimizer step."""

from __future__ import annotations

import logging
from typing import Any

from torch.optim import lr_scheduler

from poolstudy.errors import PoolStudyError

log = logging.getLogger(__name__)

SCHEDULES = ("none", "onecycle", "cosine", "step")


def build_scheduler(cfg: Any, optimizer, epochs: int, steps_per_epoch: int):
    """``cfg`` is the ``scheduler`` config node; ``name`` picks one of SCHEDULES."""
    name = cfg.name
    total = max(1, epochs * steps_per_epoch)
    if name == "none":
        return None
    if name == "onecycle":
        if total < 4:  # too few steps for a warm-up and an annealing phase
            log.warning("Only %d optimizer steps: one-cycle schedule skipped, constant learning rate.", total)
            return None
        max_lr = [g["lr"] for g in optimizer.param_groups]
        # each phase needs at least two steps, or OneCycleLR divides by zero
        pct_start = min(max(float(cfg.pct_start), 2.5 / total), 1 - 2.5 / total)
        return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=pct_start)
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=float(cfg.min_lr))
    if name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, int(cfg.step_epochs) * steps_per_epoch),
                                   gamma=float(cfg.gamma))
    raise PoolStudyError(f"scheduler.name = {name!r} is not known; valid names are: {', '.join(SCHEDULES)}.")
