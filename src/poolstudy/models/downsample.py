"""One registry of downsampling operators; every architecture builds its stages from it.

A convolution stage is ``conv -> [norm] -> activation -> [downsampling layers] -> [dropout]``.
An operator downsamples either through the preceding convolution (its stride and kernel,
as in the seed's ``strided`` variant) or through layers after the activation (a pooling
layer), or both. Adding an operator is one ``@register_downsample`` class.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from torch import nn

from poolstudy.errors import PoolStudyError

DOWNSAMPLERS: dict[str, type[Downsample]] = {}


def register_downsample(cls: type[Downsample]) -> type[Downsample]:
    DOWNSAMPLERS[cls.name] = cls
    return cls


def _positive_int(key: str, value: Any, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise PoolStudyError(
            f"model.downsample.{key} = {value!r} is not valid: it must be an integer >= {minimum}."
        )
    return value


class Downsample:
    """Base operator: the stage's convolution keeps stride 1 and nothing follows it."""

    name: ClassVar[str]
    #: extra keys an operator accepts besides type/kernel_size/stride/padding
    options: ClassVar[tuple[str, ...]] = ()

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
        """(kernel, stride, padding) of the stage's convolution."""
        return kernel_size, 1, padding

    def layers(self, channels: int) -> list[nn.Module]:
        """Layers appended after the stage's activation."""
        return []

    def pool_padding(self) -> int:
        padding = 0 if self.padding is None else self.padding
        if padding > self.kernel_size // 2:
            raise PoolStudyError(
                f"model.downsample.padding = {padding} is too large for kernel_size = {self.kernel_size}: "
                f"a pooling layer's padding must be at most kernel_size // 2 = {self.kernel_size // 2}."
            )
        return padding

    def describe(self) -> str:
        return f"{self.name}(k={self.kernel_size}, s={self.stride})"


@register_downsample
class MaxPool(Downsample):
    name = "maxpool"

    def layers(self, channels: int) -> list[nn.Module]:
        return [nn.MaxPool2d(self.kernel_size, self.stride, self.pool_padding())]


@register_downsample
class AvgPool(Downsample):
    name = "avgpool"

    def layers(self, channels: int) -> list[nn.Module]:
        return [nn.AvgPool2d(self.kernel_size, self.stride, self.pool_padding())]


@register_downsample
class Strided(Downsample):
    """No pooling layer: the stage's own convolution gets the stride (Springenberg et al.'s
    "Strided-CNN"). ``kernel_size`` is that convolution's kernel; padding defaults to
    kernel_size // 2 so that the output size matches a stride-s pool's."""

    name = "strided"

    def conv_geometry(self, kernel_size: int, padding: int) -> tuple[int, int, int]:
        pad = self.kernel_size // 2 if self.padding is None else self.padding
        return self.kernel_size, self.stride, pad


def create_downsample(cfg: Mapping[str, Any] | Downsample) -> Downsample:
    """Build an operator from a ``model.downsample`` mapping (``type`` picks the registry entry)."""
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
    """conv -> [BatchNorm] -> ReLU -> [downsampling] -> [Dropout], as in the seed's LeNet."""
    k, s, p = downsample.conv_geometry(kernel_size, padding)
    layers: list[nn.Module] = [nn.Conv2d(in_channels, out_channels, k, stride=s, padding=p)]
    if norm:
        layers.append(nn.BatchNorm2d(out_channels))
    layers.append(nn.ReLU())
    layers.extend(downsample.layers(out_channels))
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)
