"""``arch=torchvision``: any torchvision classification CNN, randomly initialised (``weights=None``;
nothing is downloaded), with its downsampling points rebuilt by ``model.downsample``
(:mod:`poolstudy.models.surgery`).

``model.small_input`` (``auto``: images of at most 64 px) replaces an ImageNet stem by a CIFAR-style
one, as is standard for 32x32 images: the first convolution, when it has a stride > 1, becomes a 3x3
stride-1 convolution with the same output channels (He et al.'s initialisation: normal, fan-out),
and a pool fed by that convolution (through its normalisation and activation) is removed. A network
whose first convolution has stride 1 (VGG) keeps its stem. With ``in_channels`` other than 3 the first
convolution is rebuilt for that many input channels (same geometry). Both changes are listed with the
downsampling points (kind ``stem``). ``dropout`` > 0 puts a Dropout before the network's last linear
layer (as ``arch=resnet``/``vgg`` do; torchvision's own Dropout layers stay as built).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torchvision.models
from torch import fx, nn

from poolstudy.errors import PoolStudyError
from poolstudy.models.downsample import Downsample
from poolstudy.models.fast_cpu import FastCPUDropout
from poolstudy.models.resnet import check_dropout
from poolstudy.models.surgery import (POOL, STEM, DownsamplingPoint, describe_layer, point_kind, producer_conv,
                                      rebuild, trace)

#: builders tested with every operator at 32x32 and 64x64 (tests/unit/models/test_architectures.py); any other
#: CNN builder of torchvision.models works by the same rule or stops with a message naming the point
#: (squeezenet1_1 and googlenet: model=strided, their pools after a concatenation)
TESTED = ("resnet18", "resnet50", "vgg11_bn", "mobilenet_v2", "mobilenet_v3_small", "densenet121",
          "efficientnet_b0", "regnet_y_400mf", "convnext_tiny", "shufflenet_v2_x1_0", "mnasnet0_5",
          "squeezenet1_1", "googlenet", "alexnet")
SMALL_INPUT_MAX = 64  # px: model.small_input=auto replaces the stem for images up to this size
_TRANSFORMERS = ("vit_", "swin_", "maxvit_")


def builders() -> list[str]:
    """Every classification builder of torchvision.models (transformers excluded)."""
    return [n for n in torchvision.models.list_models(module=torchvision.models) if not n.startswith(_TRANSFORMERS)]


def _builder(name: str):
    if isinstance(name, str) and name.startswith(_TRANSFORMERS):
        raise PoolStudyError(f"model.name = {name!r} is a vision transformer: beyond its patch embedding it has "
                             f"no pooling or strided downsampling to compare. Choose a CNN: {', '.join(builders())}.")
    if name not in builders():
        raise PoolStudyError(f"model.name = {name!r} is not a torchvision classification builder; valid names "
                             f"are: {', '.join(builders())}.")
    return torchvision.models.get_model_builder(name)


def use_small_input(small_input: bool | str, image_size: int | None) -> bool:
    if isinstance(small_input, bool):
        return small_input
    if small_input != "auto":
        raise PoolStudyError(f"model.small_input = {small_input!r} is not valid: it must be true, false or auto "
                             f"(true for images of at most {SMALL_INPUT_MAX} px).")
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise PoolStudyError(f"model.image_size = {image_size!r} is not valid: model.small_input=auto needs the "
                             f"image size in pixels (train.py sets it from the dataset), or set model.small_input.")
    return image_size <= SMALL_INPUT_MAX


def _stem_conv(in_channels: int, like: nn.Conv2d, small: bool) -> nn.Conv2d:
    if small:
        conv = nn.Conv2d(in_channels, like.out_channels, 3, 1, 1, bias=like.bias is not None)
    else:
        conv = nn.Conv2d(in_channels, like.out_channels, like.kernel_size, like.stride, like.padding,
                         like.dilation, like.groups, like.bias is not None, like.padding_mode)
    conv.to(like.weight.device)
    nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
    if conv.bias is not None:
        nn.init.zeros_(conv.bias)
    return conv


def adapt_stem(model: nn.Module, gm: fx.GraphModule, in_channels: int, small: bool,
               label: str) -> list[DownsamplingPoint]:
    """Rebuild the stem (module docstring) in ``model`` and in ``gm``, its trace; returns what changed."""
    nodes = list(gm.graph.nodes)
    first = next((n for n in nodes if n.op == "call_module" and isinstance(gm.get_submodule(n.target), nn.Conv2d)),
                 None)
    if first is None or not (isinstance(first.args[0], fx.Node) and first.args[0].op == "placeholder"):
        if small or in_channels != 3:
            raise PoolStudyError(f"{label}: its first convolution does not take the image directly, so its stem "
                                 f"cannot be rebuilt (model.small_input / in_channels); set model.small_input=false "
                                 f"and use 3-channel images.")
        return []
    conv = model.get_submodule(first.target)
    strided = max(conv.stride) > 1
    small = small and strided
    records = []
    if small or in_channels != conv.in_channels:
        new = _stem_conv(in_channels, conv, small)
        reason = "CIFAR-style stem, model.small_input" if small else f"{in_channels} input channels"
        records.append(DownsamplingPoint(first.target, STEM, describe_layer(conv), f"{describe_layer(new)} ({reason})",
                                         first.target))
        model.set_submodule(first.target, new)
        gm.add_submodule(first.target, new)
    if small:
        for node in nodes:
            module = gm.get_submodule(node.target) if node.op == "call_module" else None
            if module is not None and point_kind(module) == POOL:
                try:
                    fed_by_stem = producer_conv(gm, node) is first
                except PoolStudyError:
                    fed_by_stem = False
                if fed_by_stem:
                    records.append(DownsamplingPoint(node.target, STEM, describe_layer(module),
                                                    "removed (CIFAR-style stem, model.small_input)", node.target))
                    model.set_submodule(node.target, nn.Identity())
                    gm.add_submodule(node.target, model.get_submodule(node.target))
                break  # only the first pool can belong to the stem
    return records


def published_model(in_channels: int, num_classes: int, name: str, image_size: int | None,
                    small_input: bool | str) -> tuple[nn.Module, fx.GraphModule, list[DownsamplingPoint]]:
    """torchvision's ``name`` for ``num_classes`` classes, random weights, stem adapted; with its
    trace and the stem's changes."""
    builder = _builder(name)
    small = use_small_input(small_input, image_size)
    kwargs: dict[str, Any] = {"weights": None, "num_classes": num_classes}
    if name in ("googlenet", "inception_v3"):
        kwargs.update(aux_logits=False, init_weights=True)  # the main classifier only
    model = builder(**kwargs)
    label = f"model.name={name}"
    traced = trace(model, label)
    return model, traced, adapt_stem(model, traced, in_channels, small, label)


def add_classifier_dropout(model: nn.Module, dropout: float, label: str) -> None:
    """A Dropout(``dropout``) before the last linear layer (in place; nothing for 0)."""
    if check_dropout(dropout) == 0:
        return
    linears = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise PoolStudyError(f"model.dropout = {dropout!r} is not valid for {label}: it has no linear classifier "
                             f"to put the Dropout before; it must be 0.")
    model.set_submodule(linears[-1], nn.Sequential(FastCPUDropout(dropout), model.get_submodule(linears[-1])))


def torchvision_model(in_channels: int, num_classes: int, downsample: Mapping[str, Any] | Downsample,
                      name: str = "resnet18", image_size: int | None = None,
                      small_input: bool | str = "auto", dropout: float = 0.0) -> nn.Module:
    """torchvision's ``name`` for ``num_classes`` classes, random weights, stem adapted
    (``small_input``, ``in_channels``), every downsampling point rebuilt by ``downsample``; ``dropout``
    > 0 adds a Dropout before the last linear layer."""
    model, traced, stem = published_model(in_channels, num_classes, name, image_size, small_input)
    add_classifier_dropout(model, dropout, f"model.name={name}")
    small = use_small_input(small_input, image_size)
    size = image_size if isinstance(image_size, int) and not isinstance(image_size, bool) else (32 if small else 224)
    return rebuild(model, downsample, (in_channels, size, size), f"model.name={name}", stem, traced)
