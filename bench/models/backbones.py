"""The backbone API in one import (``from bench.models.backbones import ...``).

The code lives in one module per family: :mod:`bench.models.base` (registry, band-shared stem,
:class:`SegBackbone`), :mod:`bench.models.tiny`, :mod:`bench.models.timm_resnet`.
"""

from bench.models.base import (
    ARCH_VERSION,
    BackboneSpec,
    BandSharedStem,
    SegBackbone,
    build_backbone,
    conv_bn_relu,
    list_backbones,
    register_backbone,
    upsample,
)
from bench.models.timm_resnet import LightFPN, TimmDenseTrunk, timm_backbone
from bench.models.tiny import TinyTrunk

__all__ = [
    "ARCH_VERSION",
    "BackboneSpec",
    "BandSharedStem",
    "LightFPN",
    "SegBackbone",
    "TimmDenseTrunk",
    "TinyTrunk",
    "build_backbone",
    "conv_bn_relu",
    "list_backbones",
    "register_backbone",
    "timm_backbone",
    "upsample",
]
