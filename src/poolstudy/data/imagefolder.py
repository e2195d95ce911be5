"""Image-folder trees ``<root>/{train,test}/<class>/<image>``: which entries count, the colour policy.

Entries (rule documented in docs/data.md, "Image folders"):

* hidden entries — names starting with ``.`` (``.DS_Store``, ``._x.png``, ``.ipynb_checkpoints``)
  — and the system folders/files ``__MACOSX``, ``Thumbs.db``, ``desktop.ini`` are skipped at
  every level;
* every other folder directly under ``train/`` and ``test/`` is a class, labelled in sorted
  name order (as torchvision's ``ImageFolder``); images may sit in sub-folders of a class;
* an empty class folder, class folders that differ between train and test, files outside a
  class folder, unreadable images and images of another size are refused, all offending
  files listed in one message.

Colour policy (``color_mode``): ``grayscale`` converts every image with PIL's
``convert("L")`` (ITU-R 601-2 luma); ``rgb`` with ``convert("RGB")`` (palette, LA/RGBA, CMYK,
YCbCr as PIL converts them; alpha is dropped, not composited); ``auto`` gives RGB when any
image has colour (a pixel whose channels differ after RGB conversion), else grayscale.
16-bit grayscale (``I;16``/``I``) is scaled to 8 bits (``round(v * 255 / 65535)``) because
PIL's ``convert`` clips it at 255; floating-point (``F``) images are refused.
"""

from __future__ import annotations

import os
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from poolstudy.data.cache import extracted
from poolstudy.data.paths import describe, resolve_data_path
from poolstudy.data.raw import Located, RawDataset
from poolstudy.errors import DataError

COLOR_MODES = ("auto", "grayscale", "rgb")
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})
MAX_LISTED = 30  # offending files named in one message; the rest are counted
_GREY_MODES = frozenset({"1", "L", "LA", "La"})


def is_ignored(name: str) -> bool:
    """Hidden or operating-system bookkeeping entries, never data."""
    return name.startswith(".") or name in IGNORED_NAMES


def _files_under(folder: Path) -> list[Path]:
    """Non-ignored files under ``folder`` at any depth, sorted by relative path."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = [d for d in dirnames if not is_ignored(d)]
        found.extend(Path(dirpath, f) for f in filenames if not is_ignored(f))
    return sorted(found, key=lambda p: p.relative_to(folder).parts)


def tree_files(root: Path) -> list[tuple[str, Path]]:
    """(path relative to root, path) of every file that can affect a decode of ``root``."""
    out = []
    for split in ("train", "test"):
        if (root / split).is_dir():
            out.extend((p.relative_to(root).as_posix(), p) for p in _files_under(root / split))
    return out


def _listing(root: Path, split: str) -> tuple[dict[str, list[Path]], list[Path]]:
    """({class: image paths}, files lying directly in the split folder)."""
    split_dir = root / split
    if not split_dir.is_dir():
        raise DataError(
            f"Image folder {root} has no '{split}' subfolder. Expected the layout "
            f"{root}/train/<class>/*.png and {root}/test/<class>/*.png."
        )
    classes: dict[str, list[Path]] = {}
    stray = []
    for entry in sorted(split_dir.iterdir(), key=lambda p: p.name):
        if is_ignored(entry.name):
            continue
        if entry.is_dir():
            classes[entry.name] = _files_under(entry)
        else:
            stray.append(entry)
    if not classes:
        raise DataError(f"No class folders under {split_dir}: expected {split_dir}/<class>/<image>.")
    return classes, stray


def _listed(items: list[str]) -> str:
    shown = "; ".join(items[:MAX_LISTED])
    return shown + (f"; and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else "")


class _Unusable(Exception):
    pass


def _decode(path: Path, color_mode: str) -> np.ndarray:
    """(H, W) grayscale or (H, W, 3) RGB uint8 array, per the colour policy."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as pil:
            mode = pil.mode
            if mode == "I" or mode.startswith("I;16"):
                wide = np.clip(np.asarray(pil).astype(np.int64), 0, 65535)
                return ((wide * 255 + 32767) // 65535).astype(np.uint8)
            if mode == "F":
                raise _Unusable("32-bit floating-point image; save it with 8 or 16 bits per channel")
            if color_mode == "grayscale" or mode in _GREY_MODES:
                return np.asarray(pil.convert("L"))
            return np.asarray(pil.convert("RGB"))
    except UnidentifiedImageError:  # PIL's message repeats the full path
        raise _Unusable("not an image file PIL can read") from None
    except (OSError, ValueError, SyntaxError) as exc:
        raise _Unusable(str(exc).splitlines()[0] if str(exc) else type(exc).__name__) from None


def _has_colour(arr: np.ndarray) -> bool:
    return arr.ndim == 3 and not ((arr[..., 0] == arr[..., 1]).all() and (arr[..., 1] == arr[..., 2]).all())


def read_image_folder(root: Path, color_mode: str = "auto", source: str | None = None):
    """Decode ``root/{train,test}/<class>/*`` into uint8 tensors (N, C, H, W) and int64 labels.

    Returns a :class:`poolstudy.data.raw.RawDataset`. Raises :class:`DataError` naming the
    folder or every offending file (up to ``MAX_LISTED``, then a count).
    """
    if color_mode not in COLOR_MODES:
        raise DataError(f"dataset.color_mode = {color_mode!r} is not valid: it must be one of {', '.join(COLOR_MODES)}.")
    listings = {split: _listing(root, split) for split in ("train", "test")}
    train_classes, test_classes = list(listings["train"][0]), list(listings["test"][0])
    if train_classes != test_classes:
        only_train = sorted(set(train_classes) - set(test_classes))
        only_test = sorted(set(test_classes) - set(train_classes))
        raise DataError(
            f"{root}/train and {root}/test have different class folders (only in train: {only_train or 'none'}; "
            f"only in test: {only_test or 'none'}). Both must hold the same class folders; hidden entries such as "
            f".ipynb_checkpoints or __MACOSX are skipped."
        )
    empty = [f"{split}/{name}" for split in ("train", "test") for name, files in listings[split][0].items() if not files]
    if empty:
        raise DataError(
            f"Image folder {root} has class folder(s) without images: {_listed(empty)}. Every class folder becomes "
            f"a label, so an empty one would silently add a class that is never seen; remove the folder or add images."
        )

    bad: list[str] = []
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    for split in ("train", "test"):
        bad.extend(f"{rel(p)}: not inside a class folder" for p in listings[split][1])
    arrays: dict[str, list[tuple[Path, np.ndarray, int]]] = {"train": [], "test": []}
    for split in ("train", "test"):
        for label, files in enumerate(listings[split][0].values()):
            for path in files:
                try:
                    arrays[split].append((path, _decode(path, color_mode), label))
                except _Unusable as exc:
                    bad.append(f"{rel(path)}: {exc}")
    sizes = Counter(arr.shape[:2] for split in arrays.values() for _, arr, _ in split)
    if len(sizes) > 1:
        (h0, w0), _ = sizes.most_common(1)[0]
        bad.extend(
            f"{rel(p)}: {a.shape[1]}x{a.shape[0]} pixels, most images are {w0}x{h0}"
            for split in arrays.values() for p, a, _ in split if a.shape[:2] != (h0, w0)
        )
    if bad:
        raise DataError(
            f"{len(bad)} file(s) in image folder {root} cannot be used: {_listed(bad)}. Remove or replace them "
            f"(an image folder must hold readable images of one size; hidden entries such as .DS_Store, ._* files, "
            f".ipynb_checkpoints and __MACOSX are skipped)."
        )

    all_arrays = [a for split in arrays.values() for _, a, _ in split]
    rgb = color_mode == "rgb" or (color_mode == "auto" and any(_has_colour(a) for a in all_arrays))

    def tensors(items):
        if rgb:  # grayscale images repeated into R, G, B, exactly as PIL's L -> RGB conversion
            stacked = np.stack([a if a.ndim == 3 else np.repeat(a[..., None], 3, axis=2) for _, a, _ in items])
            x = torch.from_numpy(stacked).permute(0, 3, 1, 2).contiguous()
        else:  # R == G == B: channel 0 is exactly PIL's L conversion
            x = torch.from_numpy(np.stack([a if a.ndim == 2 else a[..., 0] for _, a, _ in items])).unsqueeze(1)
        return x, torch.tensor([label for _, _, label in items], dtype=torch.int64)

    (train_x, train_y), (test_x, test_y) = tensors(arrays["train"]), tensors(arrays["test"])
    return RawDataset(train_x, train_y, test_x, test_y, train_classes, source or f"image folder {root}",
                      [root / "train", root / "test"])


def locate(name: str, data_dir: Path, cache_dir: Path, download: bool | str, root: str | None, color_mode: str,
           hint: str) -> Located:
    """``dataset.root``: a folder or a .tar/.tar.gz/.tgz of one (extracted into the cache); DataError otherwise."""
    if not root:
        raise DataError(
            "dataset=imagefolder needs dataset.root: a folder laid out as <root>/{train,test}/<class>/*.jpg|png "
            "(or a .tar/.tar.gz of such a folder), e.g. dataset.root=/data/cifar10-jpeg."
        )
    path = resolve_data_path(root)
    settings = (f"color_mode={color_mode}",)
    source = f"image folder {path} (color_mode={color_mode})"
    if path.is_file() and path.name.endswith((".tar", ".tar.gz", ".tgz")):
        def read() -> RawDataset:
            dest = extracted(path, cache_dir)
            inner = [p for p in dest.iterdir() if p.is_dir() and not is_ignored(p.name)]
            tree = dest if (dest / "train").is_dir() else (inner[0] if len(inner) == 1 else dest)
            return read_image_folder(tree, color_mode, source)

        return Located([("archive", path)], read, source, settings)
    if not path.is_dir():
        problem = "is a file but not a .tar, .tar.gz or .tgz archive" if path.is_file() else "does not exist"
        raise DataError(
            f"dataset.root = {root!r} {problem}{describe(root, 'dataset.root')}. It must be a folder laid out "
            f"as <root>/{{train,test}}/<class>/<image> or a .tar.gz archive of one."
        )
    return Located(tree_files(path), lambda: read_image_folder(path, color_mode, source), source, settings)
