"""Shift generation, the invariance probes, the controlled datasets and their metrics.json keys."""

import dataclasses
import json
from dataclasses import asdict

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from helpers import compose
from helpers.datafiles import make_idx_dataset
from poolstudy.evaluation.invariance import ProbeSettings, _seeded_model, prediction_distance, probe_invariance
from poolstudy.jobs.config_checks import check_config
from poolstudy.data import catalogue, load_raw, load_splits
from poolstudy.data.loader import Normalizer
from poolstudy.data.shapes import SHAPE_CLASSES, make_shapes
from poolstudy.data.shifts import ring_offsets, shift_images, shifts_at_distance, translate_test_images
from poolstudy.errors import PoolStudyError
from poolstudy.models import create_model

CPU = torch.device("cpu")


@pytest.fixture(autouse=True)
def fresh_memory_cache():
    catalogue._MEMORY.clear()
    yield
    catalogue._MEMORY.clear()


# ---------------------------------------------------------------- shift generation

GRID = torch.arange(1, 17, dtype=torch.uint8).view(1, 1, 4, 4)  # rows 1-4, 5-8, 9-12, 13-16
# GRID moved one row down and two columns left, for each padding mode
SHIFTED_DOWN1_LEFT2 = {
    "zero": [[0, 0, 0, 0], [3, 4, 0, 0], [7, 8, 0, 0], [11, 12, 0, 0]],
    "reflect": [[7, 8, 7, 6], [3, 4, 3, 2], [7, 8, 7, 6], [11, 12, 11, 10]],
    "circular": [[15, 16, 13, 14], [3, 4, 1, 2], [7, 8, 5, 6], [11, 12, 9, 10]],
}


@pytest.mark.parametrize("padding", sorted(SHIFTED_DOWN1_LEFT2))
def test_known_image_lands_where_it_should(padding):
    shifted = shift_images(GRID, 1, -2, padding)
    assert shifted.dtype == torch.uint8
    assert shifted[0, 0].tolist() == SHIFTED_DOWN1_LEFT2[padding]


@pytest.mark.parametrize("padding,shift,expected", [
    ("zero", (1, 2), [[5, 3]]),
    ("circular", (1, 2), [[5, 3]]),
    ("reflect", (1, 2), [[5, 1], [5, 3]]),  # and its mirror image fills the uncovered left columns
    ("zero", (3, -1), []),                  # row 4 + 3 lies below a 6-row image: gone
    ("circular", (3, -1), [[1, 0]]),        # ... or wraps around to the top
    ("reflect", (3, -1), []),               # the uncovered top rows mirror rows 1-3, not row 4
])
def test_single_pixel_moves_by_the_shift(padding, shift, expected):
    image = torch.zeros(1, 1, 6, 6)
    image[0, 0, 4, 1] = 1.0
    shifted = shift_images(image, *shift, padding)[0, 0]
    assert shifted.nonzero().tolist() == expected


@pytest.mark.parametrize("padding,torch_mode", [("zero", "constant"), ("reflect", "reflect"), ("circular", "circular")])
def test_per_image_shifts_match_torch_padding(padding, torch_mode):
    images = torch.randn(5, 3, 7, 9, generator=torch.Generator().manual_seed(0))
    dy, dx = torch.tensor([0, 2, -3, 1, -1]), torch.tensor([0, -3, 1, 3, -2])
    batch = shift_images(images, dy, dx, padding)
    for i in range(5):
        padded = F.pad(images[i : i + 1], (3, 3, 3, 3), mode=torch_mode)
        window = padded[:, :, 3 - dy[i] : 3 - dy[i] + 7, 3 - dx[i] : 3 - dx[i] + 9]
        assert torch.equal(batch[i : i + 1], window), i


def test_ring_directions_are_complete_and_balanced():
    assert ring_offsets(0).tolist() == [[0, 0]]
    ring = ring_offsets(2)
    assert len(ring) == 16 and bool((ring.abs().amax(1) == 2).all())
    assert len({tuple(o) for o in ring.tolist()}) == 16
    dy, dx = shifts_at_distance(160, 2, torch.Generator().manual_seed(3))
    counts = torch.stack([dy, dx], 1).unique(dim=0, return_counts=True)[1]
    assert len(counts) == 16 and bool((counts == 10).all())


def test_bad_padding_mode_is_named():
    with pytest.raises(PoolStudyError, match="padding mode 'wrap' is not valid: it must be one of zero, reflect"):
        shift_images(GRID, 1, 1, "wrap")


# ---------------------------------------------------------------- probes


class TinyConvNet(nn.Module):
    """Circular-padded convolutions + global average pooling (+ a fixed feature standardisation,
    so that random weights still spread predictions over the classes). With stride 1 and
    circular shifts it is shift-invariant by construction; stride 2 aliases (Zhang 2019)."""

    def __init__(self, stride: int, classes: int = 4):
        super().__init__()
        gen = torch.manual_seed(0)  # noqa: F841 - fixed weights for every instance
        self.conv1 = nn.Sequential(nn.Conv2d(1, 4, 3, stride=stride, padding=1, padding_mode="circular"), nn.ReLU())
        self.conv2 = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, padding_mode="circular"), nn.ReLU())
        self.fc = nn.Linear(8, classes)
        self.register_buffer("center", torch.zeros(8))
        self.register_buffer("scale", torch.ones(8))
        self.double()  # float64: a circular shift reorders sums; this keeps rounding far below any margin

    def features(self, x):
        return self.conv2(self.conv1(x.double())).mean((2, 3))

    def forward(self, x):
        return self.fc((self.features(x) - self.center) / self.scale)

    @torch.no_grad()
    def calibrate(self, x):
        feats = self.features(x)
        self.center.copy_(feats.mean(0))
        self.scale.copy_(feats.std(0).clamp_min(1e-6))
        return self


@pytest.fixture(scope="module")
def shapes_test():
    raw = make_shapes(train_size=0, test_size=160)
    return raw.test_x, raw.test_y, Normalizer([0.2], [0.3], CPU)


def probes(**changes) -> ProbeSettings:
    """The probes' settings: conf/invariance/default.yaml's, with ``changes``."""
    return dataclasses.replace(ProbeSettings.from_config(compose([]).invariance), **changes)


def calibrated(stride, shapes_test):
    x, _, normalize = shapes_test
    return TinyConvNet(stride).calibrate(normalize(x))


def test_invariant_model_is_exactly_consistent_and_flat(shapes_test):
    x, y, normalize = shapes_test
    model = calibrated(1, shapes_test)
    assert len(model(normalize(x)).argmax(1).unique()) >= 3  # predictions really vary
    settings = probes(padding="circular", passes=2, subset=None, layerwise=False)
    result = probe_invariance(model, x, y, normalize, settings, batch_size=100)
    assert result.shift_consistency == 1.0
    assert list(result.acc_vs_shift) == ["0", "1", "2", "3"]
    assert len(set(result.acc_vs_shift.values())) == 1, result.acc_vs_shift
    assert result.prediction_distance_1px < 1e-12
    assert result.layer_shift_change is None


def test_aliasing_model_is_measurably_not_invariant(shapes_test):
    x, y, normalize = shapes_test
    settings = probes(padding="circular", passes=2, subset=None, layerwise=False)
    strided = probe_invariance(calibrated(2, shapes_test), x, y, normalize, settings, batch_size=100)
    assert strided.shift_consistency < 0.9, strided
    assert strided.prediction_distance_1px > 0.01
    # the invariant net loses its invariance too once the border is zero-filled instead of wrapped
    zero = probe_invariance(calibrated(1, shapes_test), x, y, normalize,
                            probes(padding="zero", passes=2, subset=None, layerwise=False), batch_size=100)
    assert zero.shift_consistency < 0.95 and zero.acc_vs_shift["3"] != zero.acc_vs_shift["0"]


def test_results_are_identical_for_a_fixed_seed_and_differ_for_another(shapes_test):
    x, y, normalize = shapes_test
    model = create_model("lenet", in_channels=1, num_classes=4, downsample={"type": "maxpool"})
    torch.manual_seed(0)
    initial = create_model("lenet", in_channels=1, num_classes=4, downsample={"type": "maxpool"})
    settings = probes(passes=2, subset=100, seed=5)
    first = probe_invariance(model, x, y, normalize, settings, 50, initial_model=initial)
    again = probe_invariance(model, x, y, normalize, settings, 50, initial_model=initial)
    assert first == again
    other = probe_invariance(model, x, y, normalize, probes(passes=2, subset=100, seed=6), 50)
    assert (other.shift_consistency, other.prediction_distance_1px) != (first.shift_consistency,
                                                                         first.prediction_distance_1px)
    assert set(first.layer_shift_change) == {"trained", "init"}
    assert set(first.layer_shift_change["trained"]) == {"conv1", "conv2", "conv3"}
    assert all(v > 0 for v in first.layer_shift_change["init"].values())


def test_prediction_distances():
    a = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    assert prediction_distance(a, a, "tv") == 0.0 and prediction_distance(a, a, "kl") == 0.0
    flipped = a.flip(1)
    assert prediction_distance(a[1:], flipped[1:], "tv") == pytest.approx(1.0, abs=1e-8)
    p, q = torch.tensor([0.5, 0.5]), torch.softmax(torch.tensor([1.0, 0.0]), 0)
    expected_kl = float((p * (p / q).log()).sum())
    assert prediction_distance(torch.zeros(1, 2), torch.tensor([[1.0, 0.0]]), "kl") == pytest.approx(expected_kl)
    with pytest.raises(PoolStudyError, match="invariance.stability_metric = 'js'"):
        prediction_distance(a, a, "js")


def test_initial_model_is_rebuilt_from_the_seed_without_touching_the_global_rng():
    build = lambda: create_model("lenet", in_channels=1, num_classes=10, downsample={"type": "strided", "kernel_size": 5})  # noqa: E731
    torch.manual_seed(11)
    reference = build()
    state = torch.random.get_rng_state()
    rebuilt = _seeded_model(build, 11, CPU)
    assert torch.equal(torch.random.get_rng_state(), state)
    for (name, a), (_, b) in zip(reference.state_dict().items(), rebuilt.state_dict().items()):
        assert torch.equal(a, b), name


def test_too_large_max_shift_is_a_clear_error(shapes_test):
    x, y, normalize = shapes_test
    with pytest.raises(PoolStudyError, match=r"invariance.max_shift = 28 is too large for 28x28 images.*at most 27"):
        probe_invariance(calibrated(1, shapes_test), x, y, normalize, probes(max_shift=28))


# ---------------------------------------------------------------- config


@pytest.mark.parametrize("override,key", [
    ("invariance.padding=wrap", "invariance.padding"),
    ("invariance.max_shift=0", "invariance.max_shift"),
    ("invariance.passes=0", "invariance.passes"),
    ("invariance.stability_metric=js", "invariance.stability_metric"),
    ("invariance.enabled=maybe", "invariance.enabled"),
    ("dataset.test_shift=-1", "dataset.test_shift"),
    ("dataset.test_shift_padding=edge", "dataset.test_shift_padding"),
])
def test_bad_invariance_values_name_the_key(override, key):
    cfg = compose([override])
    with pytest.raises(PoolStudyError, match=rf"^{key.replace('.', '[.]')} = .* is not valid: it must be"):
        check_config(cfg)


def test_defaults_are_on_and_cheap():
    cfg = compose([])
    assert cfg.invariance.enabled is True and cfg.invariance.max_shift == 3 and cfg.invariance.padding == "zero"
    assert cfg.dataset.test_shift == 0
    check_config(compose(["dataset=shapes"]))


def test_the_probes_take_every_setting_from_the_config():
    node = compose([]).invariance
    assert asdict(ProbeSettings.from_config(node)) == {k: v for k, v in node.items() if k != "enabled"}
    partial = {k: v for k, v in node.items() if k != "passes"}
    with pytest.raises(PoolStudyError, match=r"^invariance.passes is missing from the config; .*conf/invariance/"):
        ProbeSettings.from_config(partial)


# ---------------------------------------------------------------- controlled datasets


def test_shapes_dataset_needs_no_files_and_is_deterministic(tmp_path):
    raw = load_raw("shapes", tmp_path / "no-data", tmp_path / "cache")
    again = make_shapes()
    assert torch.equal(raw.train_x, again.train_x) and torch.equal(raw.test_y, again.test_y)
    assert raw.train_x.shape == (6000, 1, 28, 28) and raw.train_x.dtype == torch.uint8
    assert raw.classes == SHAPE_CLASSES and raw.test_x.shape[0] == 1000
    assert raw.train_y.bincount().tolist() == pytest.approx([1500] * 4, abs=60)
    bright = (raw.train_x >= 160).flatten(1).sum(1)
    assert int(bright.min()) >= 9 * 2  # every image holds a shape (smallest: a half-extent-4 cross)
    positions = (raw.train_x[:, 0] >= 160).float().nonzero()[:, 1:].float()
    assert positions[:, 0].std() > 5 and positions[:, 1].std() > 5  # spread over the image, not centred
    assert not (tmp_path / "cache").exists()


def test_shapes_splits_through_the_config(tmp_path):
    data = load_splits(compose(["dataset=shapes"]).dataset, tmp_path, tmp_path / "cache")
    assert (len(data.train[1]), len(data.val[1]), len(data.test[1])) == (5400, 600, 1000)
    assert data.num_classes == 4 and data.image_shape == (1, 28, 28) and "synthetic shapes" in data.source


def test_test_shift_moves_only_the_test_images(tmp_path):
    make_idx_dataset(tmp_path / "data", n_train=200, n_test=50)
    centred = load_splits(compose(["dataset=mnist"]).dataset, tmp_path / "data", tmp_path / "cache")
    cfg = compose(["dataset=mnist", "dataset.test_shift=2", "dataset.test_shift_padding=circular"]).dataset
    shifted = load_splits(cfg, tmp_path / "data", tmp_path / "cache")
    assert torch.equal(shifted.train[0], centred.train[0]) and torch.equal(shifted.val[0], centred.val[0])
    assert torch.equal(shifted.test[1], centred.test[1])
    assert not torch.equal(shifted.test[0], centred.test[0])
    assert "test images shifted by 2 px (circular padding)" in shifted.source
    # every image is a circular shift of its centred copy by exactly 2 px (Chebyshev)
    ring = ring_offsets(2)
    for i in range(50):
        matches = [o for o in ring.tolist()
                   if torch.equal(shift_images(centred.test[0][i : i + 1], o[0], o[1], "circular"), shifted.test[0][i : i + 1])]
        assert matches, i
    again = translate_test_images(centred.test[0], 2, "circular", int(cfg.split_seed))
    assert torch.equal(again, shifted.test[0])


def test_test_shift_too_large_names_the_key(tmp_path):
    with pytest.raises(PoolStudyError, match="dataset.test_shift = 40 is too large for 28x28 images"):
        load_splits(compose(["dataset=shapes", "dataset.test_shift=40"]).dataset, tmp_path, tmp_path / "cache")


# ---------------------------------------------------------------- end to end


@pytest.mark.slow
def test_shapes_trains_end_to_end_and_records_the_probes(run_train, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_train("-m", "dataset=shapes", "invariance.enabled=true,false", "trainer.epochs=1",
                     "dataset.train_subset=600", "dataset.test_subset=200", "invariance.subset=null",
                     "invariance.passes=2", "trainer.progress=false", f"hydra.sweep.dir={sweep}",
                     data_dir=tmp_path / "no-data")
    assert proc.returncode == 0, proc.stderr[-3000:]
    on = json.loads((sweep / "0" / "metrics.json").read_text())
    off = json.loads((sweep / "1" / "metrics.json").read_text())
    assert on["dataset"]["name"] == "shapes" and on["dataset"]["test"] == 200
    assert 0.0 <= on["shift_consistency"] <= 1.0
    assert list(on["acc_vs_shift"]) == ["0", "1", "2", "3"]
    # probing the whole test set: the unshifted point is the job's own test accuracy
    assert on["acc_vs_shift"]["0"] == on["test_acc"]
    assert on["prediction_distance_1px"] >= 0.0
    assert set(on["layer_shift_change"]) == {"init", "trained"}
    assert set(on["layer_shift_change"]["trained"]) == {"conv1", "conv2", "conv3"}
    record = on["invariance"]
    assert record["enabled"] is True and record["test_images"] == 200 and record["passes"] == 2
    assert (record["max_shift"], record["padding"], record["seed"], record["test_shift"]) == (3, "zero", 0, 0)
    assert record["time_s"] > 0
    assert off["invariance"]["enabled"] is False and "shift_consistency" not in off
    assert off["test_acc"] == on["test_acc"]  # the probes change nothing else
