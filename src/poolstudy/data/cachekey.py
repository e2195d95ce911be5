"""Cache keys made of file contents: a cache entry can never outlive the data it was made from.

A name (``data.tar.gz``), a path or a modification time does not identify data: two archives
of one name, an archive replaced in place, or a tree re-extracted with its old timestamps
would share a key. Every key here is a BLAKE2b hash of the source files' bytes. Hashing is
memoised per process on the file's full ``stat`` signature (device, inode, size, mtime and
ctime, the last of which no copy tool can set back), so an unchanged file is read once.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from pathlib import Path

from poolstudy.errors import DataError

_DIGESTS: dict[tuple, str] = {}
_CHUNK = 1 << 20


def file_digest(path: Path) -> str:
    """BLAKE2b-128 hex digest of ``path``'s bytes (memoised while the file is unchanged)."""
    try:
        st = path.stat()
        signature = (str(path.resolve()), st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        if signature in _DIGESTS:
            return _DIGESTS[signature]
        h = hashlib.blake2b(digest_size=16)
        with open(path, "rb") as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                h.update(chunk)
    except OSError as exc:
        raise DataError(f"Cannot read {path}: {exc.strerror or exc}. Check that the file exists and is readable.") from None
    _DIGESTS[signature] = h.hexdigest()
    return _DIGESTS[signature]


def content_key(parts: Iterable[str], files: Iterable[tuple[str, Path]]) -> str:
    """16 hex digits over ``parts`` (settings that change the decoding) and each (name, file content).

    ``name`` is the file's role or its path relative to the dataset root (an image's class
    folder is part of its label), so renaming a class changes the key too.
    """
    h = hashlib.blake2b(digest_size=8)
    for part in parts:
        h.update(part.encode() + b"\0")
    for name, path in sorted(files, key=lambda item: item[0]):
        h.update(f"{name}\0{file_digest(path)}\0".encode())
    return h.hexdigest()
