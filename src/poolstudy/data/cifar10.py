"""CIFAR-10: the official python batches (read by torchvision), a JPEG image-folder copy or its archive.

Looked for in ``data_dir`` in that order, then in ``<cache_dir>/download`` (torchvision's download, with
``dataset.download``). The JPEG copy is read as an image folder (:mod:`poolstudy.data.imagefolder`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from poolstudy.data.cache import extracted, writable
from poolstudy.data import download as downloads
from poolstudy.data.imagefolder import read_image_folder, tree_files
from poolstudy.data.raw import Located, RawDataset, no_read
from poolstudy.errors import DataError

CIFAR_JPEG_LABEL = "CIFAR-10 (JPEG q75 copy)"


def locate(name: str, data_dir: Path, cache_dir: Path, download: bool | str, root: str | None, color_mode: str,
           hint: str) -> Located:
    """Where ``name``'s files are, or how to fetch them (``download``: True, False or "auto"); DataError when
    they are missing. The signature every source's ``locate`` has (``poolstudy.data.catalogue``)."""
    batches = data_dir / "cifar-10-batches-py"
    if batches.is_dir():
        return Located([(p.name, p) for p in sorted(batches.iterdir()) if p.is_file()],
                       lambda: read_torchvision("CIFAR10", data_dir, False, "CIFAR-10"),
                       f"CIFAR-10 python batches in {batches}")
    folder = data_dir / "cifar10-jpeg"
    source = f"{CIFAR_JPEG_LABEL} from {folder}"
    if (folder / "train").is_dir():
        return Located(tree_files(folder), lambda: read_image_folder(folder, "rgb", source), source, ("color_mode=rgb",))
    archive = data_dir / "cifar10-jpeg.tar.gz"
    if archive.is_file():
        source = f"{CIFAR_JPEG_LABEL} from {archive}"

        def read() -> RawDataset:
            dest = extracted(archive, cache_dir)
            return read_image_folder(dest / "cifar10-jpeg", "rgb", source)

        return Located([("archive", archive)], read, source, ("color_mode=rgb",))
    downloaded = cache_dir / "download" / "cifar-10-batches-py"
    if downloaded.is_dir():
        return Located([(p.name, p) for p in sorted(downloaded.iterdir()) if p.is_file()],
                       lambda: read_torchvision("CIFAR10", downloaded.parent, False, "CIFAR-10"),
                       f"CIFAR-10 python batches in {downloaded}")
    fetch, why = downloads.should_download(download, "CIFAR10")
    if fetch:
        return Located([], no_read, "", fetch=lambda: downloads.fetch_with_torchvision("CIFAR10", writable(downloaded.parent)))
    raise DataError(
        f"CIFAR-10 not found in {data_dir}{hint}: expected the official python batches ({batches}), an image "
        f"folder ({folder}/{{train,test}}/<class>/*.jpg) or its archive ({archive}). It was not downloaded: {why}. "
        f"Point data_dir (or POOLSTUDY_DATA) at a folder holding one of them, {downloads.download_fix(cache_dir)}."
    )


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
