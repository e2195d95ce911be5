"""The CIFAR VGG with BatchNorm: Simonyan & Zisserman (2015)'s configurations A, B, D, E (VGG-11, -13,
-16, -19) as used on 32x32 images (e.g. Li et al. 2017, "Pruning Filters for Efficient ConvNets"):
conv3x3-BN-ReLU stacks of 64-128-256-512-512 channels, a 2x2 stride-2 max-pool after each of the five
stacks, global average (the 1x1 map after five pools) and Linear(512 -> classes).

Its five max-pools are the canonical pooling network's downsampling points; ``model.downsample``
rebuilds them by the rule of :mod:`poolstudy.models.surgery` (``published``: the five max-pools).
VGG-16 on 10 classes: 14,728,266 parameters and 313.2 M MACs per 32x32 image (Li et al. 2017:
1.5e7 parameters, 3.13e8 FLOPs, with one more 512x512 hidden layer).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from poolstudy.errors import PoolStudyError
from poolstudy.models.downsample import Downsample
from poolstudy.models.fast_cpu import FastCPUDropout, FastCPUMaxPool2d, global_mean
from poolstudy.models.resnet import check_dropout
from poolstudy.models.surgery import rebuild

POOL = "M"
#: convolution widths per depth, "M" = the 2x2 max-pool (the paper's configurations A, B, D, E)
CONFIGS: dict[int, tuple[int | str, ...]] = {
    11: (64, POOL, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    13: (64, 64, POOL, 128, 128, POOL, 256, 256, POOL, 512, 512, POOL, 512, 512, POOL),
    16: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, POOL, 512, 512, 512, POOL, 512, 512, 512, POOL),
    19: (64, 64, POOL, 128, 128, POOL, 256, 256, 256, 256, POOL, 512, 512, 512, 512, POOL,
         512, 512, 512, 512, POOL),
}


class CifarVGG(nn.Module):
    """The published network (five 2x2 max-pools); channel counts scaled by ``width``."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 11, width: float = 1.0,
                 dropout: float = 0.0):
        super().__init__()
        if depth not in CONFIGS:
            raise PoolStudyError(f"model.depth = {depth!r} is not valid for arch=vgg: it must be one of "
                                 f"{', '.join(map(str, CONFIGS))}.")
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
            raise PoolStudyError(f"model.width = {width!r} is not valid for arch=vgg: it must be a number > 0 "
                                 f"(1 is the paper's 64-512 channels).")
        layers: list[nn.Module] = []
        channels = in_channels
        for item in CONFIGS[depth]:
            if item == POOL:
                layers.append(FastCPUMaxPool2d(2, 2))
            else:
                out = max(1, round(item * width))
                layers += [nn.Conv2d(channels, out, 3, padding=1), nn.BatchNorm2d(out), nn.ReLU()]
                channels = out
        self.features = nn.Sequential(*layers)
        self.dropout = FastCPUDropout(dropout) if check_dropout(dropout) > 0 else None
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():  # torchvision's VGG initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = global_mean(self.features(x))
        return self.fc(x if self.dropout is None else self.dropout(x))


def vgg(in_channels: int, num_classes: int, downsample: Mapping[str, Any] | Downsample, depth: int = 11,
        width: float = 1.0, dropout: float = 0.0) -> nn.Module:
    """``arch=vgg``: the CIFAR VGG of ``depth`` with its five max-pools rebuilt by ``downsample``.
    ``dropout`` > 0 adds a Dropout before the classifier (for the HPO space's model.dropout)."""
    net = CifarVGG(in_channels, num_classes, depth, width, dropout)
    return rebuild(net, downsample, (in_channels, 32, 32), label=f"arch=vgg model.depth={depth}")
