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
        """Blur each channel of ``(N, C, H, W)`` and subsample by ``stride``: ``(N, C, ceil(H / stride), ...)``."""
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
        """``(N, C, H, W)`` to ``(N, C, floor(H / stride), floor(W / stride))``; one fixed layout in eval mode."""
        output_size = (self._out(x.shape[-2]), self._out(x.shape[-1]))
        samples = None if self.training else x.new_full((x.shape[0], x.shape[1], 2), 0.5)
        return F.fractional_max_pool2d(x, self.kernel_size, output_size, _random_samples=samples)
