"""Checks on the composed config before anything runs: one clear message per mistake."""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from poolstudy.evaluation.invariance import STABILITY_METRICS
from poolstudy.data.shifts import PADDING_MODES
from poolstudy.errors import PoolStudyError
from poolstudy.models.lenet import DROPOUT_POSITIONS


def _int(minimum: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and v >= minimum


def _number(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Callable[[Any], bool]:
    def check(v: Any) -> bool:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            return False
        return (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)

    return check


def _optional(check: Callable[[Any], bool]) -> Callable[[Any], bool]:
    return lambda v: v is None or check(v)


def _one_of(choices: tuple[str, ...]) -> str:
    return "one of " + ", ".join(choices)


_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d+)?)$")

# key, check, what is valid
RULES: list[tuple[str, Callable[[Any], bool], str]] = [
    ("seed", _int(0), "an integer >= 0"),
    ("trainer.epochs", _int(1), "an integer >= 1"),
    ("trainer.batch_size", _int(1), "an integer >= 1"),
    ("trainer.eval_batch_size", _int(1), "an integer >= 1"),
    ("trainer.threads", _optional(_int(1)), "null (torch's default) or an integer >= 1"),
    ("trainer.device", lambda v: isinstance(v, str) and bool(_DEVICE.match(v)), "auto, cpu, mps, cuda or cuda:N"),
    ("trainer.deterministic", lambda v: isinstance(v, bool), "true or false"),
    ("trainer.channels_last", lambda v: isinstance(v, bool) or v == "auto", "true, false or auto (NHWC on the CPU only)"),
    ("trainer.keep_freed_memory", lambda v: isinstance(v, bool), "true or false"),
    ("trainer.bn_recalibration", lambda v: isinstance(v, bool), "true or false"),
    ("trainer.bn_recalibration_batches", _optional(_int(1)), "null (all training batches) or an integer >= 1"),
    ("optimizer.lr", _number(0, math.inf, lo_open=True, hi_open=True), "a number > 0"),
    ("optimizer.fused", _optional(lambda v: isinstance(v, bool)), "true, false or null (torch's choice)"),
    ("optimizer.weight_decay", _number(0, math.inf, hi_open=True), "a number >= 0"),
    ("model.dropout", _number(0, 1, hi_open=True), "a number in [0, 1)"),
    ("model.dropout_position", lambda v: v in DROPOUT_POSITIONS,
     _one_of(DROPOUT_POSITIONS) + " (before_bn: the seed's model)"),
    ("dataset.val_fraction", _number(0, 1, lo_open=True, hi_open=True), "a number strictly between 0 and 1"),
    ("dataset.split_seed", _int(0), "an integer >= 0"),
    ("dataset.train_subset", _optional(_int(20)), "null (all) or an integer >= 20"),
    ("dataset.test_subset", _optional(_int(1)), "null (all) or an integer >= 1"),
    ("dataset.test_shift", _int(0), "an integer >= 0 (pixels; 0 leaves the test images centred)"),
    ("dataset.test_shift_padding", lambda v: v in PADDING_MODES, _one_of(PADDING_MODES)),
    ("invariance.enabled", lambda v: isinstance(v, bool), "true or false"),
    ("invariance.max_shift", _int(1), "an integer >= 1 (pixels)"),
    ("invariance.padding", lambda v: v in PADDING_MODES, _one_of(PADDING_MODES)),
    ("invariance.passes", _int(1), "an integer >= 1"),
    ("invariance.subset", _optional(_int(1)), "null (the whole test set) or an integer >= 1"),
    ("invariance.seed", _int(0), "an integer >= 0"),
    ("invariance.stability_metric", lambda v: v in STABILITY_METRICS, _one_of(STABILITY_METRICS)),
    ("invariance.layerwise", lambda v: isinstance(v, bool), "true or false"),
    ("checkpoint.enabled", lambda v: isinstance(v, bool), "true or false"),
    ("checkpoint.keep", lambda v: isinstance(v, bool), "true or false"),
]


def check_config(cfg: DictConfig) -> None:
    """Raise PoolStudyError naming the first key whose value is invalid."""
    for key, check, valid in RULES:
        try:
            value = OmegaConf.select(cfg, key, throw_on_missing=True, default=_Absent)
        except OmegaConfBaseException as exc:
            raise PoolStudyError(f"{key} could not be resolved: {exc}".splitlines()[0]) from None
        if value is _Absent:
            continue
        if not check(value):
            raise PoolStudyError(f"{key} = {value!r} is not valid: it must be {valid}.")


class _Absent:
    pass
