"""Datasets as device-resident tensors with a fixed stratified validation split.

- ``dataset``: the job's splits (subsets, test shift, validation hold-out, normalisation): ``load_splits``;
- ``catalogue``: which source a dataset name reads, and the decoded-tensor cache: ``load_raw``;
- one module per source kind, each finding and reading its files: ``idx`` (MNIST, Fashion-MNIST),
  ``cifar10`` (python batches, JPEG copy), ``imagefolder`` (any ``<root>/{train,test}/<class>/<image>``
  tree), ``shapes`` (synthetic, no files);
- ``raw`` (what a source gives), ``cache`` (extracted archives, decoded tensors), ``cachekey`` (keys made
  of file contents), ``download``, ``paths`` (launch-relative paths);
- ``splits`` (stratified subsets and hold-out), ``shifts`` (image translations), ``loader`` (batches).
"""

from poolstudy.data.catalogue import load_raw
from poolstudy.data.dataset import DataSplits, load_splits
from poolstudy.data.loader import Normalizer, TensorBatches
from poolstudy.data.splits import stratified_split

__all__ = ["DataSplits", "Normalizer", "TensorBatches", "load_raw", "load_splits", "stratified_split"]
