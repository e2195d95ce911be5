"""The seed's LeNet, with its two downsampling points built from the operator registry."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from poolstudy.errors import PoolStudyError
from poolstudy.models.downsample import Downsample, conv_stage, create_downsample
from poolstudy.models.fast_cpu import FastCPUDropout, global_mean

#: Where LeNet's one Dropout layer sits (``model.dropout_position``).
DROPOUT_POSITIONS = ("before_bn", "after_bn")


class LeNet(nn.Module):
    """conv(in->6,k5,p2)-ReLU-[down]-Dropout -> conv(6->16,k5,p2)-BN-ReLU-[down]
    -> conv(16->120,k5)-BN-ReLU -> global mean -> Linear(120->classes).

    With ``downsample.type=maxpool`` (k2, s2) this is exactly the seed's original model;
    with ``strided`` (k5, s2) exactly its modified one.

    ``dropout_position`` places the Dropout(``dropout``) layer:

    - ``before_bn`` (default, the seed's model): after stage 1, so that every BatchNorm layer
      downstream (conv2's and conv3's) sees dropped-out activations while training and clean
      ones at evaluation. Its running variance then does not match its evaluation-time input,
      the "variance shift" of Li et al. (2019), "Understanding the Disharmony between Dropout
      and Batch Normalization by Variance Shift", CVPR 2019.
    - ``after_bn``: on the 120 pooled features, after the last BatchNorm + ReLU and right before
      the classifier: Li et al.'s first remedy ("apply Dropout after all BN layers", Sec. 5),
      so that no BatchNorm input ever passes through dropout. Dropout after stage 2 would not
      do: conv3's BatchNorm would still see its output. Same layers, same parameters (dropout
      has none), same MACs; only the dropped tensor differs.

    Raises PoolStudyError for a ``dropout_position`` outside DROPOUT_POSITIONS.
    """

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        downsample: Mapping[str, Any] | Downsample,
        dropout: float = 0.4,
        widths: tuple[int, int, int] = (6, 16, 120),
        kernel_size: int = 5,
        dropout_position: str = "before_bn",
    ):
        super().__init__()
        if dropout_position not in DROPOUT_POSITIONS:
            raise PoolStudyError(f"model.dropout_position = {dropout_position!r} is not valid: it must be one of "
                                 f"{', '.join(DROPOUT_POSITIONS)} (before_bn is the seed's model).")
        ds = create_downsample(downsample)
        c1, c2, c3 = widths
        pad = kernel_size // 2
        stage1_dropout = dropout if dropout_position == "before_bn" else 0.0
        self.conv1 = conv_stage(in_channels, c1, kernel_size, pad, ds, norm=False, dropout=stage1_dropout)
        self.conv2 = conv_stage(c1, c2, kernel_size, pad, ds, norm=True)
        self.conv3 = nn.Sequential(nn.Conv2d(c2, c3, kernel_size), nn.BatchNorm2d(c3), nn.ReLU())
        if dropout_position == "after_bn" and dropout > 0:
            # registered only here, so that the seed's model keeps exactly its module tree
            self.head_dropout = FastCPUDropout(dropout)
        self.fc = nn.Linear(c3, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(N, num_classes)`` of normalised images ``(N, in_channels, H, W)``."""
        x = global_mean(self.conv3(self.conv2(self.conv1(x))))
        if "head_dropout" in self._modules:
            x = self.head_dropout(x)
        return self.fc(x)
