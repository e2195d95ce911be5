"""Batches sliced from tensors that already live on the training device.

No per-sample Python and no DataLoader: the uint8 images sit on the device, an epoch is
one index permutation, and each batch is gathered, cast and normalised in one step.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import torch


class Normalizer:
    """uint8 -> float32 ``(x / 255 - mean) / std`` per channel, folded into one multiply-add."""

    def __init__(self, mean: Sequence[float], std: Sequence[float], device: torch.device):
        mean_t = torch.tensor(mean, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        std_t = torch.tensor(std, dtype=torch.float32, device=device).view(1, -1, 1, 1)
        self.scale = 1.0 / (255.0 * std_t)
        self.shift = -mean_t / std_t

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        return torch.addcmul(self.shift, x.float(), self.scale)


class TensorBatches:
    """Iterable of (normalised images, labels) batches over device-resident tensors."""

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        normalizer: Normalizer,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
    ):
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.normalize = normalizer
        self.shuffle = shuffle
        self.generator = generator

    def __len__(self) -> int:
        return (len(self.labels) + self.batch_size - 1) // self.batch_size

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        if self.shuffle:
            # permutation drawn on the CPU generator so the order is identical on every device
            order = torch.randperm(n, generator=self.generator).to(self.images.device)
            for start in range(0, n, self.batch_size):
                idx = order[start : start + self.batch_size]
                yield self.normalize(self.images[idx]), self.labels[idx]
        else:
            for start in range(0, n, self.batch_size):
                stop = start + self.batch_size
                yield self.normalize(self.images[start:stop]), self.labels[start:stop]
