"""Stratified, seeded subsets and the validation hold-out."""

from __future__ import annotations

import torch


def _per_class_counts(class_sizes: torch.Tensor, total: int) -> torch.Tensor:
    """Split ``total`` over classes in proportion to their sizes (largest remainder, exact sum)."""
    quota = class_sizes.double() * total / class_sizes.sum()
    counts = quota.floor().long()
    remainder = quota - counts
    short = total - int(counts.sum())
    if short > 0:
        counts[torch.argsort(remainder, descending=True, stable=True)[:short]] += 1
    return torch.minimum(counts, class_sizes)


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held_out): round(fraction * N) samples held out, in proportion per class.

    The same labels, fraction and seed always give the same split, whatever the model or
    training seed, so every variant is selected on the same validation images.
    """
    gen = torch.Generator().manual_seed(seed)
    classes, sizes = torch.unique(labels, sorted=True, return_counts=True)
    counts = _per_class_counts(sizes, int(round(fraction * len(labels))))
    kept, held = [], []
    for cls, n_held in zip(classes, counts.tolist()):
        idx = torch.nonzero(labels == cls, as_tuple=True)[0]
        idx = idx[torch.randperm(len(idx), generator=gen)]
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Indices of a class-balanced subset of exactly ``size`` samples (all if size >= len)."""
    if size >= len(labels):
        return torch.arange(len(labels))
    _, subset = stratified_split(labels, size / len(labels), seed)
    return subset
