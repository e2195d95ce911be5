"""Read each dataset's files into uint8 tensors (N, C, H, W) plus int64 labels.

Every reader returns a :class:`RawDataset`. Readers accept the official distributions
(torchvision's layout, including the gzip IDX files of MNIST/Fashion-MNIST whose archive
checksums need not match torchvision's table), archives of image folders (the folders
themselves: :mod:`poolstudy.data.imagefolder`) and torchvision's own layouts.
"""

from __future__ import annotations

import errno
import gzip
import os
import shutil
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from poolstudy.errors import DataError


@dataclass
class RawDataset:
    train_x: torch.Tensor  # uint8 (N, C, H, W)
    train_y: torch.Tensor  # int64 (N,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    classes: list[str]
    source: str  # human-readable description of where the data came from
    files: list[Path] = field(default_factory=list)  # the files or folders read (cache keys: catalogue.Located)


# ---------------------------------------------------------------- MNIST-like (IDX)

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


# ---------------------------------------------------------------- archives


def extract_tar(archive: Path, dest: Path) -> Path:
    """Unpack ``archive`` into ``dest`` (in the writable cache; data_dir may be read-only).

    ``dest`` must be named after the archive's content (see :mod:`poolstudy.data.cachekey`): an
    existing ``dest`` is complete and reused. Extraction goes to a private temporary folder
    renamed into place, so a killed or concurrent extraction never leaves a half-filled ``dest``.
    """
    if dest.is_dir():
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp"))
    try:
        with tarfile.open(archive) as tar:
            tar.extractall(tmp, filter="data")
        os.rename(tmp, dest)
    except (tarfile.TarError, OSError, EOFError) as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        if dest.is_dir():  # another process finished the same extraction first
            return dest
        if getattr(exc, "errno", None) == errno.ENOSPC:
            raise DataError(f"No space left in {dest.parent} to extract {archive}; free space or set cache_dir.") from None
        raise DataError(f"Cannot extract {archive}: {exc}. The archive is damaged; replace it.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest


# ---------------------------------------------------------------- torchvision classes


def read_torchvision(cls_name: str, root: Path, download: bool, label: str) -> RawDataset:
    """Use torchvision's dataset class on its own layout under ``root``."""
    import torchvision.datasets as tvd

    cls = getattr(tvd, cls_name)
    try:
        train = cls(str(root), train=True, download=download)
        test = cls(str(root), train=False, download=download)
    except RuntimeError as exc:  # torchvision's "Dataset not found" / integrity errors
        raise DataError(f"torchvision could not load {cls_name} from {root}: {exc}") from None
    except OSError as exc:  # network failure while downloading
        raise DataError(f"Downloading {cls_name} into {root} failed ({exc}); no network?") from None

    def tensors(ds):
        x = torch.as_tensor(np.asarray(ds.data))
        x = x.unsqueeze(1) if x.dim() == 3 else x.permute(0, 3, 1, 2)
        return x.contiguous(), torch.as_tensor(np.asarray(ds.targets), dtype=torch.int64)

    (trx, try_), (tex, tey) = tensors(train), tensors(test)
    return RawDataset(trx, try_, tex, tey, list(train.classes), f"{label} via torchvision.datasets.{cls_name} in {root}", [root])
