"""Cache entries belong to the data they were made from; relative data paths mean the launch directory."""

import json
import os
import shutil

import numpy as np
import pytest
import torch

from helpers import ROOT
from helpers.datafiles import make_gray_folder, make_idx_dataset, make_tar_gz, save_images
from poolstudy.data import catalogue, idx, load_raw, paths
from poolstudy.data.cachekey import _DIGESTS
from poolstudy.errors import DataError


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    catalogue._MEMORY.clear()
    yield
    catalogue._MEMORY.clear()


def two_archives(tmp_path):
    """<A>/data.tar.gz with 2 classes and <B>/data.tar.gz with 3, different pixels, one file name."""
    a = make_gray_folder(tmp_path / "srcA" / "data", classes=("a", "b"), seed=1)
    b = make_gray_folder(tmp_path / "srcB" / "data", classes=("x", "y", "z"), seed=2)
    (tmp_path / "A").mkdir()
    (tmp_path / "B").mkdir()
    return make_tar_gz(a, tmp_path / "A" / "data.tar.gz"), make_tar_gz(b, tmp_path / "B" / "data.tar.gz")


@pytest.mark.parametrize("forget_memory", [False, True], ids=["same process", "new process"])
def test_two_archives_of_one_name_never_share_a_cache_entry(tmp_path, forget_memory):
    archive_a, archive_b = two_archives(tmp_path)
    cache = tmp_path / "cache"
    first = load_raw("imagefolder", tmp_path, cache, root=str(archive_a))
    if forget_memory:
        catalogue._MEMORY.clear()
    second = load_raw("imagefolder", tmp_path, cache, root=str(archive_b))
    assert first.classes == ["a", "b"] and second.classes == ["x", "y", "z"]
    assert second.train_x.shape[0] == 18 and second.source == f"image folder {archive_b} (color_mode=auto)"
    fresh = load_raw("imagefolder", tmp_path, tmp_path / "fresh-cache", root=str(archive_b))
    assert torch.equal(second.train_x, fresh.train_x) and torch.equal(second.test_y, fresh.test_y)
    assert len(list((cache / "extracted").iterdir())) == 2 and len(list((cache / "decoded").iterdir())) == 2


def test_archive_replaced_in_place_is_decoded_again(tmp_path):
    archive_a, archive_b = two_archives(tmp_path)
    cache = tmp_path / "cache"
    assert load_raw("imagefolder", tmp_path, cache, root=str(archive_a)).classes == ["a", "b"]
    st = archive_a.stat()
    shutil.copyfile(archive_b, archive_a)  # the user swaps the file in place...
    os.utime(archive_a, ns=(st.st_atime_ns, st.st_mtime_ns))  # ...and a copy tool keeps the old time
    catalogue._MEMORY.clear()
    assert load_raw("imagefolder", tmp_path, cache, root=str(archive_a)).classes == ["x", "y", "z"]


def test_plain_folder_whose_images_change_is_decoded_again(tmp_path):
    root = make_gray_folder(tmp_path / "imgs")
    cache = tmp_path / "cache"
    before = load_raw("imagefolder", tmp_path, cache, root=str(root))
    target = root / "train" / "a" / "0000.png"
    st = target.stat()
    new_pixels = np.full((28, 28), 200, np.uint8)
    new_pixels[0, 0] = 0
    save_images(target.parent, [new_pixels])  # overwrites 0000.png
    os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))
    for keep_memory in (True, False):  # in this process, and in a new one (disk cache)
        if not keep_memory:
            catalogue._MEMORY.clear()
            _DIGESTS.clear()
        after = load_raw("imagefolder", tmp_path, cache, root=str(root))
        assert torch.equal(after.train_x[0, 0], torch.from_numpy(new_pixels))
        assert not torch.equal(after.train_x[0], before.train_x[0])
    save_images(root / "train" / "b", [new_pixels], start=40)  # one more image
    assert load_raw("imagefolder", tmp_path, cache, root=str(root)).train_x.shape[0] == 13
    for split in ("train", "test"):  # a renamed class is another label name
        (root / split / "b").rename(root / split / "c")
    assert load_raw("imagefolder", tmp_path, cache, root=str(root)).classes == ["a", "c"]


def test_idx_files_replaced_in_place_are_decoded_again(tmp_path):
    data = tmp_path / "data"
    make_idx_dataset(data, seed=0)
    first = load_raw("mnist", data, tmp_path / "cache")
    catalogue._MEMORY.clear()
    make_idx_dataset(data, seed=1)
    second = load_raw("mnist", data, tmp_path / "cache")
    assert not torch.equal(first.train_x, second.train_x)


def test_same_content_elsewhere_shares_the_cache_but_records_its_own_path(tmp_path, monkeypatch):
    make_idx_dataset(tmp_path / "one")
    shutil.copytree(tmp_path / "one", tmp_path / "two")
    load_raw("mnist", tmp_path / "one", tmp_path / "cache")
    catalogue._MEMORY.clear()
    monkeypatch.setattr(idx, "read_idx_dataset", lambda *a: pytest.fail("decoded again"))
    raw = load_raw("mnist", tmp_path / "two", tmp_path / "cache")
    assert raw.source == f"MNIST IDX files in {tmp_path / 'two' / 'MNIST' / 'raw'}"


def test_interrupted_extraction_leaves_no_partial_folder(tmp_path, monkeypatch):
    archive_a, _ = two_archives(tmp_path)
    cache = tmp_path / "cache"

    def killed(self, *a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr("tarfile.TarFile.extractall", killed)
    with pytest.raises(KeyboardInterrupt):
        load_raw("imagefolder", tmp_path, cache, root=str(archive_a))
    assert list((cache / "extracted").iterdir()) == []
    monkeypatch.undo()
    assert load_raw("imagefolder", tmp_path, cache, root=str(archive_a)).classes == ["a", "b"]


@pytest.mark.slow
def test_second_archive_of_one_name_trains_on_its_own_images(run_train, tmp_path):
    """Issue 22: train on <A>/data.tar.gz, then <B>/data.tar.gz with the same cache."""
    archive_a, archive_b = two_archives(tmp_path)
    records = []
    for archive in (archive_a, archive_b):
        run_dir = tmp_path / f"run-{archive.parent.name}"
        proc = run_train("dataset=imagefolder", f"dataset.root={archive}", "trainer.epochs=1", "trainer.batch_size=8",
                         "invariance.enabled=false", "trainer.progress=false", f"hydra.run.dir={run_dir}")
        assert proc.returncode == 0, proc.stderr[-3000:]
        records.append(json.loads((run_dir / "metrics.json").read_text())["dataset"])
    assert [r["classes"] for r in records] == [["a", "b"], ["x", "y", "z"]]
    assert [r["train"] + r["val"] for r in records] == [12, 18]


# ---------------------------------------------------------------- relative paths


def test_relative_paths_are_resolved_against_the_launch_directory(tmp_path, monkeypatch):
    launch = tmp_path / "launch"
    make_idx_dataset(launch / "data")
    make_gray_folder(launch / "imgs")
    job_dir = tmp_path / "outputs" / "job"
    job_dir.mkdir(parents=True)
    monkeypatch.chdir(job_dir)  # what hydra.job.chdir=true does
    monkeypatch.setattr(paths, "launch_dir", lambda: launch)
    raw = load_raw("mnist", "data", "cache")
    assert raw.source == f"MNIST IDX files in {launch / 'data' / 'MNIST' / 'raw'}"
    assert (launch / "cache" / "decoded").is_dir() and not (job_dir / "cache").exists()
    assert load_raw("imagefolder", "data", "cache", root="imgs").classes == ["a", "b"]
    assert paths.resolve_data_path("../x/./y") == tmp_path / "x" / "y"
    assert paths.resolve_data_path("~/d") == paths.Path.home() / "d"


def test_missing_data_names_the_resolved_folder_and_the_launch_directory(tmp_path, monkeypatch):
    monkeypatch.setattr(paths, "launch_dir", lambda: tmp_path)
    with pytest.raises(DataError) as err:
        load_raw("mnist", "../shared/nowhere", tmp_path / "cache")
    msg = str(err.value)
    assert str(tmp_path.parent / "shared" / "nowhere" / "MNIST" / "raw") in msg
    assert f"data_dir = '../shared/nowhere' is relative: it is resolved against the launch directory {tmp_path}" in msg
    with pytest.raises(DataError, match=r"dataset.root = 'imgs' does not exist \(dataset.root = 'imgs' is relative"):
        load_raw("imagefolder", tmp_path, tmp_path / "cache", root="imgs")
    (tmp_path / "imgs.zip").write_bytes(b"PK")
    with pytest.raises(DataError, match=r"dataset.root = 'imgs.zip' is a file but not a .tar, .tar.gz or .tgz archive"):
        load_raw("imagefolder", tmp_path, tmp_path / "cache", root="imgs.zip")


def test_launch_directory_is_hydras_original_cwd(tmp_path, monkeypatch):
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import OmegaConf

    assert paths.launch_dir() == paths.Path.cwd()  # no Hydra job: the current directory
    monkeypatch.setattr(HydraConfig, "initialized", staticmethod(lambda: True))
    monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda: OmegaConf.create({"runtime": {"cwd": "/launch"}})))
    assert paths.launch_dir() == paths.Path("/launch")


def test_chdir_true_with_relative_data_and_cache_dirs(run_train, tmp_path):
    """Issue 22: the README's relative POOLSTUDY_DATA under hydra.job.chdir=true."""
    make_idx_dataset(tmp_path / "datasets")
    rel_data = os.path.relpath(tmp_path / "datasets", ROOT)
    rel_cache = os.path.relpath(tmp_path / "cache", ROOT)
    run_dir = tmp_path / "run"
    proc = run_train("hydra.job.chdir=true", "dataset.train_subset=60", "trainer.epochs=1", "invariance.enabled=false",
                     "trainer.progress=false", f"hydra.run.dir={run_dir}", data_dir=rel_data,
                     env={"POOLSTUDY_CACHE": rel_cache})
    assert proc.returncode == 0, proc.stderr[-3000:]
    record = json.loads((run_dir / "metrics.json").read_text())["dataset"]
    assert record["source"] == f"MNIST IDX files in {tmp_path / 'datasets' / 'MNIST' / 'raw'}"
    assert list((tmp_path / "cache" / "decoded").glob("mnist-*.pt"))
    assert not [p for p in run_dir.rglob("*") if p.name == "decoded"]
