"""What a source gives: where its files are (:class:`Located`) and the decoded tensors (:class:`RawDataset`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch


@dataclass
class RawDataset:
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str  # human-readable description of where the data came from
    files: list[Path] = field(default_factory=list)  # the files or folders read (cache keys: Located.files)


@dataclass
class Located:
    files: list[tuple[str, Path]]  # (role or relative name, file): the content the cache key is made of
    read: Callable[[], RawDataset]
    source: str  # what and where, with absolute paths (recorded in metrics.json)
    settings: tuple[str, ...] = ()  # decoding settings that change the tensors
    fetch: Callable[[], None] | None = None  # set when the files must be downloaded first


def no_read() -> RawDataset:
    """``Located.read`` of files that must be fetched first."""
    raise AssertionError("fetch first")
