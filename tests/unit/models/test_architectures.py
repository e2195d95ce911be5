"""arch=resnet, arch=vgg, arch=torchvision and the downsampling-surgery rule (poolstudy.models.surgery).

The torchvision matrix builds on torch's meta device (shapes without data: no weights are drawn and
no arithmetic runs), so every builder x operator x input size stays fast."""

from __future__ import annotations

import copy
import math
import os
import re

import pytest
import torch
from omegaconf import OmegaConf
from torch import fx, nn

from helpers import CONF_DIR, ROOT
from helpers.studies import compose_job
from poolstudy.errors import InvalidModelError, PoolStudyError
from poolstudy.models import DOWNSAMPLERS, create_model
from poolstudy.models.layers import BinomialBlur
from poolstudy.models.resnet import CifarResNet
from poolstudy.models.profile import count_macs, count_params, trace_shapes
from poolstudy.models.surgery import Subsample, point_kind, point_records, rebuild
from poolstudy.models.torchvision_models import TESTED, published_model, torchvision_model, use_small_input
from poolstudy.models.vgg import CifarVGG

OPERATORS = sorted(DOWNSAMPLERS)
EXTRA_CONV = {"conv", "convpool"}


def conf_downsample(name: str) -> dict:
    return OmegaConf.to_container(OmegaConf.load(CONF_DIR / "model" / f"{name}.yaml").downsample)


def resnet(name="published", **kwargs):
    return create_model("resnet", in_channels=3, num_classes=10, downsample=conf_downsample(name), **kwargs)


def vgg(name="published", **kwargs):
    return create_model("vgg", in_channels=3, num_classes=10, downsample=conf_downsample(name), **kwargs)


def extra_conv(channels: int, k: int = 2) -> int:
    return k * k * channels * channels + channels


# --- ResNet (He et al. 2016, section 4.2) -------------------------------------------------------------

@pytest.mark.parametrize("depth, params, paper", [(20, 269_722, 0.27e6), (32, 464_154, 0.46e6), (44, 658_586, 0.66e6),
                                                  (56, 853_018, 0.85e6), (110, 1_727_962, 1.7e6)])
def test_resnet_parameters_match_the_papers_table_6(depth, params, paper):
    net = CifarResNet(3, 10, depth)
    assert count_params(net) == params
    assert float(f"{params:.2g}") == paper  # the paper's rounding


def test_resnet20_macs_and_option_b():
    assert count_macs(resnet(), (3, 32, 32)) == 40_551_040  # 40.6 M per 32x32 image (torch's flop counter / 2)
    # option B adds the two 1x1 projections and their BatchNorm: 16*32 + 2*32 + 32*64 + 2*64
    assert count_params(resnet(shortcut="B")) == 269_722 + 16 * 32 + 64 + 32 * 64 + 128


def test_resnet_downsampling_points_are_the_first_blocks_of_stages_2_and_3():
    for shortcut, projection in (("A", "layer2.0.shortcut"), ("B", "layer2.0.shortcut.0")):
        net = resnet(shortcut=shortcut)
        records = point_records(net, trace_shapes(net, (3, 32, 32)))
        assert [(r["name"], r["kind"], r["output"]) for r in records] == [
            ("layer2.0.conv1", "conv", [32, 16, 16]), (projection, "projection", [32, 16, 16]),
            ("layer3.0.conv1", "conv", [64, 8, 8]), (projection.replace("layer2", "layer3"), "projection", [64, 8, 8])]
        assert all(r["became"] == "kept (as published)" for r in records)


def test_published_and_strided_resnet_are_the_same_network():
    """strided keeps every strided convolution: the paper's network itself."""
    torch.manual_seed(0)
    published = resnet("published").eval()
    torch.manual_seed(0)
    strided = resnet("strided").eval()
    assert type(published) is type(strided) is CifarResNet
    x = torch.randn(4, 3, 32, 32)
    assert torch.equal(published(x), strided(x))


def test_surgery_rebuilds_only_the_blocks_that_hold_a_point():
    """Only the module whose forward calls a rebuilt point is re-traced (a GraphModule of the same name,
    parameters and buffers); every other module keeps its class, so hooks on blocks still fire."""
    torch.manual_seed(0)
    published = resnet("published")
    torch.manual_seed(0)
    pooled = resnet("avgpool")
    assert type(pooled) is CifarResNet and type(pooled.layer2) is nn.Sequential
    assert isinstance(pooled.layer2[0], fx.GraphModule) and type(pooled.layer2[1]).__name__ == "BasicBlock"
    assert list(published.state_dict()) == list(pooled.state_dict())  # the pools add no parameters or buffers
    outputs = {}
    for name, block in pooled.named_children():
        block.register_forward_hook(lambda m, a, out, name=name: outputs.update({name: out.shape}))
    pooled(torch.zeros(2, 3, 32, 32))
    assert list(outputs) == ["conv1", "bn1", "relu", "layer1", "layer2", "layer3", "fc"]
    assert outputs["layer2"] == (2, 32, 16, 16)


def test_pooling_operator_in_a_resnet_block_follows_zhangs_placement():
    net = resnet("blurpool")
    order = [r.name for r in trace_shapes(net, (3, 32, 32)) if r.name.startswith("layer2.0.")]
    assert order == ["layer2.0.conv1", "layer2.0.bn1", "layer2.0.relu1", "layer2.0.conv1_down.0",
                     "layer2.0.conv1_down.1", "layer2.0.conv2", "layer2.0.bn2", "layer2.0.shortcut_down.0",
                     "layer2.0.shortcut_down.1", "layer2.0.shortcut", "layer2.0.relu2"]
    assert net.get_submodule("layer2.0.conv1").stride == (1, 1) and net.get_submodule("layer2.0.shortcut").stride == 1
    # values: conv(s1) -> BN -> ReLU -> MaxPool(2, 1) -> blur(s2) -> conv2 -> BN, plus the blurred input
    # with zero channels appended (option A), then ReLU: recomputed from the block's own layers
    seen = {}
    block = net.get_submodule("layer2.0")
    hooks = [block.conv1.register_forward_pre_hook(lambda m, args: seen.update(x=args[0])),
             block.relu2.register_forward_hook(lambda m, args, out: seen.update(out=out))]
    net.eval()
    with torch.no_grad():
        net(torch.randn(2, 3, 32, 32))
        x = seen["x"]
        main = block.bn2(block.conv2(block.conv1_down(block.relu1(block.bn1(block.conv1(x))))))
        short = block.shortcut(block.shortcut_down(x))
    for hook in hooks:
        hook.remove()
    assert short.shape == (2, 32, 16, 16) and not short[:, :8].any() and not short[:, 24:].any()
    assert torch.equal(seen["out"], torch.relu(main + short))


@pytest.mark.parametrize("name", OPERATORS)
def test_resnet20_with_every_operator(name):
    net = resnet(name)
    records = point_records(net, trace_shapes(net, (3, 32, 32)))
    extra = extra_conv(32) + extra_conv(16) + extra_conv(64) + extra_conv(32) if name in EXTRA_CONV else 0
    assert count_params(net) == 269_722 + extra  # conv/convpool: one extra C->C 2x2 conv per point, C its channels
    side = {"none": [32, 32]}.get(name, None)
    assert [r["output"][1:] for r in records] == [side or [16, 16]] * 2 + [side or [8, 8]] * 2
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)


# --- VGG ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("depth, params, macs", [(11, 9_231_114, 152_769_536), (13, 9_416_010, 228_267_008),
                                                 (16, 14_728_266, 313_201_664), (19, 20_040_522, 398_136_320)])
def test_vgg_parameters_and_macs(depth, params, macs):
    net = CifarVGG(3, 10, depth)
    assert count_params(net) == params and count_macs(net, (3, 32, 32)) == macs
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == 5


def test_vgg16_against_li_et_al_2017():
    # "Pruning Filters for Efficient ConvNets", Table 1: VGG-16 on CIFAR-10, 1.5e7 parameters, 3.13e8 FLOPs
    # (multiply-accumulates); their classifier has one more 512x512 layer (+262,656 parameters).
    net = CifarVGG(3, 10, 16)
    assert float(f"{count_params(net) + 512 * 512 + 512:.2g}") == 1.5e7
    assert round(count_macs(net, (3, 32, 32)) / 1e6) == 313


def test_vgg_strided_moves_each_pool_stride_into_the_convolution_before_it():
    net = vgg("strided")
    convs = [m for m in net.modules() if isinstance(m, nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 1, 2, 1, 2, 1, 2]  # VGG-11: the last conv of each stack
    assert not any(isinstance(m, nn.MaxPool2d) for m in net.modules())
    assert count_params(net) == 9_231_114
    records = point_records(net, trace_shapes(net, (3, 32, 32)))
    assert [r["output"] for r in records] == [[64, 16, 16], [128, 8, 8], [256, 4, 4], [512, 2, 2], [512, 1, 1]]
    assert records[0]["became"].startswith("removed; its stride 2 moved into 'features.0'")


@pytest.mark.parametrize("name", OPERATORS)
def test_vgg11_with_every_operator_at_32_px(name):
    net = vgg(name, width=0.25)
    widths = (16, 32, 64, 128, 128)
    extra = sum(extra_conv(c) for c in widths) if name in EXTRA_CONV else 0
    assert count_params(net) == count_params(vgg("published", width=0.25)) + extra
    if name == "fracmaxpool":  # a 3x3 fractional window cannot pool the last 2x2 map: reported, named
        with pytest.raises(InvalidModelError, match=r"layer 'features\.28'.*FractionalMaxPool.*gets a 128x2x2 input"):
            trace_shapes(net, (3, 32, 32))
        return
    records = point_records(net, trace_shapes(net, (3, 32, 32)))
    sides = [32] * 5 if name == "none" else [16, 8, 4, 2, 1]
    assert [r["output"][1] for r in records] == sides


def test_blur_pads_a_map_too_small_to_reflect_by_replicating_its_edge():
    blur = BinomialBlur(channels=1, filter_size=4, stride=2)
    x = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    expected = torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1, 2, 1, 2), mode="replicate"), blur.kernel,
                                          stride=2)
    assert torch.equal(blur(x), expected) and blur(torch.full((1, 1, 1, 1), 5.0)).item() == pytest.approx(5.0)
    y = torch.rand(1, 1, 6, 6)  # large enough: reflect, as before
    assert torch.equal(blur(y), torch.nn.functional.conv2d(torch.nn.functional.pad(y, (1, 2, 1, 2), mode="reflect"),
                                                           blur.kernel, stride=2))


# --- torchvision: the rule on every tested builder --------------------------------------------------------

_BASE: dict = {}


def _published(name: str, size: int):
    """(model, trace, stem records) of torchvision's ``name`` with the small-input stem, on the meta device
    (regnet's builder computes its widths with tensors, so it is built on the CPU and then moved)."""
    if (name, size) not in _BASE:
        if name.startswith("regnet"):
            built = published_model(3, 10, name, size, "auto")
            built[0].to("meta")
        else:
            with torch.device("meta"):
                built = published_model(3, 10, name, size, "auto")
        _BASE[(name, size)] = built
    return copy.deepcopy(_BASE[(name, size)])


def _points_in_out(model: nn.Module, size: int) -> dict[str, tuple[tuple, tuple]]:
    """(input shape, output shape) of every downsampling point of the published model (forward hooks)."""
    shapes, hooks = {}, []

    def record(layer: str, args: tuple, out: torch.Tensor) -> None:
        shapes.setdefault(layer, (tuple(args[0].shape[1:]), tuple(out.shape[1:])))

    for layer, module in model.named_modules():
        if point_kind(module):
            hooks.append(module.register_forward_hook(lambda m, args, out, layer=layer: record(layer, args, out)))
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size, device="meta"))
    for hook in hooks:
        hook.remove()
    return shapes


# combinations that cannot work, each named by the point or layer it stops at
CANNOT = {
    ("squeezenet1_1", "strided"): (PoolStudyError, r"model=strided cannot remove the pool 'features\.5': its input "
                                                   r"comes from 'cat\(\)'"),
    ("googlenet", "strided"): (PoolStudyError, r"cannot remove the pool 'maxpool3': its input comes from 'cat\(\)'"),
    ("vgg11_bn", "fracmaxpool", 32): (InvalidModelError, r"layer 'features\.28'.* gets a 512x2x2 input"),
}


@pytest.fixture()
def fast_meta_layers(monkeypatch):
    """On the meta device BatchNorm and the activations run torch's decompositions (milliseconds a call);
    their output has the input's shape, which is all the meta-device checks read."""
    for cls in (nn.BatchNorm2d, nn.ReLU, nn.ReLU6, nn.Hardswish, nn.Hardsigmoid, nn.SiLU, nn.GELU, nn.Dropout):
        monkeypatch.setattr(cls, "forward", lambda self, x, forward=cls.forward: x if x.is_meta else forward(self, x))


@pytest.mark.parametrize("size", [32, pytest.param(64, marks=pytest.mark.slow)])  # 64 px: twice the maps to trace
@pytest.mark.parametrize("builder", TESTED)
def test_torchvision_builder_with_every_operator(builder, size, fast_meta_layers):
    base = _published(builder, size)
    published = base[0]
    base_params = count_params(published)
    points = _points_in_out(published, size)
    assert points, "every tested builder downsamples"
    extra = 0
    for layer, (shape, _) in points.items():
        module = published.get_submodule(layer)
        kind = point_kind(module)
        channels = shape[0] if kind == "pool" else module.in_channels if kind == "projection" else module.out_channels
        extra += extra_conv(channels)
    for name in OPERATORS:
        model, traced, stem = _published(builder, size)
        expected_error = CANNOT.get((builder, name)) or CANNOT.get((builder, name, size))
        if expected_error and expected_error[0] is PoolStudyError:
            with pytest.raises(PoolStudyError, match=expected_error[1]):
                rebuild(model, conf_downsample(name), (3, size, size), builder, stem, traced)
            continue
        net = rebuild(model, conf_downsample(name), (3, size, size), builder, stem, traced)
        if expected_error:
            with pytest.raises(expected_error[0], match=expected_error[1]), torch.device("meta"):
                trace_shapes(net, (3, size, size))
            continue
        assert count_params(net) == base_params + (extra if name in EXTRA_CONV else 0), (builder, name)
        output = {}
        hook = net.register_forward_hook(lambda m, args, out: output.update(shape=tuple(out.shape)))
        with torch.device("meta"):
            rows = trace_shapes(net, (3, size, size))  # one forward pass in evaluation mode
        hook.remove()
        assert output["shape"] == (1, 10), (builder, name)
        records = [r for r in point_records(net, rows) if r["kind"] != "stem"]
        assert [r["name"] for r in records] == list(points), (builder, name)
        for record in records:
            published_side = points[record["name"]][1][1]
            halvings = round(math.log2(size / published_side))  # the published side, up to its pools' rounding
            expected = {"published": published_side, "none": size}.get(name, size >> halvings)
            assert record["output"][1] == expected, (builder, name, record)


def test_resnet18_published_is_torchvisions_network_exactly():
    import torchvision

    torch.manual_seed(0)
    ours = torchvision_model(3, 10, conf_downsample("published"), name="resnet18", image_size=224, small_input=False)
    torch.manual_seed(0)
    theirs = torchvision.models.resnet18(weights=None, num_classes=10)
    assert type(ours) is type(theirs) and count_params(ours) == 11_181_642
    assert all(torch.equal(a, b) for a, b in zip(ours.state_dict().values(), theirs.state_dict().values()))
    assert [p.kind for p in ours.downsampling_points] == ["conv", "pool"] + ["conv", "projection"] * 3


@pytest.mark.parametrize("name", ["maxpool", "avgpool", "blurpool", "strided", "none", "lppool"])
def test_resnet18_keeps_torchvisions_parameter_count_without_small_input(name):
    with torch.device("meta"):
        net = torchvision_model(3, 10, conf_downsample(name), name="resnet18", image_size=224, small_input=False)
    assert count_params(net) == 11_181_642


def test_strided_resnet18_moves_the_stem_pool_into_the_stem_convolution():
    with torch.device("meta"):
        net = torchvision_model(3, 10, conf_downsample("strided"), name="resnet18", image_size=224, small_input=False)
    assert net.get_submodule("conv1").stride == (4, 4) and isinstance(net.get_submodule("maxpool"), nn.Identity)
    became = {p.name: p.became for p in net.downsampling_points}
    assert became["conv1"] == "Conv2d 7x7 s4 p3, 3->64: took the stride of 'maxpool'"
    assert became["maxpool"] == "removed; its stride 2 moved into 'conv1' (now Conv2d 7x7 s4 p3, 3->64)"
    with torch.device("meta"):
        net = torchvision_model(3, 10, conf_downsample("maxpool"), name="resnet18", image_size=224, small_input=False)
    assert net.get_submodule("maxpool").kernel_size == 2  # the operator's window replaces the published 3x3


def test_small_input_stem():
    assert use_small_input("auto", 32) and use_small_input("auto", 64) and not use_small_input("auto", 96)
    assert use_small_input(True, 224) and not use_small_input(False, 32)
    with torch.device("meta"):
        net = torchvision_model(3, 10, conf_downsample("published"), name="resnet18", image_size=32)
    conv = net.get_submodule("conv1")
    assert (conv.kernel_size, conv.stride, conv.padding) == ((3, 3), (1, 1), (1, 1))
    assert isinstance(net.get_submodule("maxpool"), nn.Identity)
    assert count_params(net) == 11_181_642 - 64 * 3 * (49 - 9)
    stem = [p for p in net.downsampling_points if p.kind == "stem"]
    assert [p.name for p in stem] == ["conv1", "maxpool"] and "small_input" in stem[1].became
    with torch.device("meta"):  # VGG's first convolution has stride 1: its stem stays
        net = torchvision_model(3, 10, conf_downsample("published"), name="vgg11_bn", image_size=32)
    assert not [p for p in net.downsampling_points if p.kind == "stem"]
    with torch.device("meta"):  # one input channel: the first convolution is rebuilt for it, same geometry
        net = torchvision_model(1, 10, conf_downsample("published"), name="resnet18", image_size=224)
    assert net.get_submodule("conv1").weight.shape == (64, 1, 7, 7)


@pytest.mark.parametrize("kwargs, pattern", [
    ({"name": "bogus"}, r"model\.name = 'bogus' is not a torchvision classification builder; valid names are: .*resnet18"),
    ({"name": "vit_b_16"}, r"model\.name = 'vit_b_16' is a vision transformer"),
    ({"small_input": "yes"}, r"model\.small_input = 'yes' is not valid: it must be true, false or auto"),
    ({"image_size": None}, r"model\.image_size = None is not valid: model\.small_input=auto needs the image size"),
])
def test_bad_torchvision_keys_name_the_key(kwargs, pattern):
    with pytest.raises(PoolStudyError, match=pattern):
        torchvision_model(3, 10, conf_downsample("maxpool"), **{"image_size": 32, **kwargs})


@pytest.mark.parametrize("arch, kwargs, downsample, pattern", [
    ("resnet", {"depth": 21}, "maxpool", r"model\.depth = 21 is not valid for arch=resnet: it must be 6n \+ 2"),
    ("resnet", {"shortcut": "C"}, "maxpool", r"model\.shortcut = 'C' is not valid for arch=resnet"),
    ("resnet", {"dropout": 1.0}, "maxpool", r"model\.dropout = 1\.0 is not valid"),
    ("vgg", {"depth": 12}, "maxpool", r"model\.depth = 12 is not valid for arch=vgg: it must be one of 11, 13, 16, 19"),
    ("vgg", {"width": 0}, "maxpool", r"model\.width = 0 is not valid for arch=vgg"),
    ("resnet", {}, {"type": "maxpool", "stride": 3}, r"model\.downsample\.stride = 3 is not valid here: .* must stay 2"),
    ("vgg", {}, {"type": "maxpool", "kernel_size": 1}, r"kernel_size = 1 is smaller than the stride 2 of the "
                                                        r"downsampling point 'features\.3'"),
    ("lenet", {}, "published", r"model=published keeps the downsampling of a network built elsewhere"),
    ("resnet", {}, {"type": "published", "kernel_size": 2}, r"model\.downsample\.kernel_size = 2 is not valid for "
                                                            r"type 'published'"),
])
def test_bad_architecture_keys_name_the_key(arch, kwargs, downsample, pattern):
    ds = conf_downsample(downsample) if isinstance(downsample, str) else downsample
    channels = 1 if arch == "lenet" else 3
    with pytest.raises(PoolStudyError, match=pattern):
        create_model(arch, in_channels=channels, num_classes=10, downsample=ds, **kwargs)


class _Twice(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, padding=1)
        self.pool = nn.MaxPool2d(2)

    def forward(self, x):
        return self.pool(self.pool(self.conv(x))).mean((2, 3))


class _TrainingBranch(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, stride=2)

    def forward(self, x):
        x = self.conv(x)
        return (x * 2 if self.training else x).mean((2, 3))


class _Untraceable(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 3, 3, stride=2)

    def forward(self, x):
        x = self.conv(x)
        return x if x.sum() > 0 else -x


@pytest.mark.parametrize("net, pattern", [
    (_Twice(), r"downsampling point 'pool' \(MaxPool2d\(k2, s2, p0\)\) is called 2 times"),
    (_TrainingBranch(), r"forward takes different paths in training and evaluation mode"),
    (_Untraceable(), r"cannot be traced by torch\.fx for downsampling surgery"),
])
def test_networks_surgery_cannot_rebuild_are_named(net, pattern):
    with pytest.raises(PoolStudyError, match=pattern):
        rebuild(net, conf_downsample("avgpool"), (3, 8, 8))


def test_lenet_points_are_its_strided_layers():
    lenet = create_model("lenet", in_channels=1, num_classes=10, downsample=conf_downsample("blurpool"))
    records = point_records(lenet, trace_shapes(lenet, (1, 28, 28)))
    assert [(r["name"], r["was"], r["output"]) for r in records] == [("conv1.3", None, [6, 14, 14]),
                                                                     ("conv2.4", None, [16, 7, 7])]
    lenet = create_model("lenet", in_channels=1, num_classes=10, downsample=conf_downsample("strided"))
    records = point_records(lenet, trace_shapes(lenet, (1, 28, 28)))
    assert [(r["name"], r["kind"], r["became"]) for r in records] == [
        ("conv1.0", "conv", "Conv2d 5x5 s2 p2, 1->6"), ("conv2.0", "conv", "Conv2d 5x5 s2 p2, 6->16")]


def test_subsample_is_option_a():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    y = Subsample(2, 6, 2)(x)
    assert y.shape == (1, 6, 2, 2) and torch.equal(y[:, 2:4], x[:, :, ::2, ::2])
    assert not y[:, :2].any() and not y[:, 4:].any()


# --- configs, training, metrics.json --------------------------------------------------------------------

def test_arch_configs_compose_with_every_operator():
    for arch, key, value in (("resnet", "depth", 20), ("vgg", "depth", 11), ("torchvision", "name", "resnet18")):
        cfg = compose_job([f"arch={arch}", "model=blurpool", "dataset=cifar10"])
        assert cfg.model.arch == arch and cfg.model[key] == value and cfg.model.downsample.type == "blurpool"
    cfg = compose_job(["arch=torchvision", "dataset=cifar10"])
    assert cfg.model.image_size == 32 and cfg.model.small_input == "auto"


def test_dropout_goes_before_the_last_linear_layer_and_the_default_hpo_space_composes():
    with torch.device("meta"):
        net = torchvision_model(3, 10, conf_downsample("published"), name="resnet18", image_size=32, dropout=0.3)
    assert isinstance(net.fc, nn.Sequential) and net.fc[0].p == 0.3 and isinstance(net.fc[1], nn.Linear)
    assert count_params(net) == 11_173_962  # nothing added but the Dropout
    with pytest.raises(PoolStudyError, match=r"model\.dropout = 0\.3 is not valid for model\.name=squeezenet1_1: "
                                             r"it has no linear classifier"), torch.device("meta"):
        torchvision_model(3, 10, conf_downsample("published"), name="squeezenet1_1", image_size=32, dropout=0.3)
    assert [m.p for m in resnet(dropout=0.2).modules() if isinstance(m, nn.Dropout)] == [0.2]
    for arch in ("resnet", "vgg", "torchvision"):  # the HPO space's model.dropout exists in every architecture
        cfg = compose_job(["hparams_search=optuna", f"arch={arch}", "dataset=cifar10", "model.dropout=0.25"])
        assert "model.dropout" in cfg.hydra.sweeper.params and cfg.model.dropout == 0.25


# --- docs/architectures.md ------------------------------------------------------------------------------

DOCS = ROOT / "docs" / "architectures.md"
TABLE_BLOCK = re.compile(r"^<!-- tools\.operator_table --arch resnet vgg -->\n(.*?)^<!-- /tools\.operator_table -->$",
                         re.MULTILINE | re.DOTALL)


@pytest.mark.slow
def test_the_docs_parameter_table_is_the_tools_output():
    """docs/architectures.md's parameters/MACs block is ``python -m tools.operator_table --arch resnet vgg``
    (POOLSTUDY_UPDATE_DOCS=1 rewrites it), so no figure in it is typed by hand."""
    from tools import operator_table

    text = DOCS.read_text()
    block = TABLE_BLOCK.search(text)
    assert block, f"{DOCS} has no tools.operator_table block"
    table = operator_table.markdown_table(CONF_DIR, ["resnet", "vgg"]) + "\n"
    if os.environ.get("POOLSTUDY_UPDATE_DOCS") == "1":
        DOCS.write_text(text[:block.start(1)] + table + text[block.end(1):])
    else:
        assert block[1] == table, "regenerate: POOLSTUDY_UPDATE_DOCS=1 python -m pytest " \
                                  "tests/unit/models/test_architectures.py -k docs_parameter_table"
    rows = {tuple(r.strip("| ").split(" | ")[:2]): r.strip("| ").split(" | ") for r in table.splitlines()[2:]}
    assert rows[("resnet depth=20", "published")][5] == "269,722"  # He et al.'s ResNet-20 (issue 16)
    assert rows[("resnet depth=20", "strided")][5:] == rows[("resnet depth=20", "published")][5:]
    assert rows[("vgg depth=11", "maxpool")][5:] == rows[("vgg depth=11", "published")][5:]
