"""A dataset as a job uses it: the source's tensors cut into training, validation and test splits.

:func:`load_splits` applies, in this order, the stratified subsets (``dataset.train_subset``,
``test_subset``), the controlled test-set shift (``test_shift``), the fixed stratified validation
hold-out (``val_fraction``, ``split_seed``) and the normalisation statistics (given, or computed on
the training part only); :class:`DataSplits` hands out device-resident batches of each split.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from poolstudy.data.catalogue import load_raw
from poolstudy.data.imagefolder import COLOR_MODES
from poolstudy.data.loader import Normalizer, TensorBatches
from poolstudy.data.shifts import check_shift, translate_test_images
from poolstudy.data.splits import stratified_split, stratified_subset
from poolstudy.errors import DataError, PoolStudyError

log = logging.getLogger(__name__)


@dataclass
class DataSplits:
    """A job's data: ``(images, labels)`` per split, images uint8 ``(N, C, H, W)`` (raw pixels, 0–255), labels
    int64 ``(N,)`` in ``[0, num_classes)``; ``mean`` and ``std`` (per channel, pixel values scaled to [0, 1])
    normalise batches; ``source`` names the files read (``metrics.json``'s ``dataset.source``)."""

    train: tuple[torch.Tensor, torch.Tensor]
    val: tuple[torch.Tensor, torch.Tensor]
    test: tuple[torch.Tensor, torch.Tensor]
    classes: list[str]
    mean: list[float]
    std: list[float]
    source: str

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """``(C, H, W)`` of one image."""
        return tuple(self.train[0].shape[1:])  # type: ignore[return-value]

    @property
    def num_classes(self) -> int:
        """Number of classes (``len(classes)``)."""
        return len(self.classes)

    def batches(self, split: str, batch_size: int, device: torch.device, shuffle=False, generator=None) -> TensorBatches:
        """Batches of ``split``; on "train" a last batch of one image joins the one before (see TensorBatches)."""
        x, y = getattr(self, split)
        return TensorBatches(x, y, batch_size, Normalizer(self.mean, self.std, device), shuffle, generator,
                             merge_single_last=split == "train")

    def to(self, device: torch.device) -> DataSplits:
        """The same splits with every tensor on ``device`` (still uint8: batches are normalised when sliced)."""
        move = lambda pair: (pair[0].to(device), pair[1].to(device))  # noqa: E731
        return DataSplits(move(self.train), move(self.val), move(self.test), self.classes, self.mean, self.std, self.source)


def _check_declared(cfg: Any, key: str, declared: Any, actual: Any) -> None:
    if declared is not None and declared != actual:
        raise PoolStudyError(
            f"dataset.{key} = {declared} but the data in use has {actual}. Fix dataset.{key} "
            f"(or set it to null to take it from the files)."
        )


def _check_not_constant(cfg: Any, images: torch.Tensor) -> None:
    """Refuse a channel whose every training pixel has one value: its std is 0 and normalising gives nan."""
    lo, hi = images.amin(dim=(0, 2, 3)), images.amax(dim=(0, 2, 3))
    constant = [c for c in range(images.shape[1]) if lo[c] == hi[c]]
    if not constant:
        return
    names = {1: ["gray"], 3: ["red", "green", "blue"]}.get(images.shape[1], [str(c) for c in range(images.shape[1])])
    which = ", ".join(f"channel {c} ({names[c]}) is {int(lo[c])} everywhere" for c in constant)
    if len(constant) == images.shape[1]:
        fix = "Every training image is one uniform colour: check the files (and dataset.train_subset)."
    elif "color_mode" in cfg:
        fix = "Set dataset.color_mode=grayscale to train on one luminance channel, or fix the images."
    else:
        fix = "Check the files."
    raise DataError(
        f"The training images of dataset {cfg.name} have a channel with zero variance: {which}. Its standard "
        f"deviation is 0, so normalisation would divide by zero and training would end in a nan loss. {fix}"
    )


def _yaml(value: Any) -> str:
    return "null" if value is None else str(value)


def _check_nonempty(split: str, n: int, cfg: Any) -> None:
    minimum = 2 if split == "training" else 1  # one training image cannot pass a BatchNorm in train mode
    if n < minimum:
        raise DataError(
            f"The {split} set of dataset {cfg.name} holds {n} image(s) (dataset.train_subset="
            f"{_yaml(cfg.get('train_subset'))}, val_fraction={cfg.val_fraction}, test_subset="
            f"{_yaml(cfg.get('test_subset'))}). Use more images or a "
            f"val_fraction that leaves at least 2 for training and 1 for validation."
        )


def load_splits(cfg: Any, data_dir: str | Path, cache_dir: str | Path) -> DataSplits:
    """Load ``cfg`` (the ``dataset`` config node) and apply subsets and the validation split.

    Relative ``data_dir``, ``cache_dir`` and ``dataset.root`` are resolved against the
    directory train.py was started in (Hydra's ``hydra.runtime.cwd``), also under
    ``hydra.job.chdir=true``.

    Returns:
        :class:`DataSplits` on the CPU: ``dataset.train_subset`` / ``test_subset`` taken (stratified), the
        controlled test shift applied, and ``val_fraction`` of the training images held out (stratified,
        fixed by ``split_seed``; the same for every model and training seed).

    Raises:
        DataError: files missing (and not downloadable), truncated or unreadable; an image folder with empty or
            mismatched classes; a channel with zero variance; an unknown ``color_mode``.
        PoolStudyError: a split left empty by the subset and validation settings.
    """
    color_mode = cfg.get("color_mode", "auto")
    if color_mode not in COLOR_MODES:
        raise DataError(f"dataset.color_mode = {color_mode!r} is not valid: it must be one of {', '.join(COLOR_MODES)}.")
    raw = load_raw(cfg.name, data_dir, cache_dir, cfg.get("download", False), cfg.get("root"), color_mode,
                   cfg.get("_target_"))
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
    _check_nonempty("training", len(fit_y), cfg)
    _check_nonempty("validation", len(val_idx), cfg)
    _check_nonempty("test", len(test_y), cfg)
    _check_not_constant(cfg, fit_x)
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

