"""timm ResNet trunks (resnet18, resnet50) with a light FPN decoder at 1/4 resolution.

The band-shared stem (stride 2) and the fusion take the place of the ResNet's own first stage
(``conv1``, ``bn1``, ``act1``: a 7x7 stride-2 convolution on RGB); the fusion outputs that
stage's width (64) at half resolution, the trunk continues with the ResNet's max-pool and its
four stages (1/4 ... 1/32), and :class:`LightFPN` merges them at 1/4, as standard segmentation
decoders do. :class:`~bench.models.base.SegBackbone` upsamples the result to the input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bench.models.base import BackboneSpec, SegBackbone, conv_bn_relu, register_backbone, upsample

#: The ResNet modules the band-shared stem and the fusion replace, in the encoder's order.
RESNET_FIRST_STAGE = ("conv1", "bn1", "act1")


class LightFPN(nn.Module):
    """FPN-lite: a 1x1 lateral per level to ``out_dim``, summed at the finest level, one 3x3 conv."""

    def __init__(self, channels: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(ch, out_dim, 1) for ch in channels)
        self.head = conv_bn_relu(out_dim, out_dim)

    def forward(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        """Feature maps from fine to coarse -> (B, out_dim) at the finest level's resolution."""
        top = pyramid[0].shape[-2:]
        merged = sum(upsample(lat(f), top) for lat, f in zip(self.lateral, pyramid, strict=True))
        assert isinstance(merged, torch.Tensor)
        return self.head(merged)


class TimmDenseTrunk(nn.Module):
    """A timm ResNet feature pyramid without its first stage, plus :class:`LightFPN` at 1/4.

    The encoder is built with ``features_only=True`` so that timm's own pretrained loading gives a
    state dict whose keys match ``self.encoder`` (less the first stage, which the stem replaces).
    """

    def __init__(self, timm_name: str, out_dim: int) -> None:
        super().__init__()
        self.timm_name = timm_name
        self.timm_kwargs: dict[str, Any] = {"features_only": True, "out_indices": (1, 2, 3, 4)}
        encoder = self.create_encoder(pretrained=False)
        missing = [name for name in RESNET_FIRST_STAGE if name not in encoder]  # type: ignore[operator]
        if missing:
            raise ValueError(f"timm model {timm_name!r} has no ResNet first stage {missing}")
        self.in_width: int = encoder.conv1.out_channels  # type: ignore[union-attr,assignment]
        for name in RESNET_FIRST_STAGE:
            del encoder[name]  # type: ignore[operator]
        self.encoder = encoder
        self.decoder = LightFPN(encoder.feature_info.channels(), out_dim)  # type: ignore[union-attr,operator]

    def create_encoder(self, pretrained: bool, **overrides: Any) -> nn.Module:
        """A fresh, complete timm encoder with this trunk's settings (used for ImageNet loading too)."""
        import timm

        return timm.create_model(self.timm_name, pretrained=pretrained, **{**self.timm_kwargs, **overrides})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused (B, in_width, H/2, W/2) -> (B, out_dim, H/4, W/4)."""
        return self.decoder(self.encoder(x))


def timm_backbone(timm_name: str, in_chans: int) -> SegBackbone:
    """Band-shared stem (16) + fusion to the ResNet's first-stage width + the timm trunk, 128-d."""
    out_dim = 128
    trunk = TimmDenseTrunk(timm_name, out_dim)
    spec = BackboneSpec(
        timm_name,
        in_chans,
        stem_width=16,
        fused_width=trunk.in_width,
        out_dim=out_dim,
        extra={"timm": timm_name},
    )
    return SegBackbone(spec, trunk)


@register_backbone("resnet18", "band-shared stem (16, stride 2) + timm resnet18 + FPN-lite at 1/4, 128-d")
def resnet18(in_chans: int) -> SegBackbone:
    return timm_backbone("resnet18", in_chans)


@register_backbone("resnet50", "band-shared stem (16, stride 2) + timm resnet50 + FPN-lite at 1/4, 128-d")
def resnet50(in_chans: int) -> SegBackbone:
    return timm_backbone("resnet50", in_chans)


class StandardSegmenter(nn.Module):
    """The yardstick of DESIGN 3: a whole timm ResNet on all bands + :class:`LightFPN` + 1x1 logits.

    What a standard light segmentation model costs: the trunk's own first stage on the
    ``in_chans`` input, the decoder at 1/4, logits upsampled to the input size. ``bench perf
    --stage backbone`` and the backbone tests compare :class:`SegBackbone` (with the finetune
    protocol's 1x1 classifier) against it; it is not a backbone and never produces results.
    """

    def __init__(self, timm_name: str, in_chans: int, num_classes: int, out_dim: int = 128) -> None:
        super().__init__()
        import timm

        self.encoder = timm.create_model(
            timm_name, features_only=True, out_indices=(1, 2, 3, 4), in_chans=in_chans
        )
        self.decoder = LightFPN(self.encoder.feature_info.channels(), out_dim)  # type: ignore[union-attr,operator]
        self.classifier = nn.Conv2d(out_dim, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> logits (B, num_classes, H, W)."""
        return upsample(self.classifier(self.decoder(self.encoder(x))), x.shape[-2:])
