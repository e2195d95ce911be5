"""He et al. (2016), "Deep Residual Learning for Image Recognition", section 4.2: the CIFAR-10 ResNets.

conv3x3(16)-BN-ReLU, then three stages of n basic blocks with 16, 32 and 64 channels (depth = 6n + 2),
global average, Linear(64 -> classes). The first block of stages 2 and 3 halves the map with a
stride-2 3x3 convolution; its shortcut is option A (parameter-free: subsample, then zero channels)
or option B (a 1x1 stride-2 projection + BN). Those two blocks are the network's downsampling points;
``model.downsample`` rebuilds them by the rule of :mod:`poolstudy.models.surgery` (``published`` and
``strided`` keep them as in the paper).

Parameters on 10 classes (option A): ResNet-20 269,722; -32 464,154; -44 658,586; -56 853,018;
-110 1,727,962 (the paper's Table 6: 0.27 M, 0.46 M, 0.66 M, 0.85 M, 1.7 M).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from poolstudy.errors import PoolStudyError
from poolstudy.models.downsample import Downsample
from poolstudy.models.fast_cpu import FastCPUDropout, global_mean
from poolstudy.models.surgery import Subsample, rebuild

#: the depths of the paper's Table 6 (any 6n + 2 is accepted)
PAPER_DEPTHS = (20, 32, 44, 56, 110)
WIDTHS = (16, 32, 64)


class BasicBlock(nn.Module):
    """conv3x3(stride)-BN-ReLU-conv3x3-BN, plus the shortcut, then ReLU."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, shortcut: str):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.relu2 = nn.ReLU()
        self.shortcut: nn.Module | None = None
        if stride != 1 or in_channels != out_channels:
            if shortcut == "A":
                self.shortcut = Subsample(in_channels, out_channels, stride)
            else:
                self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride, bias=False),
                                              nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        return self.relu2(out + (x if self.shortcut is None else self.shortcut(x)))


class CifarResNet(nn.Module):
    """The published network (downsampling by stride-2 convolutions); see the module docstring."""

    def __init__(self, in_channels: int, num_classes: int, depth: int = 20, shortcut: str = "A",
                 dropout: float = 0.0):
        super().__init__()
        if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
            raise PoolStudyError(
                f"model.depth = {depth!r} is not valid for arch=resnet: it must be 6n + 2 for an integer n >= 1 "
                f"(the paper's depths: {', '.join(map(str, PAPER_DEPTHS))})."
            )
        if shortcut not in ("A", "B"):
            raise PoolStudyError(
                f"model.shortcut = {shortcut!r} is not valid for arch=resnet: it must be A (parameter-free: "
                f"subsample and zero channels, the paper's CIFAR choice) or B (1x1 projections where the size changes)."
            )
        blocks = (depth - 2) // 6
        self.conv1 = nn.Conv2d(in_channels, WIDTHS[0], 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(WIDTHS[0])
        self.relu = nn.ReLU()
        stages, channels = [], WIDTHS[0]
        for i, width in enumerate(WIDTHS):
            layers = []
            for j in range(blocks):
                layers.append(BasicBlock(channels, width, 2 if i > 0 and j == 0 else 1, shortcut))
                channels = width
            stages.append(nn.Sequential(*layers))
        self.layer1, self.layer2, self.layer3 = stages
        self.dropout = FastCPUDropout(dropout) if check_dropout(dropout) > 0 else None
        self.fc = nn.Linear(channels, num_classes)
        for m in self.modules():  # He et al. (2015)'s initialisation, as the paper uses
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = global_mean(self.layer3(self.layer2(self.layer1(self.relu(self.bn1(self.conv1(x)))))))
        return self.fc(x if self.dropout is None else self.dropout(x))


def check_dropout(dropout: Any) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) or not 0 <= dropout < 1:
        raise PoolStudyError(f"model.dropout = {dropout!r} is not valid: it must be a number in [0, 1) "
                             f"(0: no dropout layer, the published network).")
    return float(dropout)


def resnet(in_channels: int, num_classes: int, downsample: Mapping[str, Any] | Downsample, depth: int = 20,
           shortcut: str = "A", dropout: float = 0.0) -> nn.Module:
    """``arch=resnet``: the CIFAR ResNet of ``depth`` with its two downsampling points rebuilt by
    ``downsample`` (``model=published`` / ``strided``: the paper's network itself). ``dropout`` > 0
    adds a Dropout before the classifier (not in the paper; for the HPO space's model.dropout)."""
    net = CifarResNet(in_channels, num_classes, depth, shortcut, dropout)
    return rebuild(net, downsample, (in_channels, 32, 32), label=f"arch=resnet model.depth={depth}")
