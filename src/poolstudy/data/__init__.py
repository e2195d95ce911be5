"""Datasets as device-resident tensors with a fixed stratified validation split."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from poolstudy.data.catalogue import load_raw
from poolstudy.data.loader import Normalizer, TensorBatches
from poolstudy.data.shifts import check_shift, translate_test_images
from poolstudy.data.splits import stratified_split, stratified_subset
from poolstudy.errors import PoolStudyError

log = logging.getLogger(__name__)


@dataclass
class DataSplits:
    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    classes: list[str]
    mean: list[float]
    std: list[float]
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.train[0].shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    def batches(self, split: str, batch_size: int, device: torch.device, shuffle=False, generator=None) -> TensorBatches:
        x, y = getattr(self, split)
        return TensorBatches(x, y, batch_size, Normalizer(self.mean, self.std, device), shuffle, generator)

    def to(self, device: torch.device) -> DataSplits:
        move = lambda pair: (pair[0].to(device), pair[1].to(device))  # noqa: E731
        return DataSplits(move(self.train), move(self.val), move(self.test), self.classes, self.mean, self.std, self.source)


def _check_declared(cfg: Any, key: str, declared: Any, actual: Any) -> None:
    if declared is not None and declared != actual:
        raise PoolStudyError(
            f"dataset.{key} = {declared} but the data in use has {actual}. Fix dataset.{key} "
            f"(or set it to null to take it from the files)."
        )


def load_splits(cfg: Any, data_dir: str | Path, cache_dir: str | Path) -> DataSplits:
    """Load ``cfg`` (the ``dataset`` config node) and apply subsets and the validation split."""
    raw = load_raw(cfg.name, Path(data_dir), Path(cache_dir), bool(cfg.get("download", False)), cfg.get("root"))
    train_x, train_y, test_x, test_y = raw.train_x, raw.train_y, raw.test_x, raw.test_y
    _check_declared(cfg, "channels", cfg.get("channels"), train_x.shape[1])
    _check_declared(cfg, "image_size", cfg.get("image_size"), train_x.shape[2])
    _check_declared(cfg, "num_classes", cfg.get("num_classes"), len(raw.classes))
    split_seed = int(cfg.split_seed)
    if cfg.get("train_subset"):
        keep = stratified_subset(train_y, int(cfg.train_subset), split_seed)
        train_x, train_y = train_x[keep], train_y[keep]
    if cfg.get("test_subset"):
        keep = stratified_subset(test_y, int(cfg.test_subset), split_seed)
        test_x, test_y = test_x[keep], test_y[keep]
    source = raw.source
    test_shift = int(cfg.get("test_shift") or 0)
    if test_shift:  # the controlled shifted test set; training and validation stay centred
        padding = cfg.get("test_shift_padding", "zero")
        check_shift("dataset.test_shift", test_shift, tuple(test_x.shape))
        test_x = translate_test_images(test_x, test_shift, padding, split_seed)
        source += f"; test images shifted by {test_shift} px ({padding} padding)"
    fit_idx, val_idx = stratified_split(train_y, float(cfg.val_fraction), split_seed)
    fit_x, fit_y = train_x[fit_idx], train_y[fit_idx]
    mean, std = cfg.get("mean"), cfg.get("std")
    if mean is None or std is None:  # statistics of the training part only, never val/test
        pixels = fit_x.float().div_(255).transpose(0, 1).reshape(fit_x.shape[1], -1)
        mean, std = pixels.mean(1).tolist(), pixels.std(1).tolist()
    if len(mean) != fit_x.shape[1] or len(std) != fit_x.shape[1]:
        raise PoolStudyError(
            f"dataset.mean / dataset.std have {len(mean)} / {len(std)} entries but the images have "
            f"{fit_x.shape[1]} channel(s); give one value per channel or null to compute them."
        )
    return DataSplits(
        train=(fit_x, fit_y),
        val=(train_x[val_idx], train_y[val_idx]),
        test=(test_x, test_y),
        classes=list(raw.classes),
        mean=[float(m) for m in mean],
        std=[float(s) for s in std],
        source=source,
    )


__all__ = ["DataSplits", "Normalizer", "TensorBatches", "load_raw", "load_splits", "stratified_split"]
