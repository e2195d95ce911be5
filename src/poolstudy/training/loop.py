"""The training loop: one screen, plain PyTorch."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from poolstudy.data.loader import TensorBatches
from poolstudy.errors import TrainingDivergedError


@dataclass
class EpochStats:
    loss: float
    acc: float
    seconds: float


def train_epoch(model: nn.Module, batches: TensorBatches, optimizer, scheduler=None, progress: bool | None = None,
                desc: str = "train") -> EpochStats:
    model.train()
    device = batches.images.device
    loss_sum = torch.zeros((), device=device)
    correct = torch.zeros((), device=device, dtype=torch.long)
    start = time.perf_counter()
    for x, y in tqdm(batches, desc=desc, disable=None if progress is None else not progress,
                     leave=False, unit="batch"):
        logits = model(x)
        loss = F.cross_entropy(logits, y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        # accumulated on the device: no host sync per step
        loss_sum += loss.detach() * len(y)
        correct += (logits.detach().argmax(1) == y).sum()
    n = batches.num_samples
    mean_loss = loss_sum.item() / n
    if not math.isfinite(mean_loss):
        raise TrainingDivergedError(f"training loss became {mean_loss}")
    return EpochStats(mean_loss, correct.item() / n, time.perf_counter() - start)
