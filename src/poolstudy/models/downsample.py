"""One registry of downsampling operators; every architecture builds its stages from it.

A convolution stage is ``conv -> [norm] -> activation -> [downsampling layers] -> [dropout]``.
An operator downsamples either through the preceding convolution (its stride and kernel,
as in the seed's ``strided`` variant) or through layers after the activation (a pooling
layer), or both. Adding an operator is one ``@register_downsample`` class.

Networks built elsewhere (``arch=resnet``, ``vgg``, ``torchvision``) get the same operators through
downsampling surgery (:mod:`poolstudy.models.surgery`): ``at_points`` says which of its rules an
operator follows there ("layers": its layers do the downsampling; "conv": a strided convolution does;
"none": nothing does; "published": every point stays as the network was built).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from poolstudy.errors import PoolStudyError
from poolstudy.models.fast_cpu import FastCPUDropout, FastCPUMaxPool2d
from poolstudy.models.layers import BinomialBlur, FractionalMaxPool

DOWNSAMPLERS: dict[str, type[Downsample]] = {}


def register_downsample(cls: type[Downsample]) -> type[Downsample]:
    """Class decorator: add an operator to :data:`DOWNSAMPLERS` under its ``name`` (``model.downsample.type``).

    Every architecture then builds it at each downsampling point; ``conf/model/<name>.yaml`` gives its window.
    """
    DOWNSAMPLERS[cls.name] = cls
    return cls


def _positive_int(key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PoolStudyError(
            f"model.downsample.{key} = {value!r} is not valid: it must be an integer >= {minimum}."
        )
    return value


class Downsample:
    """Base operator: the stage's convolution keeps stride 1 and nothing follows it.

    An operator acts on a stage's feature map ``(N, C, H, W)`` after its ReLU, either through the stage's
    convolution (:meth:`conv_geometry`) or through layers after the activation (:meth:`layers`), or both.

    Args:
        kernel_size: the window (pixels), or the strided convolution's kernel.
        stride: the step (pixels); an output side is about ``H / stride``.
        padding: zero padding (pixels) per side; ``None``: the operator's default.
        **options: the operator's own keys (:attr:`options`).

    Raises:
        PoolStudyError: a size that is not a positive integer, a negative padding, or a key the operator does
            not take (the message names ``model.downsample.<key>`` and the valid keys).
    """

    name: ClassVar[str]
    #: extra keys an operator accepts besides type/kernel_size/stride/padding
    options: ClassVar[tuple[str, ...]] = ()
    #: what the operator does at a downsampling point of a surgery architecture (see the module doc)
    at_points: ClassVar[str] = "layers"
    #: whether its window (kernel_size) is what subsamples, so it must cover the stride
    window_subsamples: ClassVar[bool] = True

    def __init__(self, kernel_size: int = 2, stride: int = 2, padding: int | None = None, **options: Any):
        self.kernel_size = _positive_int("kernel_size", kernel_size)
        self.stride = _positive_int("stride", stride)
        if padding is not None:
            _positive_int("padding", padding, minimum=0)
        self.padding = padding
        unknown = set(options) - set(self.options)
        if unknown:
            valid = ", ".join(("type", "kernel_size", "stride", "padding", *self.options))
            raise PoolStudyError(
                f"model.downsample has unknown key(s) {sorted(unknown)} for type '{self.name}'; "
                f"valid keys are: {valid}."
            )
        self.extra = options

    # The hooks an architecture calls while building a stage.
    def conv_geometry(self, kernel_size: int, padding: int) -> tuple[int, int, int]:
        """``(kernel, stride, padding)`` of the stage's convolution, given the architecture's own kernel and padding."""
        return kernel_size, 1, padding

    def layers(self, channels: int) -> list[nn.Module]:
        """Layers appended after the stage's activation, for a map of ``channels`` channels."""
        return []

    def pool_padding(self) -> int:
        """A pooling layer's padding (``None`` means 0).

        Raises:
            PoolStudyError: a padding above ``kernel_size // 2`` (torch's pools refuse it).
        """
        padding = 0 if self.padding is None else self.padding
        if padding > self.kernel_size // 2:
            raise PoolStudyError(
                f"model.downsample.padding = {padding} is too large for kernel_size = {self.kernel_size}: "
                f"a pooling layer's padding must be at most kernel_size // 2 = {self.kernel_size // 2}."
            )
        return padding

    def describe(self) -> str:
        """A short label for logs, e.g. ``maxpool(k=2, s=2)``."""
        return f"{self.name}(k={self.kernel_size}, s={self.stride})"


@register_downsample
class MaxPool(Downsample):
    """Max-pooling, ``MaxPool2d(kernel_size, stride, padding)``: the seed's own operator."""

    name = "maxpool"

    def layers(self, channels: int) -> list[nn.Module]:
        return [FastCPUMaxPool2d(self.kernel_size, self.stride, self.pool_padding())]


@register_downsample
class AvgPool(Downsample):
    """Average pooling, ``AvgPool2d(kernel_size, stride, padding)`` (padding counted in the average, torch's default)."""

    name = "avgpool"

    def layers(self, channels: int) -> list[nn.Module]:
        return [nn.AvgPool2d(self.kernel_size, self.stride, self.pool_padding())]


@register_downsample
class Strided(Downsample):
    """No pooling layer: the stage's own convolution gets the stride (Springenberg et al.'s
    "Strided-CNN"). ``kernel_size`` is that convolution's kernel; padding defaults to
    kernel_size // 2 so that the output size matches a stride-s pool's."""

    name = "strided"
    at_points = "conv"

    def conv_geometry(self, kernel_size: int, padding: int) -> tuple[int, int, int]:
        pad = self.kernel_size // 2 if self.padding is None else self.padding
        return self.kernel_size, self.stride, pad


def _zero_pad(padding: int) -> list[nn.Module]:
    """Explicit padding for layers that take no padding argument. Downsampling always follows a
    ReLU, so zeros never exceed a real input: like max-pool's padding, they never win a window."""
    return [nn.ZeroPad2d(padding)] if padding else []


@register_downsample
class LPPool(Downsample):
    """Power-average pooling, LPPool2d (Sermanet et al. 2012): (sum of x^p over the window)^(1/p).
    ``p`` = 1 is sum pooling and a large ``p`` approaches max-pooling."""

    name = "lppool"
    options = ("p",)

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        p = self.extra.get("p", 2)
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not math.isfinite(p) or p <= 0:
            raise PoolStudyError(
                f"model.downsample.p = {p!r} is not valid for type 'lppool': it must be a number > 0 "
                f"(1: sum pooling, 2: the default, large values approach max-pooling)."
            )
        self.p = float(p)

    def layers(self, channels: int) -> list[nn.Module]:
        return [*_zero_pad(self.pool_padding()), nn.LPPool2d(self.p, self.kernel_size, self.stride)]

    def describe(self) -> str:
        return f"{self.name}(k={self.kernel_size}, s={self.stride}, p={self.p:g})"


@register_downsample
class FracMaxPool(Downsample):
    """Fractional max-pooling (Graham 2014, torch's fractional_max_pool2d) with output ratio
    1/stride: the output is floor(input / stride), over pseudo-random regions while training.

    ``stride`` may be fractional here (1.414 is Graham's 1/sqrt(2) ratio). With an integer stride
    and kernel_size 2 every region step is exactly the stride, i.e. plain max-pooling; hence
    conf/model/fracmaxpool.yaml uses kernel_size 3.
    """

    name = "fracmaxpool"
    window_subsamples = False  # its regions tile the whole input whatever the kernel

    def __init__(self, kernel_size: int = 3, stride: float = 2, padding: int | None = None, **options: Any):
        if isinstance(stride, bool) or not isinstance(stride, (int, float)) or not math.isfinite(stride) or stride <= 1:
            raise PoolStudyError(
                f"model.downsample.stride = {stride!r} is not valid for type 'fracmaxpool': its output ratio is "
                f"1/stride and must be below 1, so stride must be a number > 1 (e.g. 2, or 1.414 for a 1/sqrt(2) ratio)."
            )
        super().__init__(kernel_size, 2, padding, **options)
        self.stride = stride

    def layers(self, channels: int) -> list[nn.Module]:
        return [*_zero_pad(self.pool_padding()), FractionalMaxPool(self.kernel_size, self.stride)]


@register_downsample
class ExtraConv(Downsample):
    """All-CNN (Springenberg et al. 2015): the pool is replaced by a learned convolution with the
    pool's kernel, stride and padding (channels -> channels, then ReLU). It adds
    kernel_size^2 * C^2 + C parameters at each downsampling point."""

    name = "conv"

    def layers(self, channels: int) -> list[nn.Module]:
        padding = 0 if self.padding is None else self.padding
        return [nn.Conv2d(channels, channels, self.kernel_size, self.stride, padding), nn.ReLU()]


@register_downsample
class ConvPool(Downsample):
    """ConvPool-CNN (Springenberg et al. 2015), the parameter-matched control for ``conv``: the
    same extra convolution but with stride 1 ('same' padding), then the max-pool."""

    name = "convpool"

    def layers(self, channels: int) -> list[nn.Module]:
        k = self.kernel_size
        # 'same' padding spelled out: Conv2d(padding="same") warns on every even kernel.
        same = [nn.ZeroPad2d(((k - 1) // 2, k // 2) * 2)] if k % 2 == 0 else []
        return [*same, nn.Conv2d(channels, channels, k, 1, padding=k // 2 if k % 2 else 0), nn.ReLU(),
                FastCPUMaxPool2d(k, self.stride, self.pool_padding())]


class _Blurred(Downsample):
    """Anti-aliased downsampling (Zhang 2019): a fixed binomial blur does the subsampling."""

    options = ("filter_size",)
    window_subsamples = False  # the blur subsamples

    def __init__(self, *args: Any, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.filter_size = _positive_int("filter_size", self.extra.get("filter_size", 4))

    def describe(self) -> str:
        return f"{self.name}(k={self.kernel_size}, s={self.stride}, filter={self.filter_size})"


@register_downsample
class BlurPool(_Blurred):
    """MaxBlurPool: max-pool with stride 1, then the blur with the stride (Zhang 2019)."""

    name = "blurpool"

    def layers(self, channels: int) -> list[nn.Module]:
        return [nn.MaxPool2d(self.kernel_size, 1, self.pool_padding()),
                BinomialBlur(channels, self.filter_size, self.stride)]


@register_downsample
class BlurStrided(_Blurred):
    """The anti-aliased ``strided``: the stage's convolution keeps stride 1 (kernel_size and
    padding as for ``strided``), and the blur after its ReLU subsamples (Zhang 2019's ConvBlurPool)."""

    name = "blurstrided"

    def conv_geometry(self, kernel_size: int, padding: int) -> tuple[int, int, int]:
        pad = self.kernel_size // 2 if self.padding is None else self.padding
        return self.kernel_size, 1, pad

    def layers(self, channels: int) -> list[nn.Module]:
        return [BinomialBlur(channels, self.filter_size, self.stride)]


@register_downsample
class NoDownsampling(Downsample):
    """No downsampling anywhere: every map keeps its input size. Shows what downsampling buys."""

    name = "none"
    at_points = "none"

    def __init__(self, kernel_size: int = 1, stride: int = 1, padding: int | None = None, **options: Any):
        super().__init__(kernel_size, stride, padding, **options)
        for key in ("kernel_size", "stride"):
            if getattr(self, key) != 1:
                raise PoolStudyError(
                    f"model.downsample.{key} = {getattr(self, key)} is not valid for type 'none', which "
                    f"never downsamples: it must be 1 (as conf/model/none.yaml sets)."
                )

    def describe(self) -> str:
        return self.name


@register_downsample
class Published(Downsample):
    """Every downsampling point exactly as the network was published (torchvision's builder, the
    paper's CIFAR ResNet or VGG): the baseline each operator is compared with in those
    architectures. It has no window of its own: ``kernel_size`` and ``stride`` must be null.
    LeNet and All-CNN-C are built from the registry and have no such fixed design to keep."""

    name = "published"
    at_points = "published"

    def __init__(self, kernel_size: int | None = None, stride: int | None = None, padding: int | None = None,
                 **options: Any):
        for key, value in (("kernel_size", kernel_size), ("stride", stride), ("padding", padding)):
            if value is not None:
                raise PoolStudyError(
                    f"model.downsample.{key} = {value!r} is not valid for type 'published', which keeps every "
                    f"point's own window: it must be null (as conf/model/published.yaml sets)."
                )
        super().__init__(**options)
        self.kernel_size = self.stride = None

    def conv_geometry(self, kernel_size: int, padding: int) -> tuple[int, int, int]:
        raise PoolStudyError(
            "model=published keeps the downsampling of a network built elsewhere (arch=resnet, vgg or "
            "torchvision); this architecture builds its downsampling from model.downsample itself. Its "
            "original design is model=maxpool (LeNet: the seed's model; All-CNN-C: Model C)."
        )

    def describe(self) -> str:
        return self.name


def create_downsample(cfg: Mapping[str, Any] | Downsample) -> Downsample:
    """Build an operator from a ``model.downsample`` mapping (``type`` picks the registry entry).

    Args:
        cfg: ``{"type": "maxpool", "kernel_size": 2, "stride": 2, "padding": 0, ...}``, or an operator (returned).

    Raises:
        PoolStudyError: an unknown ``type`` (the valid ones are named) or a key or value the operator refuses.
    """
    if isinstance(cfg, Downsample):
        return cfg
    params = dict(cfg)
    kind = params.pop("type", None)
    if kind not in DOWNSAMPLERS:
        raise PoolStudyError(
            f"model.downsample.type = {kind!r} is not a known downsampling operator; "
            f"valid types are: {', '.join(sorted(DOWNSAMPLERS))}."
        )
    return DOWNSAMPLERS[kind](**params)


def conv_stage(
    in_channels: int,
    out_channels: int,
    kernel_size: int,
    padding: int,
    downsample: Downsample,
    norm: bool,
    dropout: float = 0.0,
) -> nn.Sequential:
    """conv -> [BatchNorm] -> ReLU -> [downsampling] -> [Dropout], as in the seed's LeNet.

    Maps ``(N, in_channels, H, W)`` to ``(N, out_channels, H', W')``; ``H'`` follows from the convolution's
    geometry and the operator's layers (``dropout`` 0 adds no layer).
    """
    k, s, p = downsample.conv_geometry(kernel_size, padding)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, k, stride=s, padding=p)]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU())
    layers.extend(downsample.layers(out_channels))
    if dropout > 0:
        layers.append(FastCPUDropout(dropout))
    return nn.Sequential(*layers)
