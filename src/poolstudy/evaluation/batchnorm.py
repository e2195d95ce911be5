"""Re-estimating BatchNorm statistics after training, with dropout switched off.

The seed puts Dropout(0.4) before a BatchNorm layer. During training BatchNorm's running
variance is measured on dropped-out activations; at evaluation dropout is off and the
variance shifts (Li et al. 2019, "Understanding the Disharmony between Dropout and Batch
Normalization by Variance Shift"). One forward pass over training data in eval-mode
dropout with fresh cumulative BN statistics removes that mismatch without changing a
single learned weight.
"""

from __future__ import annotations

import itertools

import torch
from torch import nn

from poolstudy.data.loader import TensorBatches

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)


def has_batchnorm(model: nn.Module) -> bool:
    """Whether ``model`` holds a BatchNorm layer (1-, 2- or 3-d); without one there is nothing to re-estimate."""
    return any(isinstance(m, _BN) for m in model.modules())


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, batches: TensorBatches, max_batches: int | None = None) -> int:
    """Recompute every BatchNorm's running mean/var as an exact average over the batches.

    Dropout and every other layer stay in eval mode; no weight changes (``torch.no_grad``). Each BatchNorm's
    ``momentum`` is set to ``None`` for the pass (torch's cumulative average, i.e. the exact mean over the
    batches) and restored afterwards. The remedy of Li et al. (2019) for the dropout variance shift.

    Args:
        model: the trained model; left in eval mode.
        batches: training batches ``(B, C, H, W)``, normalised, on the model's device.
        max_batches: use at most this many batches (``trainer.bn_recalibration_batches``); ``None``: all.

    Returns:
        The number of images used (0 when the model has no BatchNorm).
    """
    bns = [m for m in model.modules() if isinstance(m, _BN)]
    if not bns:
        return 0
    model.eval()
    momenta = []
    for bn in bns:
        momenta.append(bn.momentum)
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average = exact mean over batches
        bn.train()
    seen = 0
    for x, _ in itertools.islice(batches, max_batches):
        model(x)
        seen += len(x)
    for bn, momentum in zip(bns, momenta):
        bn.momentum = momentum
    model.eval()
    return seen
