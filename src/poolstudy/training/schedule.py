"""Learning-rate schedules, all stepped once per optimizer step.

Each ``conf/scheduler/<name>.yaml`` names one of the factories below in ``_target_`` (with ``_partial_:
true``) and gives the factory's settings; ``build_scheduler`` instantiates it, as ``conf/optimizer/``'s
``_target_`` is instantiated for the optimizer. ``name`` labels the schedule in metrics.json and must be the
name of its factory in SCHEDULES (a schedule of one's own: a ``_target_`` and a ``name`` of its own).
Snapshots written before the schedules had a ``_target_`` give only ``name``, which picks the same factory.
"""

from __future__ import annotations

import logging
from typing import Any

from hydra.errors import InstantiationException
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch.optim import lr_scheduler

from poolstudy.errors import PoolStudyError

log = logging.getLogger(__name__)

SCHEDULES = {
    "none": "poolstudy.training.schedule.constant",
    "onecycle": "poolstudy.training.schedule.one_cycle",
    "cosine": "poolstudy.training.schedule.cosine",
    "step": "poolstudy.training.schedule.step_decay",
}


def constant(optimizer, total_steps: int, steps_per_epoch: int) -> None:
    """No schedule: the learning rate stays ``optimizer.lr``."""
    return None


def one_cycle(optimizer, total_steps: int, steps_per_epoch: int, pct_start: float):
    """Warm up to ``optimizer.lr`` over ``pct_start`` of the steps, then anneal (torch's OneCycleLR)."""
    if total_steps < 4:  # too few steps for a warm-up and an annealing phase
        log.warning("Only %d optimizer steps: one-cycle schedule skipped, constant learning rate.", total_steps)
        return None
    max_lr = [g["lr"] for g in optimizer.param_groups]
    # each phase needs at least two steps, or OneCycleLR divides by zero
    pct_start = min(max(float(pct_start), 2.5 / total_steps), 1 - 2.5 / total_steps)
    return lr_scheduler.OneCycleLR(optimizer, max_lr=max_lr, total_steps=total_steps, pct_start=pct_start)


def cosine(optimizer, total_steps: int, steps_per_epoch: int, min_lr: float):
    """Cosine annealing from ``optimizer.lr`` to ``min_lr`` over all steps."""
    return lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps, eta_min=float(min_lr))


def step_decay(optimizer, total_steps: int, steps_per_epoch: int, step_epochs: int, gamma: float):
    """The learning rate times ``gamma`` every ``step_epochs`` epochs."""
    return lr_scheduler.StepLR(optimizer, step_size=max(1, int(step_epochs) * steps_per_epoch), gamma=float(gamma))


def build_scheduler(cfg: Any, optimizer, epochs: int, steps_per_epoch: int):
    """The schedule of the ``scheduler`` config node for ``epochs`` epochs of ``steps_per_epoch`` steps, or None.

    Raises PoolStudyError for a name that is not known (without a ``_target_``), a name that is not its
    ``_target_``'s, or settings the factory does not take.
    """
    settings = OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)
    name = settings.pop("name", None)
    target = settings.get("_target_") or SCHEDULES.get(name)
    if target is None:
        raise PoolStudyError(f"scheduler.name = {name!r} is not known; valid names are: {', '.join(SCHEDULES)}.")
    named = {factory: label for label, factory in SCHEDULES.items()}
    if (name in SCHEDULES and SCHEDULES[name] != target) or (target in named and name != named[target]):
        raise PoolStudyError(
            f"scheduler.name = {name!r} is not the name of scheduler._target_ = {target!r} ({named.get(target)!r}), so "
            f"metrics.json would label the schedule wrongly. Pick a schedule with scheduler=<{'|'.join(SCHEDULES)}>, "
            f"which sets both.")
    settings.update({"_target_": target, "_partial_": True})
    try:
        factory = instantiate(settings)
        return factory(optimizer, total_steps=max(1, epochs * steps_per_epoch), steps_per_epoch=steps_per_epoch)
    except (InstantiationException, TypeError) as exc:
        cause = exc.__cause__ or exc
        raise PoolStudyError(f"scheduler {name!r} ({target}) cannot be built from its settings "
                             f"{ {k: v for k, v in settings.items() if not k.startswith('_')} }: "
                             f"{str(cause).splitlines()[0]}") from None
