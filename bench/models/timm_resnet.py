"""timm ResNet trunks (resnet18, resnet50) with a light FPN decoder at 1/4 resolution.

The band-shared stem (stride 2) and the fusion take the place of the ResNet's own first stage
(``conv1``, ``bn1``, ``act1``: a 7x7 stride-2 convolution on RGB); the fusion outputs that
stage's width (64) at half resolution, the trunk continues with the ResNet's max-pool and its
four stages (1/4 ... 1/32), and :class:`LightFPN` merges them at 1/4, as standard segmentation
decoders do. :class:`~bench.models.base.SegBackbone` upsamples the result to the input size.

Beside them, the **standard-stem** variants (``resnet18-stdstem``, ``resnet50-stdstem``,
:class:`StandardStemBackbone`): the whole timm ResNet, its own ``conv1`` taking all input bands
(``in_chans`` = C), the same :class:`LightFPN`. Why: weights trained with a band-specific
``conv1`` (ImageNet RGB, SSL4EO-S12's 13-band S2 or 2-band S1, torchgeo) can only be evaluated
as they were trained, first layer included, on such a model; the band-shared stem would reduce
their ``conv1`` to band-mean filters. Methods that train the band-shared stem itself (UniFeat,
CoRe, SSCL) cannot run on it and say so (``PretrainMethod.needs_band_stem``). The backbone's
name is in every result's tags and keys, so a row says which stem it used.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from bench.core.errors import BenchError
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
    With ``in_chans`` the encoder keeps its first stage on that many input bands (``first_stage``:
    the standard-stem variant), and takes the input itself instead of the fused map.
    """

    def __init__(self, timm_name: str, out_dim: int, in_chans: int | None = None) -> None:
        super().__init__()
        self.timm_name = timm_name
        #: Whether the encoder keeps timm's ``conv1``/``bn1`` (on ``in_chans`` bands).
        self.first_stage = in_chans is not None
        self.timm_kwargs: dict[str, Any] = {"features_only": True, "out_indices": (1, 2, 3, 4)}
        if in_chans is not None:
            self.timm_kwargs["in_chans"] = in_chans
        encoder = self.create_encoder(pretrained=False)
        missing = [name for name in RESNET_FIRST_STAGE if name not in encoder]  # type: ignore[operator]
        if missing:
            raise ValueError(f"timm model {timm_name!r} has no ResNet first stage {missing}")
        self.in_width: int = encoder.conv1.out_channels  # type: ignore[union-attr,assignment]
        if not self.first_stage:
            for name in RESNET_FIRST_STAGE:
                del encoder[name]  # type: ignore[operator]
        self.encoder = encoder
        self.decoder = LightFPN(encoder.feature_info.channels(), out_dim)  # type: ignore[union-attr,operator]

    def create_encoder(self, pretrained: bool, **overrides: Any) -> nn.Module:
        """A fresh, complete timm encoder with this trunk's settings (used for ImageNet loading too)."""
        import timm

        return timm.create_model(self.timm_name, pretrained=pretrained, **{**self.timm_kwargs, **overrides})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Fused (B, in_width, H/2, W/2) -> (B, out_dim, H/4, W/4); with ``first_stage`` the input
        (B, in_chans, H, W) -> (B, out_dim, H/4, W/4)."""
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


class StandardStemBackbone(SegBackbone):
    """A whole timm ResNet (its own ``conv1`` on all bands) + :class:`LightFPN`: (B, out_dim, H, W).

    The :class:`SegBackbone` interface (``spec``, ``trunk``, ``features``, ``forward``) without the
    band-shared stem and fusion: there is no single-channel extractor to train or to initialise,
    and asking for one (``stem``, ``band_features``) is a one-line error naming the backbone.
    """

    band_stem = False

    def __init__(self, spec: BackboneSpec, trunk: TimmDenseTrunk) -> None:
        nn.Module.__init__(self)  # no stem, no fusion: the trunk's conv1 sees the bands
        self.spec = spec
        self.trunk = trunk

    def _no_band_stem(self) -> BenchError:
        return BenchError(
            f"backbone {self.spec.name!r} has timm's standard stem (conv1 on all {self.spec.in_chans} "
            "bands), not the band-shared stem this needs; use a band-shared backbone (see `bench list`)"
        )

    @property
    def stem(self) -> nn.Module:  # type: ignore[override]
        raise self._no_band_stem()

    def band_features(self, x: torch.Tensor) -> torch.Tensor:
        raise self._no_band_stem()

    def features_from_bands(self, band_feats: torch.Tensor) -> torch.Tensor:
        raise self._no_band_stem()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the trunk's features at 1/4 (B, out_dim, H/4, W/4)."""
        if x.shape[1] != self.spec.in_chans:
            raise ValueError(
                f"backbone {self.spec.name!r} was built for {self.spec.in_chans} bands, "
                f"got input with {x.shape[1]}"
            )
        return self.trunk(x)


#: The spec's ``extra["stem"]`` of the standard-stem variants (band-shared ones have none, so
#: their specs, and the cache keys made from them, are what they were).
STANDARD_STEM = "timm conv1 on all bands"


def standard_stem_backbone(timm_name: str, in_chans: int) -> StandardStemBackbone:
    """The whole timm ResNet on ``in_chans`` bands + FPN-lite at 1/4, 128-d (no band-shared stem)."""
    out_dim = 128
    trunk = TimmDenseTrunk(timm_name, out_dim, in_chans=in_chans)
    spec = BackboneSpec(
        f"{timm_name}-stdstem",
        in_chans,
        stem_width=0,
        fused_width=trunk.in_width,
        out_dim=out_dim,
        extra={"timm": timm_name, "stem": STANDARD_STEM},
    )
    return StandardStemBackbone(spec, trunk)


@register_backbone("resnet18", "band-shared stem (16, stride 2) + timm resnet18 + FPN-lite at 1/4, 128-d")
def resnet18(in_chans: int) -> SegBackbone:
    return timm_backbone("resnet18", in_chans)


@register_backbone("resnet50", "band-shared stem (16, stride 2) + timm resnet50 + FPN-lite at 1/4, 128-d")
def resnet50(in_chans: int) -> SegBackbone:
    return timm_backbone("resnet50", in_chans)


@register_backbone(
    "resnet18-stdstem",
    "standard stem: whole timm resnet18 (its conv1 on all bands) + FPN-lite at 1/4, 128-d",
)
def resnet18_stdstem(in_chans: int) -> SegBackbone:
    return standard_stem_backbone("resnet18", in_chans)


@register_backbone(
    "resnet50-stdstem",
    "standard stem: whole timm resnet50 (its conv1 on all bands) + FPN-lite at 1/4, 128-d",
)
def resnet50_stdstem(in_chans: int) -> SegBackbone:
    return standard_stem_backbone("resnet50", in_chans)


class StandardSegmenter(nn.Module):
    """The yardstick of DESIGN 3: a whole timm ResNet on all bands + :class:`LightFPN` + 1x1 logits.

    What a standard light segmentation model costs: the trunk's own first stage on the
    ``in_chans`` input, the decoder at 1/4, logits upsampled to the input size. ``bench perf
    --stage backbone`` and the backbone tests compare :class:`SegBackbone` (with the finetune
    protocol's 1x1 classifier) against it; it is not a backbone and never produces results.
    """

    def __init__(self, timm_name: str, in_chans: int, num_classes: int, out_dim: int = 128) -> None:
        super().__init__()
        self.trunk = TimmDenseTrunk(timm_name, out_dim, in_chans=in_chans)  # the standard-stem trunk
        self.classifier = nn.Conv2d(out_dim, num_classes, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_chans, H, W) -> logits (B, num_classes, H, W)."""
        return upsample(self.classifier(self.trunk(x)), x.shape[-2:])
