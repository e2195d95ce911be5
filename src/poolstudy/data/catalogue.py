"""Which source a dataset name reads, and the decoded-tensor cache in front of every source.

``load_raw`` asks the dataset's source (one module per kind: :mod:`~poolstudy.data.idx`,
:mod:`~poolstudy.data.cifar10`, :mod:`~poolstudy.data.imagefolder`, :mod:`~poolstudy.data.shapes`; the
dataset config's ``_target_`` names its ``locate`` function, resolved with Hydra's ``get_method``)
where its files are, downloads them if the source says so, and decodes them once into uint8 tensors,
cached under ``cache_dir`` (:mod:`poolstudy.data.cache`), so that a second load takes well under a
second and a multirun in one process never decodes the same data twice. Cache entries are named by
the content of the files they were made from (:mod:`poolstudy.data.cachekey`), never by a file name.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from hydra.utils import get_method

from poolstudy.data.cache import load_decoded, save_decoded
from poolstudy.data.cachekey import content_key
from poolstudy.data.download import download_setting
from poolstudy.data.paths import describe, resolve_data_path
from poolstudy.data.raw import RawDataset
from poolstudy.errors import DataError

log = logging.getLogger(__name__)

# The source of each dataset: what its config's ``_target_`` names (conf/dataset/<name>.yaml). Snapshots
# written before the datasets had a ``_target_`` give only the name, which picks the same source.
SOURCES = {
    "mnist": "poolstudy.data.idx.locate",
    "fashion_mnist": "poolstudy.data.idx.locate",
    "cifar10": "poolstudy.data.cifar10.locate",
    "imagefolder": "poolstudy.data.imagefolder.locate",
    "shapes": "poolstudy.data.shapes.locate",
}
GENERATED = ("poolstudy.data.shapes.locate",)  # made by code: no files, no download setting, no cache
# part of every decoded-cache key: bump when a reader's output changes for the same files
DECODER_VERSION = "decoder-2"

_MEMORY: dict[str, RawDataset] = {}


def source(name: str, target: str | None = None) -> str:
    """The source of dataset ``name``: ``target`` (its config's ``_target_``), else the one SOURCES names.

    Raises DataError for an unknown name without a ``_target_``, or a name that is not its target's.
    """
    if target is None and name not in SOURCES:
        raise DataError(f"dataset.name = {name!r} is not a known dataset; valid names are: {', '.join(SOURCES)}.")
    target = target or SOURCES[name]
    if name in SOURCES and SOURCES[name] != target:
        raise DataError(f"dataset.name = {name!r} is read by {SOURCES[name]}, not by dataset._target_ = {target!r}. "
                        f"Pick a dataset with dataset=<{'|'.join(SOURCES)}>, which sets both.")
    return target


def load_raw(name: str, data_dir: str | Path, cache_dir: str | Path, download: bool | str = False,
             root: str | None = None, color_mode: str = "auto", target: str | None = None) -> RawDataset:
    """Decoded dataset as uint8 tensors, from memory, the decoded cache, or the source files.

    ``target``: the dataset config's ``_target_``, the dotted path of its source's ``locate`` (default: the one
    SOURCES names). Relative ``data_dir``, ``cache_dir`` and ``root`` are resolved against the launch directory
    (:mod:`poolstudy.data.paths`). ``download``: True, False or "auto" (:mod:`poolstudy.data.download`).
    ``color_mode`` applies to ``imagefolder`` only. Raises :class:`DataError` for missing, damaged or unusable
    files.
    """
    target = source(name, target)
    locate = get_method(target)
    if target in GENERATED:
        return locate(name, Path(data_dir), Path(cache_dir), False, root, color_mode, "").read()
    hint = describe(data_dir, "data_dir")
    data_dir, cache_dir = resolve_data_path(data_dir), resolve_data_path(cache_dir)
    setting = download_setting(download)
    located = locate(name, data_dir, cache_dir, setting, root, color_mode, hint)
    if located.fetch is not None:
        log.info("%s is missing: downloading it with torchvision into %s", name, cache_dir / "download")
        located.fetch()
        located = locate(name, data_dir, cache_dir, False, root, color_mode, hint)
    key = content_key((name, DECODER_VERSION, *located.settings), located.files)
    cached = cache_dir / "decoded" / f"{name}-{key}.pt"
    raw = _MEMORY.get(key) or load_decoded(cached)
    if raw is None:
        log.info("Decoding %s once (cached afterwards in %s)", name, cached.parent)
        raw = located.read()
        save_decoded(raw, cached)
    if raw.source != located.source:  # the same content may have been cached from another place
        raw = dataclasses.replace(raw, source=located.source)
    _MEMORY[key] = raw
    return raw
