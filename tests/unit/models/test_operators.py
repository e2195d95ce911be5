"""The downsampling operator zoo and the All-CNN-C family: parameters, output sizes, invalid combinations."""


import pytest
import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf
from torch import nn

from helpers import CONF_DIR, compose
from poolstudy.errors import InvalidModelError, PoolStudyError
from poolstudy.models import DOWNSAMPLERS, create_model
from poolstudy.models.allcnn import MODEL_C_WINDOW
from poolstudy.models.downsample import conv_stage, create_downsample
from poolstudy.models.layers import BinomialBlur
from poolstudy.models.profile import count_params, stage_sizes, trace_shapes

WINDOWED = ["maxpool", "avgpool", "lppool", "fracmaxpool", "strided", "conv", "convpool", "blurpool", "blurstrided"]
# the operators LeNet and All-CNN-C build from (published keeps a network built elsewhere:
# tests/unit/models/test_architectures.py)
BUILT_IN = [name for name, cls in DOWNSAMPLERS.items() if cls.at_points != "published"]
EXTRA_CONV = {"conv", "convpool"}


def conf_downsample(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml").downsample)


def conv_params(cin: int, cout: int, k: int) -> int:
    return cin * cout * k * k + cout


def lenet_params(in_channels: int = 1, classes: int = 10) -> int:
    return conv_params(in_channels, 6, 5) + conv_params(6, 16, 5) + 2 * 16 + conv_params(16, 120, 5) + 2 * 120 \
        + 120 * classes + classes


def model_c_params(width: float = 1.0, in_channels: int = 3, classes: int = 10) -> int:
    c1, c2 = round(96 * width), round(192 * width)
    return (conv_params(in_channels, c1, 3) + conv_params(c1, c1, 3) + conv_params(c1, c2, 3) + conv_params(c2, c2, 3)
            + conv_params(c2, c2, 3) + conv_params(c2, c2, 1) + conv_params(c2, classes, 1))


# --- the registry and its configs -------------------------------------------------------------

def test_every_operator_has_a_config_file_of_its_name():
    assert set(WINDOWED) | {"none", "published"} == set(DOWNSAMPLERS)
    for name in DOWNSAMPLERS:
        assert conf_downsample(name)["type"] == name
        create_downsample(conf_downsample(name))  # the shipped values are valid


# --- parameter counts ---------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(BUILT_IN))
@pytest.mark.parametrize("in_channels", [1, 3])
def test_lenet_params_per_operator(name, in_channels):
    ds = conf_downsample(name)
    extra = conv_params(6, 6, ds["kernel_size"]) + conv_params(16, 16, ds["kernel_size"]) if name in EXTRA_CONV else 0
    assert count_params(create_model("lenet", in_channels=in_channels, num_classes=10, downsample=ds)) == \
        lenet_params(in_channels) + extra


@pytest.mark.parametrize("name", sorted(BUILT_IN))
@pytest.mark.parametrize("width", [1.0, 0.25])
def test_allcnn_c_params_per_operator(name, width):
    ds = conf_downsample(name) if name == "none" else {**conf_downsample(name), **MODEL_C_WINDOW}
    c1, c2 = round(96 * width), round(192 * width)
    extra = conv_params(c1, c1, 3) + conv_params(c2, c2, 3) if name in EXTRA_CONV else 0
    model = create_model("allcnn_c", in_channels=3, num_classes=10, downsample=ds, width=width)
    assert count_params(model) == model_c_params(width) + extra


def test_model_c_family_counts_match_the_paper():
    # Springenberg et al. Table 3: All-CNN-C and ConvPool-CNN-C have about 1.4M parameters.
    conv = create_model("allcnn_c", in_channels=3, num_classes=10, downsample={"type": "conv", **MODEL_C_WINDOW})
    assert count_params(conv) == 1_369_738


@pytest.mark.parametrize("arch", ["lenet", "allcnn_c"])
@pytest.mark.parametrize("kernel_size", [2, 3, 5])
def test_conv_adds_exactly_the_extra_convolutions_and_convpool_matches_it(arch, kernel_size):
    def build(kind):
        return create_model(arch, in_channels=3, num_classes=10,
                            downsample={"type": kind, "kernel_size": kernel_size, "stride": 2})

    widths = (6, 16) if arch == "lenet" else (96, 192)
    extra = sum(conv_params(c, c, kernel_size) for c in widths)
    assert count_params(build("conv")) - count_params(build("maxpool")) == extra
    assert count_params(build("convpool")) == count_params(build("conv"))


@pytest.mark.parametrize("arch", ["lenet", "allcnn_c"])
def test_strided_has_as_many_parameters_as_maxpool(arch):
    kernel = 5 if arch == "lenet" else 3  # the strided conv keeps the stage's own kernel
    pooled = create_model(arch, in_channels=1, num_classes=10, downsample={"type": "maxpool", "kernel_size": 2})
    strided = create_model(arch, in_channels=1, num_classes=10, downsample={"type": "strided", "kernel_size": kernel})
    assert count_params(strided) == count_params(pooled)


def test_blur_is_a_fixed_binomial_filter_without_parameters():
    blur = BinomialBlur(channels=2, filter_size=4, stride=2)
    assert count_params(blur) == 0 and "kernel" in dict(blur.named_buffers())
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    assert torch.allclose(blur.kernel[0, 0], torch.outer(taps, taps) / 64)
    constant = torch.full((1, 2, 8, 8), 3.0)
    assert torch.allclose(blur(constant), torch.full((1, 2, 4, 4), 3.0))  # normalised, reflect-padded


def test_fracmaxpool_is_random_in_training_and_fixed_in_evaluation():
    model = create_model("lenet", in_channels=1, num_classes=10, downsample=conf_downsample("fracmaxpool"))
    x = torch.rand(4, 1, 28, 28)
    model.eval()
    assert torch.equal(model(x), model(x))
    model.train()
    pool = model.conv2[-1]
    same_image = torch.rand(1, 1, 14, 14).expand(8, 1, 14, 14).contiguous()
    pooled = pool(same_image)
    assert pooled.shape == (8, 1, 7, 7)
    assert not all(torch.equal(pooled[0], p) for p in pooled[1:])  # each copy gets its own regions


def test_fracmaxpool_with_kernel_2_and_integer_stride_is_plain_maxpool():
    x = torch.rand(3, 2, 28, 28)
    frac = create_downsample({"type": "fracmaxpool", "kernel_size": 2, "stride": 2}).layers(2)[0].train()
    assert torch.equal(frac(x), nn.functional.max_pool2d(x, 2, 2))


def test_fracmaxpool_takes_a_fractional_stride():
    model = create_model("lenet", in_channels=1, num_classes=10,
                         downsample={"type": "fracmaxpool", "kernel_size": 2, "stride": 1.414})
    maps = stage_sizes(trace_shapes(model, (1, 28, 28)))
    assert (maps["conv1"], maps["conv2"], maps["conv3"]) == ([6, 19, 19], [16, 13, 13], [120, 9, 9])


# --- output sizes ---------------------------------------------------------------------------------

def expected_size(name: str, n: int, k: int, s: int) -> int:
    """Output side of one stage (conv k5 'same' unless the operator changes it) on an n x n map,
    with each operator's default padding (pools: 0; strided convolutions: k // 2)."""
    if name == "none":
        return n
    if name == "fracmaxpool":
        return n // s
    if name in ("strided", "blurstrided"):
        return (n + 2 * (k // 2) - k) // s + 1
    return (n - k) // s + 1  # the pool's own formula; blurpool and convpool reproduce it


SIZE_CASES = [(k, s) for k in (2, 3, 5) for s in (1, 2, 3)]


@pytest.mark.parametrize("name", sorted(BUILT_IN))
@pytest.mark.parametrize("n", [28, 32])
def test_stage_output_sizes(name, n):
    checked = 0
    for k, s in [(1, 1)] if name == "none" else SIZE_CASES:
        if name == "fracmaxpool" and s == 1:
            continue
        extra = {"filter_size": 4} if name.startswith("blur") else {}
        ds = create_downsample({"type": name, "kernel_size": k, "stride": s, **extra})
        stage = conv_stage(2, 3, 5, 2, ds, norm=False).eval()
        out = stage(torch.rand(1, 2, n, n))
        assert out.shape == (1, 3, expected_size(name, n, k, s), expected_size(name, n, k, s)), (name, k, s)
        checked += 1
    assert checked >= 1


@pytest.mark.parametrize("name", sorted(BUILT_IN))
def test_whole_networks_at_mnist_and_cifar_size(name):
    lenet_ds = conf_downsample(name)
    for channels, n in [(1, 28), (3, 32)]:
        maps = stage_sizes(trace_shapes(create_model("lenet", in_channels=channels, num_classes=10,
                                                     downsample=lenet_ds), (channels, n, n)))
        side = n - 4 if name == "none" else n // 4 - 4  # conv3 is a valid 5x5
        assert maps["conv3"] == [120, side, side]
    ds = lenet_ds if name == "none" else {**lenet_ds, **MODEL_C_WINDOW}
    maps = stage_sizes(trace_shapes(create_model("allcnn_c", in_channels=3, num_classes=10, downsample=ds, width=0.25),
                                    (3, 32, 32)))
    side = {"none": 30, "fracmaxpool": 7}.get(name, 6)  # fracmaxpool: the padding 1 enlarges its input
    assert maps["classifier"] == [10, side, side]


# --- invalid combinations --------------------------------------------------------------------------

def test_kernel_too_large_for_lenet_names_layer_input_and_geometry():
    model = create_model("lenet", in_channels=1, num_classes=10, downsample={"type": "maxpool", "kernel_size": 5})
    with pytest.raises(InvalidModelError, match=r"layer 'conv3\.0' \(Conv2d: kernel_size=\(5, 5\), stride=\(1, 1\), "
                                                r"padding=\(0, 0\)\) gets a 16x4x4 input"):
        trace_shapes(model, (1, 28, 28))


def test_blur_on_a_map_too_small_to_reflect_replicates_and_the_layer_that_cannot_run_is_named():
    model = create_model("lenet", in_channels=1, num_classes=10,
                         downsample={"type": "blurpool", "kernel_size": 2, "stride": 3, "filter_size": 7})
    blur = model.conv2[4]
    assert isinstance(blur, BinomialBlur) and blur(torch.ones(1, 16, 2, 2)).shape == (1, 16, 1, 1)  # 2x2: replicated
    with pytest.raises(InvalidModelError, match=r"layer 'conv3\.0' \(Conv2d: kernel_size=\(5, 5\).* gets a 16x1x1 input"):
        trace_shapes(model, (1, 8, 8))


@pytest.mark.parametrize("downsample,pattern", [
    ({"type": "none", "stride": 2}, r"model\.downsample\.stride = 2 .* 'none'.* must be 1"),
    ({"type": "fracmaxpool", "kernel_size": 2, "stride": 1}, r"model\.downsample\.stride = 1 .* a number > 1"),
    ({"type": "lppool", "p": 0}, r"model\.downsample\.p = 0 .* a number > 0"),
    ({"type": "lppool", "p": "two"}, r"model\.downsample\.p = 'two'"),
    ({"type": "blurpool", "filter_size": 0}, r"model\.downsample\.filter_size = 0 .* integer >= 1"),
    ({"type": "maxpool", "filter_size": 4}, r"unknown key\(s\) \['filter_size'\] for type 'maxpool'"),
    ({"type": "convpool", "kernel_size": 2, "padding": 2}, r"model\.downsample\.padding = 2 is too large"),
])
def test_bad_operator_keys_name_the_key(downsample, pattern):
    with pytest.raises(PoolStudyError, match=pattern):
        create_model("lenet", in_channels=1, num_classes=10, downsample=downsample)


@pytest.mark.parametrize("key,value", [("width", 0), ("width", "wide"), ("input_dropout", 1.0), ("dropout", -0.1)])
def test_bad_allcnn_c_keys_name_the_key(key, value):
    with pytest.raises(PoolStudyError, match=rf"model\.{key} = .* is not valid"):
        create_model("allcnn_c", in_channels=3, num_classes=10, downsample={"type": "maxpool"}, **{key: value})


# --- architecture choice ---------------------------------------------------------------------------

def test_allcnn_c_is_springenbergs_model_c():
    model = create_model("allcnn_c", in_channels=3, num_classes=10, downsample={"type": "maxpool", **MODEL_C_WINDOW})
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.out_channels, c.kernel_size[0], c.stride[0], c.padding[0]) for c in convs] == [
        (96, 3, 1, 1), (96, 3, 1, 1), (192, 3, 1, 1), (192, 3, 1, 1), (192, 3, 1, 0), (192, 1, 1, 0), (10, 1, 1, 0)]
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert [(p.kernel_size, p.stride, p.padding) for p in pools] == [(3, 2, 1)] * 2
    assert [m.p for m in model.modules() if isinstance(m, nn.Dropout)] == [0.2, 0.5, 0.5]
    assert isinstance(model.classifier[-1], nn.ReLU)


def test_allcnn_c_family_members():
    def convs(kind):
        model = create_model("allcnn_c", in_channels=3, num_classes=10, downsample={"type": kind, **MODEL_C_WINDOW})
        return [(c.kernel_size[0], c.stride[0]) for c in model.modules() if isinstance(c, nn.Conv2d)]

    model_c = convs("maxpool")
    assert convs("strided") == [model_c[0], (3, 2), model_c[2], (3, 2), *model_c[4:]]
    assert convs("conv") == [*model_c[:2], (3, 2), *model_c[2:4], (3, 2), *model_c[4:]]
    assert convs("convpool") == [*model_c[:2], (3, 1), *model_c[2:4], (3, 1), *model_c[4:]]


def test_arch_and_operator_compose_orthogonally():
    cfg = compose(["arch=allcnn_c", "model=strided", "dataset=cifar10", "model.width=0.25"])
    assert (cfg.model.arch, cfg.model.downsample.type, cfg.model.width) == ("allcnn_c", "strided", 0.25)
    net = instantiate(cfg.model, _convert_="all")
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    cfg = compose(["model=conv"])
    assert cfg.model.arch == "lenet" and cfg.model.downsample.type == "conv"


# --- the params/MACs table ----------------------------------------------------------------------------

def test_table_lists_every_operator_and_architecture(monkeypatch):
    from tools import operator_table as table

    assert [v[0] for v in table.VARIANTS] == ["lenet", "allcnn_c", "allcnn_c", "resnet", "vgg"]
    monkeypatch.setattr(table, "VARIANTS", (("lenet", {}),))  # All-CNN-C at full width is slow to trace
    rows = [line.strip("| ").split(" | ") for line in table.markdown_table(CONF_DIR).splitlines()[2:]]
    assert [(r[0], r[1]) for r in rows] == [("lenet", op) for op in BUILT_IN]
    cells = {r[1]: r for r in rows}
    assert cells["maxpool"][3] == f"{lenet_params(1):,}" and cells["maxpool"][5] == f"{lenet_params(3):,}"
    assert cells["strided"][4] == "580,200"  # the seed's strided LeNet on MNIST (derived in test_models)
    assert cells["conv"][2] == "kernel_size=2, stride=2, padding=0"
    conv_c = table.downsample_for("allcnn_c", conf_downsample("conv"))
    params, _ = table.measure("allcnn_c", conv_c, (3, 32, 32), width=0.25)
    assert params == model_c_params(0.25) + conv_params(24, 24, 3) + conv_params(48, 48, 3)
    assert table.measure("lenet", {"type": "maxpool", "kernel_size": 5, "stride": 2}, (1, 28, 28)) is None

