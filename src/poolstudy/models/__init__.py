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

#: ``model.arch`` -> a callable ``(in_channels, num_classes, downsample, **model_keys) -> nn.Module``.
#: ``lenet`` (the seed's LeNet) and ``allcnn_c`` (Springenberg et al. 2015, Model C) build their points
#: from the registry; ``resnet``, ``vgg`` and ``torchvision`` rebuild a published network's points by
#: downsampling surgery (poolstudy.models.surgery).
ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {
    "lenet": LeNet, "allcnn_c": AllCNNC, "resnet": resnet, "vgg": vgg, "torchvision": torchvision_model,
}


def create_model(arch: str, **kwargs: Any) -> nn.Module:
    """Build architecture ``arch`` (a key of :data:`ARCHITECTURES`) with the given keyword arguments.

    Args:
        arch: ``model.arch``: ``"lenet"``, ``"allcnn_c"``, ``"resnet"``, ``"vgg"`` or ``"torchvision"``.
        **kwargs: the rest of the ``model`` config node: ``in_channels``, ``num_classes``, ``downsample``
            (the operator's settings, see :func:`poolstudy.models.downsample.create_downsample`) and the
            architecture's own keys.

    Returns:
        The untrained ``nn.Module``; it maps images ``(N, in_channels, H, W)`` (float, normalised) to
        logits ``(N, num_classes)``.

    Raises:
        PoolStudyError: an unknown ``arch``, or a key the architecture does not take (the message names both).
    """
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
