"""Image folders as users have them: hidden entries, empty classes, palette/alpha/16-bit images, bad files."""

import json
import shutil

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

from helpers.datafiles import make_gray_folder, make_image_folder, palette_image, save_images
from poolstudy.data import catalogue, load_raw, load_splits
from poolstudy.data.imagefolder import MAX_LISTED, read_image_folder
from poolstudy.errors import DataError


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    catalogue._MEMORY.clear()
    yield
    catalogue._MEMORY.clear()


def folder_cfg(root, **kw):
    base = dict(name="imagefolder", root=str(root), channels=None, image_size=None, num_classes=None, mean=None,
                std=None, val_fraction=0.25, split_seed=0, train_subset=None, test_subset=None, color_mode="auto")
    base.update(kw)
    return OmegaConf.create(base)


def add_clutter(root, classes=("a", "b")):
    """What macOS, Jupyter and Windows leave in a folder; none of it is data."""
    for split in ("train", "test"):
        ckpt = root / split / ".ipynb_checkpoints"
        save_images(ckpt, [np.full((28, 28), 9, np.uint8)])
        save_images(root / split / "__MACOSX" / "a", [np.full((28, 28), 7, np.uint8)])
        (root / split / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1" + bytes(100))
        for cls in classes:
            (root / split / cls / ".DS_Store").write_bytes(b"Bud1")
            (root / split / cls / "._0000.png").write_bytes(b"\x00\x05\x16\x07AppleDouble")  # resource fork
            (root / split / cls / "Thumbs.db").write_bytes(b"\xd0\xcf\x11\xe0")
            save_images(root / split / cls / ".ipynb_checkpoints", [np.zeros((28, 28), np.uint8)])


def test_hidden_entries_are_skipped_and_labels_stay(tmp_path):
    clean = make_gray_folder(tmp_path / "clean")
    cluttered = tmp_path / "cluttered"
    shutil.copytree(clean, cluttered)
    add_clutter(cluttered)
    want = read_image_folder(clean)
    got = read_image_folder(cluttered)
    assert got.classes == ["a", "b"]
    assert torch.equal(got.train_x, want.train_x) and torch.equal(got.train_y, want.train_y)
    assert torch.equal(got.test_x, want.test_x) and got.train_y.bincount().tolist() == [6, 6]


def test_hidden_folder_inside_an_archive_is_skipped(tmp_path):
    import tarfile

    root = make_gray_folder(tmp_path / "src" / "digits")
    (root / "__MACOSX").mkdir()
    archive = tmp_path / "digits.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:  # __MACOSX next to the tree, as macOS's zip-then-tar leaves it
        tar.add(root, arcname="digits")
        tar.add(root / "__MACOSX", arcname="__MACOSX")
    raw = load_raw("imagefolder", tmp_path, tmp_path / "cache", root=str(archive))
    assert raw.classes == ["a", "b"] and raw.train_x.shape == (12, 1, 28, 28)


@pytest.mark.parametrize("where", ["empty", "only hidden files"])
def test_empty_class_folder_is_refused_by_name(tmp_path, where):
    root = make_gray_folder(tmp_path / "imgs")
    for split in ("train", "test"):
        (root / split / "c").mkdir()
        if where == "only hidden files":
            (root / split / "c" / ".DS_Store").write_bytes(b"Bud1")
    with pytest.raises(DataError) as err:
        read_image_folder(root)
    msg = str(err.value)
    assert "class folder(s) without images: train/c; test/c" in msg and str(root) in msg
    assert "remove the folder or add images" in msg


def test_class_folders_must_agree_between_train_and_test(tmp_path):
    root = make_gray_folder(tmp_path / "imgs")
    save_images(root / "train" / "c", [np.zeros((28, 28), np.uint8)])
    with pytest.raises(DataError, match=r"only in train: \['c'\]; only in test: none"):
        read_image_folder(root)


def test_two_classes_differing_only_in_colour_decode_differently(tmp_path):
    """Palette PNGs with identical indices: classes differ only in their palettes (red vs green)."""
    pattern = np.zeros((28, 28), np.uint8)
    pattern[8:20, 8:20] = 1  # index 1: the class colour on index 0: black
    for split, n in (("train", 6), ("test", 2)):
        save_images(tmp_path / "imgs" / split / "green", [palette_image(pattern, [(0, 0, 0), (0, 255, 0)])] * n)
        save_images(tmp_path / "imgs" / split / "red", [palette_image(pattern, [(0, 0, 0), (255, 0, 0)])] * n)
    assert Image.open(tmp_path / "imgs" / "train" / "red" / "0000.png").mode == "P"
    raw = read_image_folder(tmp_path / "imgs")
    assert raw.classes == ["green", "red"] and raw.train_x.shape == (12, 3, 28, 28)
    green, red = raw.train_x[raw.train_y == 0][0], raw.train_x[raw.train_y == 1][0]
    assert green[:, 10, 10].tolist() == [0, 255, 0] and red[:, 10, 10].tolist() == [255, 0, 0]
    assert green[:, 0, 0].tolist() == [0, 0, 0] == red[:, 0, 0].tolist()
    gray = read_image_folder(tmp_path / "imgs", "grayscale")  # PIL's luma: 0.587 G vs 0.299 R
    assert gray.train_x.shape == (12, 1, 28, 28)
    assert gray.train_x[gray.train_y == 0][0, 0, 10, 10] == 150 and gray.train_x[gray.train_y == 1][0, 0, 10, 10] == 76


def _one_image_folder(tmp_path, img, ext="png", n=2):
    for split in ("train", "test"):
        for cls in ("a", "b"):
            save_images(tmp_path / "imgs" / split / cls, [img] * n, ext=ext)
    return tmp_path / "imgs"


def test_rgba_with_opaque_alpha_gives_three_channels_and_trains(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (28, 28, 3), dtype=np.uint8)
    rgba = np.dstack([rgb, np.full((28, 28), 255, np.uint8)])
    raw = read_image_folder(_one_image_folder(tmp_path, Image.fromarray(rgba)))
    assert raw.train_x.shape == (4, 3, 28, 28)
    assert torch.equal(raw.train_x[0], torch.from_numpy(rgb).permute(2, 0, 1))


@pytest.mark.parametrize("mode,ext,channels", [
    ("1", "png", 1), ("L", "png", 1), ("LA", "png", 1), ("P", "png", 3), ("P+transparency", "png", 3), ("RGB", "png", 3),
    ("RGBA", "png", 3), ("CMYK", "jpg", 3), ("YCbCr", "jpg", 3),
])
def test_every_pil_mode_is_converted_as_pil_converts_it(tmp_path, mode, ext, channels):
    rng = np.random.default_rng(1)
    base = Image.fromarray(rng.integers(0, 256, (28, 28, 3), dtype=np.uint8))
    img = base.quantize(16) if mode.startswith("P") else base.convert(mode)
    if mode == "P+transparency":  # PNG's tRNS chunk: palette index 0 transparent
        img.info["transparency"] = 0
    root = _one_image_folder(tmp_path, img, ext)
    reread = Image.open(root / "train" / "a" / f"0000.{ext}")
    raw = read_image_folder(root)
    want = np.asarray(reread.convert("L" if channels == 1 else "RGB"))
    want = want[None] if channels == 1 else want.transpose(2, 0, 1)
    assert raw.train_x.shape == (4, channels, 28, 28) and np.array_equal(raw.train_x[0].numpy(), want)


def test_auto_picks_rgb_only_when_an_image_has_colour(tmp_path):
    gray = np.arange(28 * 28, dtype=np.uint8).reshape(28, 28)
    grey_rgb = np.dstack([gray] * 3)  # an RGB file holding a grey picture
    root = _one_image_folder(tmp_path, Image.fromarray(grey_rgb))
    save_images(root / "train" / "a", [gray], start=10)  # a mode-L file among them
    raw = read_image_folder(root)
    assert raw.train_x.shape == (5, 1, 28, 28) and torch.equal(raw.train_x[0, 0], torch.from_numpy(gray))
    coloured = grey_rgb.copy()
    coloured[0, 0] = (1, 2, 3)
    save_images(root / "train" / "b", [coloured], start=10)
    raw = read_image_folder(root)
    assert raw.train_x.shape == (6, 3, 28, 28)
    mode_l = raw.train_x[2]  # train/a/0010.png, the grayscale file: repeated into R, G and B
    assert all(torch.equal(mode_l[c], torch.from_numpy(gray)) for c in range(3))
    assert read_image_folder(root, "grayscale").train_x.shape == (6, 1, 28, 28)
    assert read_image_folder(make_gray_folder(tmp_path / "g"), "rgb").train_x.shape == (12, 3, 28, 28)


def test_16_bit_images_are_scaled_not_clipped(tmp_path):
    wide = np.array([[0, 257, 32768, 65535]] * 4, dtype=np.uint16)
    root = _one_image_folder(tmp_path, Image.fromarray(wide))
    assert Image.open(root / "train" / "a" / "0000.png").mode.startswith("I")
    raw = read_image_folder(root)
    assert raw.train_x.shape == (4, 1, 4, 4) and raw.train_x[0, 0, 0].tolist() == [0, 1, 128, 255]


def test_all_bad_files_are_reported_in_one_message(tmp_path):
    root = make_gray_folder(tmp_path / "imgs")
    (root / "train" / "a" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(20))
    (root / "test" / "b" / "notes.txt").write_text("not an image\n")
    save_images(root / "train" / "b", [np.zeros((32, 32), np.uint8)], start=50)
    save_images(root / "train", [np.zeros((28, 28), np.uint8)], start=90)  # outside any class folder
    with pytest.raises(DataError) as err:
        read_image_folder(root)
    msg = str(err.value)
    assert msg.startswith(f"4 file(s) in image folder {root} cannot be used: ")
    for needle in ("train/a/broken.png: ", "test/b/notes.txt: not an image file PIL can read",
                   "train/b/0050.png: 32x32 pixels, most images are 28x28", "train/0090.png: not inside a class folder"):
        assert needle in msg, msg
    assert "\n" not in msg


def test_many_bad_files_are_counted_after_the_first_few_dozen(tmp_path):
    root = make_gray_folder(tmp_path / "imgs")
    for i in range(MAX_LISTED + 12):
        (root / "train" / "a" / f"bad{i:03d}.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError) as err:
        read_image_folder(root)
    msg = str(err.value)
    assert msg.startswith(f"{MAX_LISTED + 12} file(s)") and "; and 12 more." in msg
    assert msg.count("not an image file PIL can read") == MAX_LISTED


def test_constant_channel_is_refused_before_training_and_the_fix_works(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 2)):
        for c, cls in enumerate(("a", "b")):
            imgs = [np.dstack([rng.integers(0, 128, (28, 28)) + 100 * c, rng.integers(0, 99, (28, 28)),
                               np.zeros((28, 28))]).astype(np.uint8) for _ in range(n)]
            save_images(tmp_path / "imgs" / split / cls, imgs)
    with pytest.raises(DataError) as err:
        load_splits(folder_cfg(tmp_path / "imgs"), tmp_path, tmp_path / "cache")
    msg = str(err.value)
    assert "channel 2 (blue) is 0 everywhere" in msg and "dataset.color_mode=grayscale" in msg
    splits = load_splits(folder_cfg(tmp_path / "imgs", color_mode="grayscale"), tmp_path, tmp_path / "cache")
    assert splits.image_shape == (1, 28, 28) and splits.std[0] > 0.05


def test_uniform_images_are_refused(tmp_path):
    root = _one_image_folder(tmp_path, Image.fromarray(np.full((28, 28), 40, np.uint8)), n=4)
    with pytest.raises(DataError, match=r"channel 0 \(gray\) is 40 everywhere.*one uniform colour"):
        load_splits(folder_cfg(root), tmp_path, tmp_path / "cache")


def test_bad_color_mode_is_refused(tmp_path):
    with pytest.raises(DataError, match=r"dataset.color_mode = 'cmyk' is not valid: it must be one of auto, grayscale, rgb"):
        load_splits(folder_cfg(make_gray_folder(tmp_path / "imgs"), color_mode="cmyk"), tmp_path, tmp_path / "c")


def test_colour_mode_is_part_of_the_cache_key(tmp_path):
    root = make_image_folder(tmp_path / "imgs", classes=("a", "b"), per_class=(4, 2), size=8)
    rgb = load_raw("imagefolder", tmp_path, tmp_path / "cache", root=str(root))
    gray = load_raw("imagefolder", tmp_path, tmp_path / "cache", root=str(root), color_mode="grayscale")
    assert rgb.train_x.shape[1] == 3 and gray.train_x.shape[1] == 1
    assert len(list((tmp_path / "cache" / "decoded").glob("imagefolder-*.pt"))) == 2


@pytest.mark.slow
def test_training_records_class_names_in_label_order(run_train, tmp_path):
    root = make_gray_folder(tmp_path / "imgs", classes=("zebra", "apple", "mango"), per_class=(8, 2))
    add_clutter(root, classes=("zebra", "apple", "mango"))
    proc = run_train("dataset=imagefolder", f"dataset.root={root}", "trainer.epochs=1", "trainer.batch_size=8",
                     "invariance.enabled=false", "trainer.progress=false", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    dataset = json.loads((tmp_path / "run" / "metrics.json").read_text())["dataset"]
    assert dataset["classes"] == ["apple", "mango", "zebra"] and dataset["num_classes"] == 3
    assert dataset["image_shape"] == [1, 28, 28]
    assert dataset["source"] == f"image folder {root} (color_mode=auto)"
