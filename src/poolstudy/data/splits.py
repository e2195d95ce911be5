"""Stratified, seeded subsets and the validation hold-out."""

from __future__ import annotations

import torch


def stratified_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (kept, held_out): ``fraction`` of every class held out, chosen by ``seed``.

    The same labels, fraction and seed always give the same split, whatever the model or
    training seed, so every variant is selected on the same validation images.
    """
    gen = torch.Generator().manual_seed(seed)
    kept, held = [], []
    for cls in torch.unique(labels, sorted=True):
        idx = torch.nonzero(labels == cls, as_tuple=True)[0]
        idx = idx[torch.randperm(len(idx), generator=gen)]
        n_held = int(round(fraction * len(idx)))
        held.append(idx[:n_held])
        kept.append(idx[n_held:])
    return torch.sort(torch.cat(kept)).values, torch.sort(torch.cat(held)).values


def stratified_subset(labels: torch.Tensor, size: int, seed: int) -> torch.Tensor:
    """Indices of a class-balanced subset of about ``size`` samples (all if size >= len)."""
    if size >= len(labels):
        return torch.arange(len(labels))
    _, subset = stratified_split(labels, size / len(labels), seed)
    return subset
