"""Where each dataset's files are looked for, and the decoded-tensor cache.

``load_raw`` finds a dataset's files, decodes them once into uint8 tensors and caches the
result under ``cache_dir`` (data_dir may be read-only), so that a second load takes well
under a second and a multirun in one process never decodes the same data twice.
"""

from __future__ import annotations

import hashlib
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from poolstudy.data.sources import (
    RawDataset,
    extract_tar,
    find_idx_files,
    read_idx_dataset,
    read_image_folder,
    read_torchvision,
)
from poolstudy.errors import DataError

log = logging.getLogger(__name__)

MNIST_CLASSES = [str(i) for i in range(10)]
FASHION_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
_IDX_DATASETS = {
    # name: (torchvision class and folder, classes, label)
    "mnist": ("MNIST", MNIST_CLASSES, "MNIST"),
    "fashion_mnist": ("FashionMNIST", FASHION_CLASSES, "Fashion-MNIST"),
}
CIFAR_JPEG_LABEL = "CIFAR-10 (JPEG q75 copy)"


@dataclass
class Located:
    files: list[Path]  # what identifies this copy of the data (for the cache key)
    read: Callable[[], RawDataset]


def _locate_idx(name: str, data_dir: Path, cache_dir: Path, download: bool) -> Located:
    folder, classes, label = _IDX_DATASETS[name]
    for root in (data_dir, cache_dir / "download"):
        raw_dir = root / folder / "raw"
        files = find_idx_files(raw_dir)
        if files:
            return Located(list(files.values()), lambda raw_dir=raw_dir: read_idx_dataset(raw_dir, classes, label))
    if download:
        target = cache_dir / "download"
        return Located([], lambda: read_torchvision(folder, target, True, label))
    raise DataError(
        f"{label} not found: expected the four IDX files (train-images-idx3-ubyte, train-labels-idx1-ubyte, "
        f"t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz) in {data_dir / folder / 'raw'}. "
        f"Point data_dir (or the POOLSTUDY_DATA environment variable) at a folder holding {folder}/raw/, "
        f"or set dataset.download=true on a machine with network access."
    )


def _locate_cifar10(data_dir: Path, cache_dir: Path, download: bool) -> Located:
    batches = data_dir / "cifar-10-batches-py"
    if batches.is_dir():
        return Located(sorted(batches.iterdir()), lambda: read_torchvision("CIFAR10", data_dir, False, "CIFAR-10"))
    folder = data_dir / "cifar10-jpeg"
    if (folder / "train").is_dir():
        return Located(_tree_files(folder), lambda: read_image_folder(folder, CIFAR_JPEG_LABEL))
    archive = data_dir / "cifar10-jpeg.tar.gz"
    if archive.is_file():
        def read() -> RawDataset:
            dest = extract_tar(archive, _writable(cache_dir) / "extracted" / "cifar10-jpeg")
            return read_image_folder(dest / "cifar10-jpeg", CIFAR_JPEG_LABEL)

        return Located([archive], read)
    downloaded = cache_dir / "download"
    if (downloaded / "cifar-10-batches-py").is_dir() or download:
        return Located(
            [downloaded / "cifar-10-batches-py"], lambda: read_torchvision("CIFAR10", downloaded, download, "CIFAR-10")
        )
    raise DataError(
        f"CIFAR-10 not found in {data_dir}: expected the official python batches ({batches}), an image "
        f"folder ({folder}/{{train,test}}/<class>/*.jpg) or its archive ({archive}). Point data_dir (or "
        f"POOLSTUDY_DATA) at a folder holding one of them, or set dataset.download=true with network access."
    )


def _locate_imagefolder(root: str | None, cache_dir: Path) -> Located:
    if not root:
        raise DataError(
            "dataset=imagefolder needs dataset.root: a folder laid out as <root>/{train,test}/<class>/*.jpg|png "
            "(or a .tar/.tar.gz of such a folder), e.g. dataset.root=/data/cifar10-jpeg."
        )
    path = Path(root).expanduser()
    if path.is_file() and (path.name.endswith((".tar", ".tar.gz", ".tgz"))):
        def read() -> RawDataset:
            stem = path.name.split(".")[0]
            dest = extract_tar(path, _writable(cache_dir) / "extracted" / stem)
            inner = [p for p in dest.iterdir() if p.is_dir()]
            tree = dest if (dest / "train").is_dir() else (inner[0] if len(inner) == 1 else dest)
            return read_image_folder(tree, f"image folder {path}")

        return Located([path], read)
    if not path.is_dir():
        raise DataError(
            f"dataset.root = {root!r} does not exist. It must be a folder laid out as "
            f"<root>/{{train,test}}/<class>/<image> or a .tar.gz archive of one."
        )
    return Located(_tree_files(path), lambda: read_image_folder(path))


def _tree_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file())


def _writable(cache_dir: Path) -> Path:
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        probe = cache_dir / f".write-test-{os.getpid()}"
        probe.touch()
        probe.unlink()
    except OSError as exc:
        raise DataError(
            f"cache_dir = {cache_dir} is not writable ({exc.strerror}); set cache_dir (or POOLSTUDY_CACHE) "
            f"to a writable folder for extracted and decoded data."
        ) from None
    return cache_dir


def _fingerprint(name: str, files: list[Path]) -> str:
    h = hashlib.sha1(name.encode())
    for f in files:
        st = f.stat()
        h.update(f"{f.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode())
    return h.hexdigest()[:16]


_MEMORY: dict[str, RawDataset] = {}


def load_raw(name: str, data_dir: Path, cache_dir: Path, download: bool = False, root: str | None = None) -> RawDataset:
    """Decoded dataset as uint8 tensors, from memory, the decoded cache, or the source files."""
    data_dir, cache_dir = Path(data_dir).expanduser(), Path(cache_dir).expanduser()
    if name in _IDX_DATASETS:
        located = _locate_idx(name, data_dir, cache_dir, download)
    elif name == "cifar10":
        located = _locate_cifar10(data_dir, cache_dir, download)
    elif name == "imagefolder":
        located = _locate_imagefolder(root, cache_dir)
    else:
        valid = ", ".join([*_IDX_DATASETS, "cifar10", "imagefolder"])
        raise DataError(f"dataset.name = {name!r} is not a known dataset; valid names are: {valid}.")
    if not located.files:  # a download: nothing to fingerprint yet
        return located.read()
    key = _fingerprint(name, located.files)
    if key in _MEMORY:
        return _MEMORY[key]
    cached = cache_dir / "decoded" / f"{name}-{key}.pt"
    raw = None
    if cached.is_file():
        try:
            raw = RawDataset(**torch.load(cached, weights_only=True, mmap=True))
        except Exception as exc:  # a damaged cache entry is rebuilt, never trusted
            log.warning("Ignoring damaged cache file %s (%s); decoding again.", cached, exc)
    if raw is None:
        log.info("Decoding %s once (cached afterwards in %s)", name, cached.parent)
        raw = located.read()
        _save_cache(raw, cached)
    _MEMORY[key] = raw
    return raw


def _save_cache(raw: RawDataset, path: Path) -> None:
    from poolstudy.utils.io import atomic_write_bytes
    import io

    try:
        _writable(path.parent)
    except DataError as exc:
        log.warning("Not caching decoded data: %s", exc)
        return
    buf = io.BytesIO()
    state = {k: getattr(raw, k) for k in ("train_x", "train_y", "test_x", "test_y", "classes", "source")}
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
