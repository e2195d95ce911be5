"""The cache folder (``cache_dir``): archives extracted once, decoded tensors saved once.

Both are named by the content of the files they were made from (:mod:`poolstudy.data.cachekey`),
never by a file name, and written so that a killed or concurrent writer never leaves a half-made
entry: an extraction goes to a private temporary folder renamed into place, a decoded file is
written atomically. ``data_dir`` may be read-only; ``cache_dir`` must be writable.
"""

from __future__ import annotations

import errno
import io
import logging
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import torch

from poolstudy.data.cachekey import file_digest
from poolstudy.data.raw import RawDataset
from poolstudy.errors import DataError
from poolstudy.utils.io import atomic_write_bytes

log = logging.getLogger(__name__)


def writable(cache_dir: Path) -> Path:
    """``cache_dir``, created if needed; DataError naming it (and POOLSTUDY_CACHE) when it cannot be written."""
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


def extracted(archive: Path, cache_dir: Path) -> Path:
    """The archive unpacked in the cache, in a folder named after its content."""
    stem = archive.name.split(".")[0]
    return extract_tar(archive, writable(cache_dir) / "extracted" / f"{stem}-{file_digest(archive)[:16]}")


def load_decoded(path: Path) -> RawDataset | None:
    """The decoded dataset saved at ``path``; None when there is none or it is damaged (it is rebuilt, never trusted)."""
    if not path.is_file():
        return None
    try:
        return RawDataset(**torch.load(path, weights_only=True, mmap=True))
    except Exception as exc:
        log.warning("Ignoring damaged cache file %s (%s); decoding again.", path, exc)
        return None


def save_decoded(raw: RawDataset, path: Path) -> None:
    """Save ``raw`` at ``path`` atomically; a cache that cannot be written is skipped with a warning."""
    try:
        writable(path.parent)
    except DataError as exc:
        log.warning("Not caching decoded data: %s", exc)
        return
    buf = io.BytesIO()
    state = {k: getattr(raw, k) for k in ("train_x", "train_y", "test_x", "test_y", "classes", "source")}
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())
