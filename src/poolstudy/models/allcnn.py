"""Springenberg et al. (2015), "Striving for Simplicity: The All Convolutional Net": the CIFAR-10
Model C family, with both downsampling points built from the operator registry.

    maxpool  (k3, s2, p1) -> Model C
    strided  (k3, s2, p1) -> Strided-CNN-C
    convpool (k3, s2, p1) -> ConvPool-CNN-C
    conv     (k3, s2, p1) -> All-CNN-C
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from poolstudy.errors import PoolStudyError
from poolstudy.models.downsample import Downsample, conv_stage, create_downsample
from poolstudy.models.fast_cpu import FastCPUDropout, global_mean

#: The paper's 3x3 pool with stride 2 (and its strided/extra convolutions). Padding 1 gives the
#: paper's 6x6 maps before global averaging on 32x32 inputs (32 -> 16 -> 8 -> valid 3x3 -> 6).
#: conf/model/ holds LeNet's windows; sweeps/allcnn_c_family.yaml sets these values.
MODEL_C_WINDOW = {"kernel_size": 3, "stride": 2, "padding": 1}


def _check_fraction(key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise PoolStudyError(f"model.{key} = {value!r} is not valid: it must be a number in [0, 1).")
    return float(value)


class AllCNNC(nn.Module):
    """Dropout(input_dropout) -> conv3x3(96)-ReLU -> conv3x3(96)-ReLU-[down]-Dropout(dropout)
    -> conv3x3(192)-ReLU -> conv3x3(192)-ReLU-[down]-Dropout(dropout)
    -> conv3x3(192, valid)-ReLU -> conv1x1(192)-ReLU -> conv1x1(classes)-ReLU -> global mean.

    Channel counts are scaled by ``width`` (0.25 trains on a CPU). The paper's table puts a
    ReLU on the class scores; ``class_relu=false`` drops it. No BatchNorm, as in the paper.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        downsample: Mapping[str, Any] | Downsample,
        width: float = 1.0,
        input_dropout: float = 0.2,
        dropout: float = 0.5,
        class_relu: bool = True,
    ):
        super().__init__()
        if isinstance(width, bool) or not isinstance(width, (int, float)) or not math.isfinite(width) or width <= 0:
            raise PoolStudyError(
                f"model.width = {width!r} is not valid: it must be a number > 0 (1 is the paper's 96/192 channels)."
            )
        input_dropout, dropout = _check_fraction("input_dropout", input_dropout), _check_fraction("dropout", dropout)
        ds = create_downsample(downsample)
        c1, c2 = max(1, round(96 * width)), max(1, round(192 * width))

        def stage(cin: int, cout: int, first: list[nn.Module]) -> nn.Sequential:
            # Springenberg's downsampling follows the second 3x3 convolution of each stage.
            head = [*first, nn.Conv2d(cin, cout, 3, padding=1), nn.ReLU()]
            return nn.Sequential(*head, *conv_stage(cout, cout, 3, 1, ds, norm=False, dropout=dropout))

        self.conv1 = stage(in_channels, c1, [FastCPUDropout(input_dropout)] if input_dropout > 0 else [])
        self.conv2 = stage(c1, c2, [])
        self.conv3 = nn.Sequential(nn.Conv2d(c2, c2, 3), nn.ReLU(), nn.Conv2d(c2, c2, 1), nn.ReLU())
        self.classifier = nn.Sequential(nn.Conv2d(c2, num_classes, 1), *([nn.ReLU()] if class_relu else []))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores ``(N, num_classes)`` (ReLU'd when ``class_relu``) of normalised images ``(N, C, H, W)``."""
        x = self.classifier(self.conv3(self.conv2(self.conv1(x))))
        return global_mean(x)
