"""Loss and accuracy of a model over a split, in evaluation mode."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from poolstudy.data.loader import TensorBatches


@torch.inference_mode()
def evaluate(model: nn.Module, batches: TensorBatches) -> tuple[float, float]:
    """Mean cross-entropy (nats per image) and accuracy (fraction in [0, 1]) over all batches, in eval mode.

    Args:
        model: maps a normalised batch ``(B, C, H, W)`` to logits ``(B, classes)``.
        batches: the split's batches (images and labels on the model's device).
    """
    model.eval()
    device = batches.images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    for x, y in batches:
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum")
        correct += (logits.argmax(1) == y).sum()
    n = batches.num_samples
    return loss_sum.item() / n, correct.item() / n
