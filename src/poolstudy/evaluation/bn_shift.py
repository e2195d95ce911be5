"""The dropout -> BatchNorm variance shift, measured per BatchNorm layer of a trained model.

A BatchNorm layer normalises with its running statistics at evaluation. Those were accumulated
during training, where the seed's Dropout(0.4) was active upstream of the layer; at evaluation
dropout is off, so the layer's input has another variance than the one it divides by (Li et al.
2019, "Understanding the Disharmony between Dropout and Batch Normalization by Variance Shift",
CVPR 2019). This module measures that directly: for every BatchNorm layer, the per-channel
variance of its input in evaluation mode (dropout off; the earlier BatchNorm layers using their
running statistics, as at test time) against its ``running_var``.

    shifts = measure_bn_inputs(model, batches)              # {layer name: InputMoments}
    rows = compare_with_running_stats(model, shifts)        # one summary dict per BatchNorm layer

The ratio ``running_var / input variance`` is 1 where the layer normalises its evaluation-time
input to unit variance; above 1 it shrinks it (the layer divides by too large a standard
deviation), below 1 it inflates it. ``poolstudy.bn_shift`` runs this on a trained job before and
after :func:`poolstudy.evaluation.batchnorm.recalibrate_batchnorm`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from poolstudy.evaluation.batchnorm import _BN

# A channel whose input variance is below this (a channel that is always zero, e.g. after a dead
# ReLU) has no meaningful ratio; it is counted, not averaged.
DEAD_VARIANCE = 1e-12


@dataclass
class InputMoments:
    """Per-channel mean and population variance of one BatchNorm layer's input (float64, shape C),
    over every image and, for 2-D/3-D layers, every spatial position."""

    mean: torch.Tensor
    var: torch.Tensor
    count: int  # values per channel the moments are taken over


def batchnorm_layers(model: nn.Module) -> dict[str, nn.modules.batchnorm._BatchNorm]:
    """The model's BatchNorm layers by their dotted module name, in forward-definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, _BN)}


@torch.no_grad()
def measure_bn_inputs(model: nn.Module, batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
                      dropout_active: bool = False) -> dict[str, InputMoments]:
    """Per-channel moments of every BatchNorm layer's input over ``batches``.

    The model runs in evaluation mode (BatchNorm layers normalise with their running statistics,
    nothing is updated). With ``dropout_active`` the Dropout layers alone are switched to training
    mode, which shows the input distribution the layers saw while training. Inputs are N x C (x ...)
    tensors; sums are accumulated in float64. Raises ValueError if the model has no BatchNorm layer
    or ``batches`` is empty. The model is left in evaluation mode.
    """
    layers = batchnorm_layers(model)
    if not layers:
        raise ValueError("the model has no BatchNorm layer")
    sums: dict[str, list] = {}

    def hook(name: str):
        def record(_module, inputs):
            x = inputs[0].detach()
            dims = [0, *range(2, x.dim())]
            total, squares, count = sums.setdefault(name, [0.0, 0.0, 0])
            x64 = x.double()
            sums[name] = [total + x64.sum(dims), squares + (x64 * x64).sum(dims), count + x.numel() // x.shape[1]]
        return record

    handles = [module.register_forward_pre_hook(hook(name)) for name, module in layers.items()]
    model.eval()
    dropouts = [m for m in model.modules() if isinstance(m, nn.modules.dropout._DropoutNd)]
    try:
        for m in dropouts:
            m.train(dropout_active)
        for x, _ in batches:
            model(x)
    finally:
        for handle in handles:
            handle.remove()
        model.eval()
    if not sums:
        raise ValueError("no batches to measure on")
    moments = {}
    for name, (total, squares, count) in sums.items():
        mean = total / count
        moments[name] = InputMoments(mean.cpu(), (squares / count - mean * mean).clamp_min(0).cpu(), count)
    return moments


def _spread(values: torch.Tensor) -> dict[str, float]:
    return {"mean": float(values.mean()), "median": float(values.median()), "min": float(values.min()),
            "max": float(values.max())}


def compare_with_running_stats(model: nn.Module, moments: dict[str, InputMoments]) -> list[dict]:
    """One record per BatchNorm layer: how its running statistics compare with measured input moments.

    ``var_ratio``: running_var / input variance over the layer's live channels (mean, median, min,
    max; channels with input variance below DEAD_VARIANCE are counted in ``dead_channels``);
    ``mean_offset``: ``|running_mean - input_mean|`` / input standard deviation, mean over live channels.
    """
    rows = []
    for name, bn in batchnorm_layers(model).items():
        if name not in moments:
            continue  # a layer the forward pass does not reach
        m = moments[name]
        running_var = bn.running_var.detach().double().cpu()
        running_mean = bn.running_mean.detach().double().cpu()
        live = m.var > DEAD_VARIANCE
        if not live.any():
            rows.append({"layer": name, "channels": len(m.var), "dead_channels": int((~live).sum()),
                         "var_ratio": None, "mean_offset": None})
            continue
        ratio = running_var[live] / m.var[live]
        offset = (running_mean[live] - m.mean[live]).abs() / m.var[live].sqrt()
        rows.append({"layer": name, "channels": len(m.var), "dead_channels": int((~live).sum()),
                     "values_per_channel": m.count,
                     "var_ratio": _spread(ratio), "mean_offset": float(offset.mean()),
                     "running_var_mean": float(running_var[live].mean()),
                     "input_var_mean": float(m.var[live].mean())})
    return rows
