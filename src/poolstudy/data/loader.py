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
    """Iterable of (normalised images, labels) batches over device-resident tensors.

    ``merge_single_last``: when the images do not fill the last batch but one (N mod
    batch_size == 1, N > batch_size), that single image joins the batch before it, which then
    holds batch_size + 1 images. A batch of one image cannot be used in training: BatchNorm
    on a 1x1 map has one value per channel and torch raises "Expected more than 1 value per
    channel". Every image is still seen once per epoch, and any other N gives exactly the
    batches it gave before (same permutation, same slices).
    """

    def __init__(
        self,
        images: torch.Tensor,
        labels: torch.Tensor,
        batch_size: int,
        normalizer: Normalizer,
        shuffle: bool = False,
        generator: torch.Generator | None = None,
        merge_single_last: bool = False,
    ):
        self.images, self.labels = images, labels
        self.batch_size = batch_size
        self.normalize = normalizer
        self.shuffle = shuffle
        self.generator = generator
        self.merge_single_last = merge_single_last

    def _starts(self) -> list[int]:
        n, size = len(self.labels), self.batch_size
        starts = list(range(0, n, size))
        if self.merge_single_last and len(starts) > 1 and n % size == 1:
            starts.pop()
        return starts

    def __len__(self) -> int:
        return len(self._starts())

    @property
    def num_samples(self) -> int:
        return len(self.labels)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        n = len(self.labels)
        starts = self._starts()
        stops = [*starts[1:], n]
        if self.shuffle:
            # permutation drawn on the CPU generator so the order is identical on every device
            order = torch.randperm(n, generator=self.generator).to(self.images.device)
            for start, stop in zip(starts, stops):
                idx = order[start:stop]
                yield self.normalize(self.images[idx]), self.labels[idx]
        else:
            for start, stop in zip(starts, stops):
                yield self.normalize(self.images[start:stop]), self.labels[start:stop]
