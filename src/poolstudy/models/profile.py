"""Shapes and cost of a model at a given input size, checked before any training."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from poolstudy.errors import InvalidModelError


@dataclass
class LayerRow:
    """One leaf layer of a model: dotted name, class name, output shape ``(C, H, W)`` for one image, parameters."""

    name: str
    kind: str
    out_shape: tuple[int, ...]
    params: int


def _geometry(module: nn.Module) -> str:
    keys = ("kernel_size", "stride", "padding", "output_size", "output_ratio")
    parts = [f"{k}={getattr(module, k)}" for k in keys if getattr(module, k, None) is not None]
    return ", ".join(parts)


def trace_shapes(model: nn.Module, input_shape: tuple[int, int, int]) -> list[LayerRow]:
    """Run one dummy sample through the model and record every leaf layer's output size.

    A layer that cannot run at its input size raises InvalidModelError naming the layer,
    its input size and its kernel/stride/padding (instead of a shape traceback mid-epoch).
    """
    rows: list[LayerRow] = []
    current: dict[str, object] = {}
    hooks = []
    leaves = [(n, m) for n, m in model.named_modules() if n and not list(m.children())]
    # networks rebuilt by downsampling surgery keep each point's stride: no smaller window to suggest
    advice = ("Use a dataset with larger images, or another model= operator." if hasattr(model, "downsampling_points")
              else "Choose a smaller model.downsample.kernel_size / stride, more padding, or a dataset with larger images.")

    for name, module in leaves:
        def pre(mod, args, name=name):
            current["name"], current["module"], current["shape"] = name, mod, tuple(args[0].shape[1:])

        def post(mod, args, out, name=name):
            shape = tuple(out.shape[1:])
            rows.append(LayerRow(name, type(mod).__name__, shape, sum(p.numel() for p in mod.parameters())))
            if out.dim() == 4 and min(shape[1:]) < 1:
                _raise_invalid(name, mod, current["shape"], "its output would be empty", advice)

        hooks.append(module.register_forward_pre_hook(pre))
        hooks.append(module.register_forward_hook(post))
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, *input_shape))
    except InvalidModelError:
        raise
    except RuntimeError as exc:
        if "name" not in current:
            raise
        _raise_invalid(current["name"], current["module"], current["shape"], str(exc).splitlines()[0], advice)
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    return rows


def _raise_invalid(name, module, in_shape, reason, advice) -> None:
    raise InvalidModelError(
        f"The model cannot run on this input size: layer '{name}' ({type(module).__name__}: {_geometry(module)}) "
        f"gets a {'x'.join(map(str, in_shape))} input (channels x H x W): {reason}. {advice}"
    )


def check_batch_statistics(rows: list[LayerRow], batch_size: int) -> None:
    """Raise InvalidModelError when a training batch of ``batch_size`` images gives some BatchNorm layer a
    single value per channel (``batch_size`` times its output's H x W equal to 1), from which it cannot
    compute a batch variance: torch stops such a step with "Expected more than 1 value per channel when
    training". ``rows``: :func:`trace_shapes` of the model."""
    for row in rows:
        if row.kind.startswith("BatchNorm") or row.kind.startswith("SyncBatchNorm"):
            if batch_size * math.prod(row.out_shape[1:]) == 1:
                shape = "x".join(map(str, row.out_shape))
                raise InvalidModelError(
                    f"trainer.batch_size = {batch_size} cannot train this model: BatchNorm layer '{row.name}' gets a "
                    f"{shape} map (channels x H x W), so a batch of {batch_size} image gives it one value per "
                    "channel, and batch statistics need at least two. Use trainer.batch_size=2 or more.")


def count_macs(model: nn.Module, input_shape: tuple[int, int, int]) -> int:
    """Multiply-accumulates of one forward pass of one image (torch's flop counter / 2)."""
    was_training = model.training
    model.eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        model(torch.zeros(1, *input_shape))
    model.train(was_training)
    return counter.get_total_flops() // 2


def count_params(model: nn.Module) -> int:
    """Number of parameters (every tensor of ``model.parameters()``, trainable or not)."""
    return sum(p.numel() for p in model.parameters())


def stage_sizes(rows: list[LayerRow]) -> dict[str, list[int]]:
    """Output size of each top-level block (conv1, conv2, ...), for metrics.json."""
    sizes: dict[str, list[int]] = {}
    for row in rows:
        sizes[row.name.split(".")[0]] = list(row.out_shape)
    return sizes


def format_summary(rows: list[LayerRow], params: int, macs: int) -> str:
    """The model table a job logs: one line per leaf layer (type, output size, parameters) and the totals."""
    width = max(len(r.name) for r in rows) if rows else 4
    lines = [f"{'layer':<{width}}  {'type':<12} {'output':>14} {'params':>9}"]
    for r in rows:
        lines.append(f"{r.name:<{width}}  {r.kind:<12} {'x'.join(map(str, r.out_shape)):>14} {r.params:>9,}")
    lines.append(f"total params {params:,}; MACs per image {macs:,}")
    return "\n".join(lines)
