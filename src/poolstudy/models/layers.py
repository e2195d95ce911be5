"""Fixed or stochastic layers some downsampling operators need and torch does not ship as such."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


class BinomialBlur(nn.Module):
    """Zhang (2019)'s anti-aliasing filter: a fixed, normalised binomial kernel (``filter_size``
    taps per axis, e.g. 1-3-3-1 for 4) applied to each channel separately with ``stride``.

    Padding follows the paper's reference implementation (antialiased-cnns): reflect padding
    of (filter_size - 1) // 2 before and filter_size // 2 after, so that a stride-s blur after a
    stride-1 max-pool gives the same output size as the plain stride-s pool. kornia's
    MaxBlurPool2D pads symmetrically with zeros instead, which changes both. A map too small to
    reflect (a side of at most filter_size // 2, e.g. a CIFAR VGG's last 2x2 or 1x1 map) is padded
    by replicating its edge instead, where reflect padding would raise an error.
    """

    def __init__(self, channels: int, filter_size: int = 4, stride: int = 2):
        super().__init__()
        taps = torch.tensor([math.comb(filter_size - 1, i) for i in range(filter_size)], dtype=torch.float32)
        kernel = torch.outer(taps, taps)
        # A buffer, not a parameter: the filter is fixed, moves with .to() and adds no parameters.
        self.register_buffer("kernel", (kernel / kernel.sum()).expand(channels, 1, -1, -1).clone())
        self.kernel_size = filter_size
        self.stride = stride
        self.padding = ((filter_size - 1) // 2, filter_size // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        before, after = self.padding
        if before or after:
            mode = "reflect" if min(x.shape[-2:]) > after else "replicate"
            x = F.pad(x, (before, after, before, after), mode=mode)
        return F.conv2d(x, self.kernel, stride=self.stride, groups=x.shape[1])

    def extra_repr(self) -> str:
        return f"channels={self.kernel.shape[0]}, filter_size={self.kernel_size}, stride={self.stride}"


class FractionalMaxPool(nn.FractionalMaxPool2d):
    """torch's FractionalMaxPool2d (Graham 2014) reducing each side by ``stride``: the output is
    floor(input / stride), from the integer sizes rather than a rounded float ratio.

    torch also draws new pseudo-random pooling regions on every call in eval mode, so the same
    model would score differently on every evaluation and evaluation would consume the random
    stream that seeds training. Training keeps the random regions; evaluation uses the layout
    of the sample 0.5 for every image and channel.
    """

    def __init__(self, kernel_size: int, stride: float):
        super().__init__(kernel_size, output_ratio=1.0 / stride)
        self.stride = stride

    def _out(self, size: int) -> int:
        return size // self.stride if isinstance(self.stride, int) else math.floor(size / self.stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        output_size = (self._out(x.shape[-2]), self._out(x.shape[-1]))
        samples = None if self.training else x.new_full((x.shape[0], x.shape[1], 2), 0.5)
        return F.fractional_max_pool2d(x, self.kernel_size, output_size, _random_samples=samples)


class FastCPUDropout(nn.Dropout):
    """nn.Dropout with the same distribution (keep each element with probability 1 - p, scale the
    kept ones by 1 / (1 - p)), drawn on the CPU as one uniform sample and a comparison.

    torch's CPU dropout draws its mask with ``bernoulli_``, which here ran at ~14 ns per element
    against ~5 ns for ``rand_like``; with torch's layer the LeNets' training steps were 4-15 %
    slower (``python -m poolstudy.bench --options``, then named ``torch_dropout``; ``fast_layers``
    now, with FastCPUMaxPool2d). Other devices keep torch's own fused kernel.
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

    torch's CPU max-pool kernel is slow for few channels: for a 64x6x28x28 map it took ~745 us
    channels-last and ~1250 us NCHW against ~180-200 us for the three ``torch.maximum`` calls
    (2-core VM, 2026-11-29); evaluating the max-pool LeNet on MNIST got ~1.7x faster with it and
    ``eval_batch_size`` 512. The results are equal floats (a
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
    ReLU before it (channels-last) then took torch's slow mixed-layout path, ~0.4 ms of a 9 ms
    LeNet step on 32x32x3. The sum's gradient is divided at N x C and only expanded (a view).
    Not AdaptiveAvgPool2d: its CUDA backward is non-deterministic.
    """
    return x.sum(dim=(2, 3)) / (x.shape[2] * x.shape[3])
