"""Learning-rate schedules, all stepped once per optimizer step."""

from __future__ import annotations

from typing import Any

from torch.optim import lr_scheduler

from poolstudy.errors import PoolStudyError

SCHEDULES = ("none", "onecycle", "cosine", "step")


def build_scheduler(cfg: Any, optimizer, epochs: int, steps_per_epoch: int):
    """``cfg`` is the ``scheduler`` config node; ``name`` picks one of SCHEDULES."""
    name = cfg.name
    total = max(1, epochs * steps_per_epoch)
    if name == "none":
        return None
    if name == "onecycle":
        max_lr = [g["lr"] for g in optimizer.param_groups]
        return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total, pct_start=float(cfg.pct_start))
    if name == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total, eta_min=float(cfg.min_lr))
    if name == "step":
        return lr_scheduler.StepLR(optimizer, step_size=max(1, int(cfg.step_epochs) * steps_per_epoch),
                                   gamma=float(cfg.gamma))
    raise PoolStudyError(f"scheduler.name = {name!r} is not known; valid names are: {', '.join(SCHEDULES)}.")
