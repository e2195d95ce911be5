"""Architectures, all built from the downsampling registry in :mod:`poolstudy.models.downsample`."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from poolstudy.errors import PoolStudyError
from poolstudy.models.allcnn import AllCNNC
from poolstudy.models.downsample import DOWNSAMPLERS, Downsample, create_downsample, register_downsample
from poolstudy.models.lenet import LeNet
from poolstudy.models.resnet import resnet
from poolstudy.models.torchvision_models import torchvision_model
from poolstudy.models.vgg import vgg

#: arch name -> a callable (in_channels, num_classes, downsample, **model keys) -> nn.Module. lenet and
#: allcnn_c build their points from the registry; resnet, vgg and torchvision rebuild a published
#: network's points by downsampling surgery (poolstudy.models.surgery).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "lenet": LeNet, "allcnn_c": AllCNNC, "resnet": resnet, "vgg": vgg, "torchvision": torchvision_model,
}


def create_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build architecture ``arch`` (a key of ARCHITECTURES) with the given keyword arguments."""
    if arch not in ARCHITECTURES:
        raise PoolStudyError(
            f"model.arch = {arch!r} is not a known architecture; valid choices are: "
            f"{', '.join(sorted(ARCHITECTURES))}."
        )
    try:
        return ARCHITECTURES[arch](**kwargs)
    except TypeError as exc:  # an unexpected key in the model config
        raise PoolStudyError(f"model config does not fit architecture '{arch}': {exc}.") from None


__all__ = [
    "ARCHITECTURES",
    "AllCNNC",
    "DOWNSAMPLERS",
    "Downsample",
    "LeNet",
    "create_downsample",
    "create_model",
    "register_downsample",
]
