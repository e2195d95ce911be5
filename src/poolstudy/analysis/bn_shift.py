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
after :func:`poolstudy.training.batchnorm.recalibrate_batchnorm`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from poolstudy.training.batchnorm import _BN

# A channel whose input variance is below this (a channel that is always zero, e.g. after a dead
# ReLU) has no meaningful ratio; it is counted, not averaged.
DEAD_VARIANCE = 1e-12
SEED_DROPOUT = 0.4  # the seed's Dropout(0.4), model.dropout's default in conf/arch/lenet.yaml


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
    ``mean_offset``: |running_mean - input mean| / input standard deviation, mean over live channels.
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


def _ratio(spread: dict | None, full: bool = True) -> str:
    if not spread:
        return "—"
    return f"{spread['mean']:.2f} [{spread['min']:.2f}, {spread['max']:.2f}]" if full else f"{spread['mean']:.2f}"


def records_markdown(records: list[dict]) -> str:
    """The table a report shows for ``poolstudy.bn_shift`` JSON records (see poolstudy.bn_shift)."""
    records = sorted(records, key=lambda r: (r["dataset"], str(r["model"]["downsample"]["type"]),
                                             str(r["model"].get("dropout")), str(r["model"].get("dropout_position")),
                                             r["seed"]))
    headers = ["dataset", "model", "BatchNorm layer (channels)", "running var / input var, as trained: mean [min, max]",
               "with dropout on (as in training): mean", "after re-estimation: mean [min, max]",
               "mean offset, as trained → re-estimated", "test accuracy %, as trained → re-estimated"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for r in records:
        model = r["model"]
        name = str(model["downsample"]["type"])
        if model.get("dropout") != SEED_DROPOUT or model.get("dropout_position") not in (None, "before_bn"):
            name += f" (dropout {model.get('dropout')}, {model.get('dropout_position') or 'before_bn'})"
        for layer in r["layers"]:
            before, after = layer["as_trained"].get("mean_offset"), layer["re_estimated"].get("mean_offset")
            lines.append("| " + " | ".join([
                r["dataset"], f"{name}, seed {r['seed']}", f"{layer['layer']} ({layer['channels']})",
                _ratio(layer["as_trained"]["var_ratio"]), _ratio(layer["dropout_on"]["var_ratio"], full=False),
                _ratio(layer["re_estimated"]["var_ratio"]),
                "—" if before is None or after is None else f"{before:.2f} → {after:.2f}",
                f"{100 * r['test_acc_raw']:.2f} → {100 * r['test_acc']:.2f}"]) + " |")
    commands = sorted({r.get("command", "?") for r in records})
    measured = sorted({f"{r['dataset']}: {r['measured_on']}" for r in records})
    dead = sum(layer[k].get("dead_channels", 0) for r in records for layer in r["layers"]
               for k in ("as_trained", "re_estimated"))
    notes = [
        f"Measured by {'; '.join(f'`{c}`' for c in commands)} on each job's held-out data ({'; '.join(measured)}). "
        "Per BatchNorm layer: its running variance divided by the variance of its input, per channel, in "
        "evaluation mode (dropout off, earlier BatchNorm layers on their running statistics, as at test time); "
        "1 means the layer normalises its test-time input to unit variance, above 1 it shrinks it. \"With "
        "dropout on\": the same with the Dropout layer in training mode, i.e. the input the running statistics "
        "were estimated on. \"After re-estimation\": once `trainer.bn_recalibration` has recomputed the running "
        "statistics with dropout off. Mean offset: the distance between running mean and input mean in input standard "
        "deviations, averaged over channels. Each model's test accuracies are its job's `test_acc_raw` and "
        "`test_acc`, reproduced exactly from its checkpoint before measuring.",
    ]
    if dead:
        notes.append(f"{dead} channel measurements had (near) zero input variance and are left out of the ratios.")
    return "\n".join(lines) + "\n\n" + "\n\n".join(notes)
