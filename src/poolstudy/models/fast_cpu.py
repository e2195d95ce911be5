"""Drop-in replacements for torch layers that are slow on the CPU, computing the same values.

Each keeps torch's own kernel wherever the fast path does not apply (another device, a gradient
that needs the argmax, an unusual window), so a model built from them trains and evaluates as
one built from torch's layers would; ``python -m benchmarks.bench --options`` (``fast_layers``)
measures what they gain.
"""

from __future__ import annotations

import torch
from torch import nn


class FastCPUDropout(nn.Dropout):
    """nn.Dropout with the same distribution (keep each element with probability 1 - p, scale the
    kept ones by 1 / (1 - p)), drawn on the CPU as one uniform sample and a comparison.

    torch's CPU dropout draws its mask with ``bernoulli_``, several times slower per element than
    ``rand_like``, which the LeNets' training steps feel (``python -m benchmarks.bench --options``,
    option ``fast_layers``). Other devices keep torch's own fused kernel.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0 or x.device.type != "cpu":
            return super().forward(x)
        if self.p == 1:
            return x * 0
        keep = torch.rand_like(x) >= self.p
        return x * keep * (1.0 / (1.0 - self.p))


class FastCPUMaxPool2d(nn.MaxPool2d):
    """nn.MaxPool2d whose no-gradient forward (evaluation, BatchNorm re-estimation, probes) of the
    common 2x2, stride-2 window on the CPU is the maximum of the window's four strided views.

    torch's CPU max-pool kernel is slow for few channels: for the LeNets' maps three elementwise
    ``torch.maximum`` calls take a fraction of its time, in either memory layout, which speeds up
    evaluation (``python -m benchmarks.bench --options``, option ``fast_layers``). The results are
    equal floats (a
    maximum is exact, NaN propagates in both; only a zero maximum's sign may differ, which no later
    sum, product or bias can turn into a different value). Training, which needs the argmax for the
    backward pass, and every other window, padding or device keep torch's kernel.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

        def pair(v):
            return tuple(v) if isinstance(v, (tuple, list)) else (v, v)

        self._plain_2x2 = (pair(self.kernel_size) == (2, 2) and pair(self.stride) == (2, 2)
                           and pair(self.padding) == (0, 0) and pair(self.dilation) == (1, 1)
                           and not self.ceil_mode and not self.return_indices)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self._plain_2x2 or x.device.type != "cpu" or x.dim() != 4 or min(x.shape[-2:]) < 2 \
                or (torch.is_grad_enabled() and x.requires_grad):  # torch's errors too
            return super().forward(x)
        h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2  # floor mode drops an odd last row/column
        top = torch.maximum(x[..., 0:h:2, 0:w:2], x[..., 0:h:2, 1:w:2])
        return torch.maximum(top, torch.maximum(x[..., 1:h:2, 0:w:2], x[..., 1:h:2, 1:w:2]))


def global_mean(x: torch.Tensor) -> torch.Tensor:
    """Mean over the spatial axes of an N x C x H x W map: N x C.

    Written as a sum and one division, which on the CPU is what ``mean`` computes (equal floats,
    forward and backward; tested), because of the backward pass: ``mean``'s gradient is the
    incoming one expanded and then divided as a full N x C x H x W tensor in NCHW order, and the
    ReLU before it (channels-last) then takes torch's slow mixed-layout path, a noticeable part of
    a LeNet step. The sum's gradient is divided at N x C and only expanded (a view).
    Not AdaptiveAvgPool2d: its CUDA backward is non-deterministic.
    """
    return x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])
