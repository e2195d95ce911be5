"""A dataset's source is what its config's _target_ names; the name alone picks it in older snapshots."""

import pytest

from helpers import compose
from helpers.datafiles import make_idx_dataset
from poolstudy.data import catalogue, load_raw, load_splits
from poolstudy.errors import DataError


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    catalogue._MEMORY.clear()
    yield
    catalogue._MEMORY.clear()


@pytest.mark.parametrize("name", sorted(catalogue.SOURCES))
def test_every_dataset_config_names_its_source(name):
    assert compose([f"dataset={name}"]).dataset._target_ == catalogue.SOURCES[name]


def test_the_target_and_the_name_alone_read_the_same_data(tmp_path):
    make_idx_dataset(tmp_path / "data", folder="FashionMNIST")
    cfg = compose(["dataset=fashion_mnist"], data_dir=tmp_path / "data", cache=tmp_path / "cache").dataset
    by_target = load_raw("fashion_mnist", tmp_path / "data", tmp_path / "cache", target=cfg._target_)
    catalogue._MEMORY.clear()
    by_name = load_raw("fashion_mnist", tmp_path / "data", tmp_path / "cache")
    assert by_target.source == by_name.source and (by_target.train_x == by_name.train_x).all()
    shapes = load_splits(compose(["dataset=shapes"]).dataset, tmp_path / "data", tmp_path / "cache")
    assert shapes.classes == ["square", "disk", "triangle", "cross"]
    assert not list((tmp_path / "cache" / "decoded").glob("shapes*"))  # generated, never cached


def test_a_name_that_is_not_its_targets_or_unknown_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"dataset.name = 'cifar10' is read by poolstudy.data.cifar10.locate, not by "
                                        r"dataset._target_ = 'poolstudy.data.idx.locate'. Pick a dataset with dataset="):
        load_raw("cifar10", tmp_path, tmp_path / "cache", target="poolstudy.data.idx.locate")
    with pytest.raises(DataError, match=r"dataset.name = 'svhn' is not a known dataset; valid names are: mnist, "
                                        r"fashion_mnist, cifar10, imagefolder, shapes."):
        load_raw("svhn", tmp_path, tmp_path / "cache")
    with pytest.raises(DataError, match=r"dataset.name = 'svhn' is not a dataset in IDX files"):
        load_raw("svhn", tmp_path, tmp_path / "cache", target="poolstudy.data.idx.locate")
