import json

import numpy as np
import pytest
import torch

from helpers import SHARED_DATA, require_real
from helpers.datafiles import idx_bytes, make_idx_dataset, make_image_folder, make_tar_gz
from poolstudy.data import catalogue, idx, load_raw, load_splits
from poolstudy.data.loader import Normalizer, TensorBatches
from poolstudy.data.idx import parse_idx
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

    monkeypatch.setattr(idx, "read_idx_dataset", no_decode)
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
    assert "train-images-idx3-ubyte" in msg and "POOLSTUDY_DATA" in msg and "dataset.download=true" in msg
    assert "It was not downloaded: dataset.download=false." in msg and "dataset=shapes" in msg
    assert str(tmp_path / "cache" / "download") in msg


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
    assert raw.source == f"CIFAR-10 (JPEG q75 copy) from {data / 'cifar10-jpeg.tar.gz'}"
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


# ---------------------------------------------------------------- a last training batch of one image


def reference_batches(n, batch_size, seed):
    """The batch sequence before the size-1 rule: one permutation, consecutive slices."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    return [order[s : s + batch_size].tolist() for s in range(0, n, batch_size)]


@pytest.mark.parametrize("n,batch_size", [(1921, 128), (9, 4), (5, 4), (4, 4), (3, 4), (10, 4), (11, 4), (8, 1)])
def test_training_batches_merge_a_last_single_image_and_change_nothing_else(n, batch_size):
    images = torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1)
    norm = Normalizer([0.0], [1 / 255], torch.device("cpu"))  # x * 1: the labels come back as pixel values
    batches = TensorBatches(images, torch.arange(n), batch_size, norm, shuffle=True,
                            generator=torch.Generator().manual_seed(7), merge_single_last=True)
    got = [y.tolist() for _, y in batches]
    want = reference_batches(n, batch_size, 7)
    assert len(batches) == len(got)
    if n % batch_size == 1 and n > batch_size:
        assert got == [*want[:-2], want[-2] + want[-1]] and len(got[-1]) == batch_size + 1
    else:
        assert got == want  # bit-identical to before: same permutation, same slices
    assert sorted(sum(got, [])) == list(range(n))
    unmerged = TensorBatches(images, torch.arange(n), batch_size, norm)  # evaluation keeps its batches
    assert [len(y) for _, y in unmerged] == [len(b) for b in reference_batches(n, batch_size, 0)]


def test_committed_records_keep_their_batch_sequence():
    """The rule changes only a last batch of one image; no committed study record has one."""
    from helpers import ROOT

    records = list((ROOT / "docs" / "studies").rglob("metrics.json"))
    assert len(records) > 100
    for path in records:
        m = json.loads(path.read_text())
        if m.get("status") == "complete":
            assert m["dataset"]["train"] % m["optimizer"]["batch_size"] != 1, path


def test_a_size_one_batch_would_break_batchnorm_and_merged_batches_train_and_recalibrate():
    from poolstudy.evaluation.batchnorm import recalibrate_batchnorm
    from poolstudy.training.loop import train_epoch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 4, 4), torch.nn.BatchNorm2d(4), torch.nn.Flatten(),
                                torch.nn.Linear(4, 2))  # 4x4 input -> BatchNorm on a 1x1 map
    images = torch.randint(0, 256, (9, 1, 4, 4), dtype=torch.uint8)
    labels = torch.arange(9) % 2
    with pytest.raises(ValueError, match="Expected more than 1 value per channel"):
        model.train()(images[:1].float())
    norm = Normalizer([0.5], [0.25], torch.device("cpu"))
    batches = TensorBatches(images, labels, 4, norm, shuffle=True, generator=torch.Generator().manual_seed(0),
                            merge_single_last=True)
    stats = train_epoch(model, batches, torch.optim.SGD(model.parameters(), lr=0.1), progress=False)
    assert stats.loss == stats.loss and 0 <= stats.acc <= 1
    assert recalibrate_batchnorm(model, batches) == 9


def test_data_splits_merge_only_the_training_split(tmp_path):
    make_idx_dataset(tmp_path / "data", n_train=200, n_test=50)
    splits = load_splits(dataset_cfg(train_subset=None), tmp_path / "data", tmp_path / "cache")
    assert len(splits.train[1]) == 180
    cpu = torch.device("cpu")
    assert [len(y) for _, y in splits.batches("train", 179, cpu, shuffle=True, generator=torch.Generator())] == [180]
    assert [len(y) for _, y in splits.batches("val", 19, cpu)] == [19, 1]


def test_issue_15_size_one_last_batch_trains_through(run_train, tmp_path):
    """kernel_size=4 leaves a 1x1 map before a BatchNorm; 2134 images leave 1921 = 15 x 128 + 1 to train on."""
    run_dir = tmp_path / "run"
    proc = run_train("dataset=shapes", "model.downsample.kernel_size=4", "dataset.train_subset=2134",
                     "trainer.epochs=1", "invariance.enabled=false", "trainer.progress=false", f"hydra.run.dir={run_dir}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["dataset"]["train"] == 1921 and m["optimizer"]["batch_size"] == 128
    assert m["feature_maps"] and m["bn_recalibrated"] is True and m["test_acc"] > 0.25


def test_empty_validation_split_is_refused(tmp_path):
    make_idx_dataset(tmp_path / "data", n_train=200, n_test=50)
    with pytest.raises(DataError, match=r"The validation set of dataset mnist holds 0 image\(s\)"):
        load_splits(dataset_cfg(train_subset=20, val_fraction=0.01), tmp_path / "data", tmp_path / "cache")


# ---------------------------------------------------------------- reference decodes


# sha256 over (shape, dtype, bytes) of train_x, train_y, test_x, test_y and repr(classes), computed with the
# readers before the colour policy and the content-keyed cache (commit 2394720): the tensors must not change.
REFERENCE_DECODES = {
    "mnist": "67bfaae5e440a2f2b753da5dc56745b31ce3ac4aa8f1f54cc26fbe29387c00d6",
    "fashion_mnist": "0a1dbdc4b25ddfe396830ac597d4fe6440d775342d931af8d5e800edc966b863",
    "cifar10": "db22d613a26d6ce98975f92a01e95737aa61d87da7e4d2c3087f6c7d01246d1a",
}


def decode_digest(raw) -> str:
    import hashlib

    h = hashlib.sha256()
    for t in (raw.train_x, raw.train_y, raw.test_x, raw.test_y):
        h.update(str(tuple(t.shape)).encode())
        h.update(str(t.dtype).encode())
        h.update(t.contiguous().numpy().tobytes())
    h.update(repr(raw.classes).encode())
    return h.hexdigest()


@pytest.mark.realdata
@pytest.mark.parametrize("name", ["mnist", "fashion_mnist",
                                  pytest.param("cifar10", marks=pytest.mark.slow)])  # first JPEG decode: ~1 min
def test_real_datasets_decode_to_the_same_tensors_as_before(name, cache_dir):
    require_real({"mnist": "MNIST", "fashion_mnist": "FashionMNIST", "cifar10": "cifar10-jpeg.tar.gz"}[name])
    assert decode_digest(load_raw(name, SHARED_DATA, cache_dir)) == REFERENCE_DECODES[name]
