import gzip

import numpy as np
import pytest
import torch

from conftest import SHARED_DATA, require_real
from datafiles import idx_bytes, make_idx_dataset, make_image_folder, make_tar_gz
from poolstudy.data import catalogue, load_raw, load_splits
from poolstudy.data.loader import Normalizer, TensorBatches
from poolstudy.data.sources import parse_idx
from poolstudy.data.splits import stratified_split, stratified_subset
from poolstudy.errors import DataError, PoolStudyError
from omegaconf import OmegaConf


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    catalogue._MEMORY.clear()
    yield
    catalogue._MEMORY.clear()


def dataset_cfg(name="mnist", **kw):
    base = dict(name=name, channels=None, image_size=None, num_classes=None, mean=None, std=None, val_fraction=0.1,
                split_seed=0, train_subset=None, test_subset=None, download=False)
    base.update(kw)
    return OmegaConf.create(base)


def test_parse_idx_roundtrip_and_errors(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(parse_idx(idx_bytes(images), tmp_path), images)
    with pytest.raises(DataError, match="truncated or corrupted"):
        parse_idx(idx_bytes(images)[:-5], tmp_path / "x")
    with pytest.raises(DataError, match="not an unsigned-byte IDX file"):
        parse_idx(b"\x00\x00\x0d\x03" + bytes(20), tmp_path / "x")


@pytest.mark.parametrize("gz", [True, False])
def test_idx_dataset_from_gzip_or_plain_files(tmp_path, gz):
    make_idx_dataset(tmp_path / "data", gz=gz)
    raw = load_raw("mnist", tmp_path / "data", tmp_path / "cache")
    assert raw.train_x.shape == (200, 1, 28, 28) and raw.train_x.dtype == torch.uint8
    assert raw.test_y.tolist()[:12] == [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 1]
    assert "IDX files" in raw.source


def test_decoded_cache_is_reused_and_data_dir_stays_untouched(tmp_path, monkeypatch):
    data = tmp_path / "data"
    make_idx_dataset(data)
    before = sorted(p.name for p in data.rglob("*"))
    first = load_raw("mnist", data, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "decoded").glob("mnist-*.pt"))) == 1
    assert sorted(p.name for p in data.rglob("*")) == before
    catalogue._MEMORY.clear()

    def no_decode(*a, **k):
        raise AssertionError("decoded again instead of using the cache")

    monkeypatch.setattr(catalogue, "read_idx_dataset", no_decode)
    second = load_raw("mnist", data, tmp_path / "cache")
    assert torch.equal(first.train_x, second.train_x) and second.classes == first.classes
    # in-process: the very same object, no disk read
    assert load_raw("mnist", data, tmp_path / "cache") is second


def test_truncated_gzip_gives_a_clear_error(tmp_path):
    raw = make_idx_dataset(tmp_path / "data")
    path = raw / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(DataError, match=r"train-images-idx3-ubyte.gz.*damaged"):
        load_raw("mnist", tmp_path / "data", tmp_path / "cache")


def test_missing_data_names_path_files_and_fix(tmp_path):
    with pytest.raises(DataError) as err:
        load_raw("fashion_mnist", tmp_path / "nothing", tmp_path / "cache")
    msg = str(err.value)
    assert str(tmp_path / "nothing" / "FashionMNIST" / "raw") in msg
    assert "train-images-idx3-ubyte" in msg and "POOLSTUDY_DATA" in msg and "download=true" in msg


def test_cifar10_from_jpeg_archive_in_read_only_data_dir(tmp_path):
    folder = make_image_folder(tmp_path / "src" / "cifar10-jpeg", ext="jpg")
    data = tmp_path / "data"
    data.mkdir()
    make_tar_gz(folder, data / "cifar10-jpeg.tar.gz")
    data.chmod(0o555)
    try:
        raw = load_raw("cifar10", data, tmp_path / "cache")
    finally:
        data.chmod(0o755)
    assert raw.train_x.shape == (36, 3, 32, 32) and raw.test_x.shape == (12, 3, 32, 32)
    assert raw.classes == ["cat", "dog", "frog"]
    assert raw.source == "CIFAR-10 (JPEG q75 copy)"
    assert sorted(raw.train_y.bincount().tolist()) == [12, 12, 12]


def test_imagefolder_reads_channels_size_classes_from_files(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=(30, 6), size=20)
    splits = load_splits(dataset_cfg("imagefolder", root=str(root), val_fraction=0.2), tmp_path, tmp_path / "cache")
    assert splits.image_shape == (3, 20, 20) and splits.classes == ["a", "b"]
    assert (len(splits.train[1]), len(splits.val[1]), len(splits.test[1])) == (48, 12, 12)
    assert len(splits.mean) == 3 and all(0 < s for s in splits.std)


def test_imagefolder_mixed_sizes_is_rejected(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("a",), per_class=(2, 1))
    make_image_folder(tmp_path / "imgs", classes=("b",), per_class=(2, 1), size=16)
    with pytest.raises(DataError, match="one size"):
        load_raw("imagefolder", tmp_path, tmp_path / "cache", root=str(root))


def test_declared_shape_must_match_the_files(tmp_path):
    make_idx_dataset(tmp_path / "data")
    with pytest.raises(PoolStudyError, match=r"dataset.channels = 3 but the data in use has 1"):
        load_splits(dataset_cfg(channels=3), tmp_path / "data", tmp_path / "cache")


def test_stratified_split_is_fixed_disjoint_and_balanced():
    labels = torch.arange(1000) % 10
    keep, held = stratified_split(labels, 0.1, seed=3)
    keep2, held2 = stratified_split(labels, 0.1, seed=3)
    assert torch.equal(held, held2) and torch.equal(keep, keep2)
    assert len(set(keep.tolist()) & set(held.tolist())) == 0 and len(keep) + len(held) == 1000
    assert labels[held].bincount().tolist() == [10] * 10
    assert not torch.equal(held, stratified_split(labels, 0.1, seed=4)[1])
    sub = stratified_subset(labels, 200, seed=0)
    assert labels[sub].bincount().tolist() == [20] * 10


def test_batches_normalise_and_shuffle_by_permutation():
    images = torch.randint(0, 256, (10, 1, 2, 2), dtype=torch.uint8)
    labels = torch.arange(10)
    norm = Normalizer([0.5], [0.25], torch.device("cpu"))
    batches = TensorBatches(images, labels, 4, norm, shuffle=True, generator=torch.Generator().manual_seed(0))
    seen_x, seen_y = zip(*batches)
    assert [len(y) for y in seen_y] == [4, 4, 2] and len(batches) == 3
    order = torch.cat(seen_y)
    assert sorted(order.tolist()) == list(range(10)) and order.tolist() != list(range(10))
    expected = (images[order].float() / 255 - 0.5) / 0.25
    assert torch.allclose(torch.cat(seen_x), expected, atol=1e-5)


@pytest.mark.realdata
def test_real_mnist_and_fashion_mnist_label_counts(cache_dir):
    require_real("MNIST", "FashionMNIST")
    mnist = load_raw("mnist", SHARED_DATA, cache_dir)
    assert mnist.train_y.bincount().tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
    assert mnist.test_y.bincount().tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    fashion = load_raw("fashion_mnist", SHARED_DATA, cache_dir)
    assert fashion.train_y.bincount().tolist() == [6000] * 10 and fashion.test_y.bincount().tolist() == [1000] * 10
    assert fashion.train_x.shape == (60000, 1, 28, 28)
