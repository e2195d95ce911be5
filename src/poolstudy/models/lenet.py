"""The seed's LeNet, with its two downsampling points built from the operator registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from poolstudy.models.downsample import Downsample, conv_stage, create_downsample
from poolstudy.models.layers import global_mean


class LeNet(nn.Module):
    """conv(in->6,k5,p2)-ReLU-[down]-Dropout -> conv(6->16,k5,p2)-BN-ReLU-[down]
    -> conv(16->120,k5)-BN-ReLU -> global mean -> Linear(120->classes).

    With ``downsample.type=maxpool`` (k2, s2) this is exactly the seed's original model;
    with ``strided`` (k5, s2) exactly its modified one.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        downsample: Mapping[str, Any] | Downsample,
        dropout: float = 0.4,
        widths: tuple[int, int, int] = (6, 16, 120),
        kernel_size: int = 5,
    ):
        super().__init__()
        ds = create_downsample(downsample)
        c1, c2, c3 = widths
        pad = kernel_size // 2
        self.conv1 = conv_stage(in_channels, c1, kernel_size, pad, ds, norm=False, dropout=dropout)
        self.conv2 = conv_stage(c1, c2, kernel_size, pad, ds, norm=True)
        self.conv3 = nn.Sequential(nn.Conv2d(c2, c3, kernel_size), nn.BatchNorm2d(c3), nn.ReLU())
        self.fc = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv3(self.conv2(self.conv1(x)))
        return self.fc(global_mean(x))
