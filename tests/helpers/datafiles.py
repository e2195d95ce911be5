"""Small dataset files made by the tests, in the official layouts."""

from __future__ import annotations

import gzip
import tarfile
from pathlib import Path

import numpy as np
import torch


def idx_bytes(array: np.ndarray) -> bytes:
    magic = {3: 2051, 1: 2049}[array.ndim]
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def make_idx_dataset(root: Path, folder: str = "MNIST", n_train: int = 200, n_test: int = 50, gz: bool = True,
                     seed: int = 0) -> Path:
    """root/<folder>/raw/ with the four IDX files; images encode their label as brightness."""
    rng = np.random.default_rng(seed)
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        labels = np.arange(n) % 10
        images = rng.integers(0, 30, size=(n, 28, 28)) + (labels * 20)[:, None, None]
        for kind, arr in (("images-idx3", images), ("labels-idx1", labels)):
            name = f"{prefix}-{kind}-ubyte"
            data = idx_bytes(arr)
            if gz:
                (raw / f"{name}.gz").write_bytes(gzip.compress(data))
            else:
                (raw / name).write_bytes(data)
    return raw


def make_image_folder(root: Path, classes=("cat", "dog", "frog"), per_class=(12, 4), size=32, ext="png") -> Path:
    from PIL import Image

    gen = torch.Generator().manual_seed(0)
    for split, n in zip(("train", "test"), per_class):
        for c, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                img = torch.randint(0, 60, (3, size, size), generator=gen, dtype=torch.uint8) + 60 * c
                Image.fromarray(img.permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.{ext}", quality=95)
    return root


def make_tar_gz(folder: Path, archive: Path) -> Path:
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder, arcname=folder.name)
    return archive


def save_images(folder: Path, images, ext: str = "png", start: int = 0, **save_kw) -> list[Path]:
    """Save PIL images (or uint8 arrays) as folder/0000.<ext>, 0001.<ext>, ..."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, img in enumerate(images, start):
        pil = img if isinstance(img, Image.Image) else Image.fromarray(np.asarray(img))
        paths.append(folder / f"{i:04d}.{ext}")
        pil.save(paths[-1], **save_kw)
    return paths


def make_gray_folder(root: Path, classes=("a", "b"), per_class=(6, 2), size=28, seed=0) -> Path:
    """Small grayscale (mode L) image folder; class c's pixels lie in [60c, 60c + 60)."""
    rng = np.random.default_rng(seed)
    for split, n in zip(("train", "test"), per_class):
        for c, name in enumerate(classes):
            save_images(root / split / name, [rng.integers(0, 60, (size, size), dtype=np.uint8) + 60 * c
                                              for _ in range(n)])
    return root


def palette_image(index_pattern: np.ndarray, colours: list[tuple[int, int, int]]):
    """A mode-P image: pixel values are palette indices into ``colours``."""
    from PIL import Image

    h, w = index_pattern.shape
    img = Image.frombytes("P", (w, h), index_pattern.astype(np.uint8).tobytes())
    img.putpalette([v for rgb in colours for v in rgb])
    return img
