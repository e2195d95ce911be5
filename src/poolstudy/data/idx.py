"""MNIST-like datasets in IDX files (MNIST, Fashion-MNIST): where they are looked for, and reading them.

The four files (``train-images-idx3-ubyte``, ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
``t10k-labels-idx1-ubyte``, each optionally ``.gz``) are looked for in ``<data_dir>/<Folder>/raw`` (the
official distribution and torchvision's layout, whose archive checksums need not match torchvision's
table), then in ``<cache_dir>/download/<Folder>/raw``; with ``dataset.download`` they are fetched there.
Images become uint8 tensors (N, 1, H, W), labels int64 (N,).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import torch

from poolstudy.data.cache import writable
from poolstudy.data import download as downloads
from poolstudy.data.raw import Located, RawDataset, no_read
from poolstudy.errors import DataError

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DATASETS = {
    # name: (torchvision class and folder, classes, label)
    "mnist": ("MNIST", MNIST_CLASSES, "MNIST"),
    "fashion_mnist": ("FashionMNIST", FASHION_CLASSES, "Fashion-MNIST"),
}

_IDX_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}
_IDX_MAGIC = {3: 2051, 1: 2049}


def parse_idx(data: bytes, path: Path) -> np.ndarray:
    """Decode an IDX (ubyte) file: images (N, H, W) or labels (N,)."""
    if len(data) < 8:
        raise DataError(f"{path} is truncated or not an IDX file (only {len(data)} bytes).")
    magic = int.from_bytes(data[:4], "big")
    ndim = data[3]
    if data[2] != 0x08 or ndim not in _IDX_MAGIC or magic != _IDX_MAGIC[ndim]:
        raise DataError(f"{path} is not an unsigned-byte IDX file (magic number {magic}); re-download it.")
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    offset = 4 + 4 * ndim
    expected = offset + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(
            f"{path} is truncated or corrupted: it holds {len(data)} bytes but its header "
            f"announces {expected}; replace it with a fresh copy."
        )
    return np.frombuffer(data, dtype=np.uint8, offset=offset).reshape(dims)


def _read_idx_file(path: Path) -> np.ndarray:
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                data = fh.read()
        else:
            data = path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(f"Cannot read {path}: {exc}. The file is damaged; replace it with a fresh copy.") from None
    return parse_idx(data, path)


def find_idx_files(raw_dir: Path) -> dict[str, Path] | None:
    found = {}
    for key, stem in _IDX_FILES.items():
        for candidate in (raw_dir / stem, raw_dir / f"{stem}.gz"):
            if candidate.is_file():
                found[key] = candidate
                break
        else:
            return None
    return found


def read_idx_dataset(raw_dir: Path, classes: list[str], label: str) -> RawDataset:
    files = find_idx_files(raw_dir)
    assert files is not None
    arrays = {key: _read_idx_file(path) for key, path in files.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
            raise DataError(
                f"{files[split + '_x']} and {files[split + '_y']} disagree on the number of samples "
                f"({len(arrays[split + '_x'])} vs {len(arrays[split + '_y'])}); replace them."
            )
    return RawDataset(
        train_x=torch.from_numpy(arrays["train_x"].copy()).unsqueeze(1),
        train_y=torch.from_numpy(arrays["train_y"].astype(np.int64)),
        test_x=torch.from_numpy(arrays["test_x"].copy()).unsqueeze(1),
        test_y=torch.from_numpy(arrays["test_y"].astype(np.int64)),
        classes=classes,
        source=f"{label} IDX files in {raw_dir}",
        files=list(files.values()),
    )


def locate(name: str, data_dir: Path, cache_dir: Path, download: bool | str, root: str | None, color_mode: str,
           hint: str) -> Located:
    """Where ``name``'s files are, or how to fetch them (``download``: True, False or "auto"); DataError when
    they are missing. The signature every source's ``locate`` has (``poolstudy.data.catalogue``)."""
    if name not in DATASETS:
        raise DataError(f"dataset.name = {name!r} is not a dataset in IDX files (dataset._target_ = "
                        f"poolstudy.data.idx.locate); those are: {', '.join(DATASETS)}.")
    folder, classes, label = DATASETS[name]
    for root in (data_dir, cache_dir / "download"):
        raw_dir = root / folder / "raw"
        files = find_idx_files(raw_dir)
        if files:
            return Located([(key, path) for key, path in files.items()],
                           lambda raw_dir=raw_dir: read_idx_dataset(raw_dir, classes, label),
                           f"{label} IDX files in {raw_dir}")
    fetch, why = downloads.should_download(download, folder)
    if fetch:
        target = cache_dir / "download"
        return Located([], no_read, "", fetch=lambda: downloads.fetch_with_torchvision(folder, writable(target)))
    raise DataError(
        f"{label} not found: expected the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz) in {data_dir / folder / 'raw'}"
        f"{hint}. It was not downloaded: {why}. Point data_dir (or the POOLSTUDY_DATA environment variable) at a "
        f"folder holding {folder}/raw/, {downloads.download_fix(cache_dir)}."
    )
