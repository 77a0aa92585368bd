"""The one architecture every method shares, chosen by name (``--backbone``).

Every backbone is a :class:`SegBackbone`: a band-shared single-channel stem (the extractor UniFeat
trains) applied to each band separately, a 1x1 fusion across bands, and a trunk that returns
per-pixel features at input resolution. Sharing the stem makes any channel count valid input and
gives UniFeat and CoRe the same module to train.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

_BACKBONES: dict[str, tuple[Callable[..., SegBackbone], str]] = {}


def register_backbone(
    name: str, description: str
) -> Callable[[Callable[..., SegBackbone]], Callable[..., SegBackbone]]:
    """Register a backbone factory ``(in_chans) -> SegBackbone`` under ``name``."""

    def wrap(fn: Callable[..., SegBackbone]) -> Callable[..., SegBackbone]:
        if name in _BACKBONES:
            raise ValueError(f"backbone {name!r} is already registered")
        _BACKBONES[name] = (fn, description)
        return fn

    return wrap


def list_backbones() -> dict[str, str]:
    """Registered backbone names with their one-line descriptions."""
    return {name: desc for name, (_, desc) in sorted(_BACKBONES.items())}


def build_backbone(name: str, in_chans: int = 15) -> SegBackbone:
    """Build the backbone ``name`` for ``in_chans`` input bands, randomly initialised."""
    if name not in _BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(sorted(_BACKBONES))}")
    return _BACKBONES[name][0](in_chans)


def _conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class BandSharedStem(nn.Module):
    """Single-channel extractor: the same convolutions applied to every band on its own."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width
        self.layers = nn.Sequential(_conv_bn_relu(1, width), _conv_bn_relu(width, width))

    @property
    def first_conv(self) -> nn.Conv2d:
        """The convolution that sees raw band values (ImageNet initialises it from RGB filters)."""
        first_block = self.layers[0]
        assert isinstance(first_block, nn.Sequential) and isinstance(first_block[0], nn.Conv2d)
        return first_block[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, width, H, W)."""
        return self.layers(x)


@dataclass
class BackboneSpec:
    """What identifies a backbone in cache keys and run records."""

    name: str
    in_chans: int
    stem_width: int
    fused_width: int
    out_dim: int
    extra: dict[str, Any] = field(default_factory=dict)


class SegBackbone(nn.Module):
    """Stem (per band) -> fusion (across bands) -> trunk (spatial) -> (B, out_dim, H, W)."""

    def __init__(self, spec: BackboneSpec, trunk: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.stem = BandSharedStem(spec.stem_width)
        self.fusion = _conv_bn_relu(spec.in_chans * spec.stem_width, spec.fused_width, kernel=1)
        self.trunk = trunk

    @property
    def out_dim(self) -> int:
        return self.spec.out_dim

    def band_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem features of every band: (B, C, H, W) -> (B, C, stem_width, H, W)."""
        b, c, h, w = x.shape
        feats = self.stem(x.reshape(b * c, 1, h, w))
        return feats.reshape(b, c, self.spec.stem_width, h, w)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> per-pixel features (B, out_dim, H, W)."""
        if x.shape[1] != self.spec.in_chans:
            raise ValueError(
                f"backbone {self.spec.name!r} was built for {self.spec.in_chans} bands, "
                f"got input with {x.shape[1]}"
            )
        fused = self.fusion(self.band_features(x).flatten(1, 2))
        return self.trunk(fused)


class TinyTrunk(nn.Module):
    """A two-scale U-Net: enough context for texture, small enough for 2 CPU cores."""

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.enc = _conv_bn_relu(cin, width)
        self.down = nn.Sequential(
            _conv_bn_relu(width, 2 * width, stride=2), _conv_bn_relu(2 * width, 2 * width)
        )
        self.dec = _conv_bn_relu(3 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)
        deep = self.down(skip)
        up = F.interpolate(deep, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.dec(torch.cat([skip, up], dim=1))


class TimmDenseTrunk(nn.Module):
    """A timm feature pyramid plus a light FPN-style decoder back to input resolution.

    The encoder is built with ``features_only=True`` so that timm's own pretrained loading
    (including its adaptation of ``conv1`` to ``in_chans``) produces a state dict that fits
    ``self.encoder`` exactly.
    """

    def __init__(self, timm_name: str, cin: int, out_dim: int) -> None:
        super().__init__()
        self.timm_name = timm_name
        self.timm_kwargs: dict[str, Any] = {
            "features_only": True,
            "out_indices": (1, 2, 3, 4),
            "in_chans": cin,
        }
        self.encoder = self.create_encoder(pretrained=False)
        channels = self.encoder.feature_info.channels()  # type: ignore[union-attr,operator]
        self.lateral = nn.ModuleList(nn.Conv2d(ch, out_dim, 1) for ch in channels)
        self.head = _conv_bn_relu(out_dim, out_dim)

    def create_encoder(self, pretrained: bool, **overrides: Any) -> nn.Module:
        """A fresh timm encoder with this trunk's settings (used for ImageNet loading too)."""
        import timm

        return timm.create_model(self.timm_name, pretrained=pretrained, **{**self.timm_kwargs, **overrides})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        pyramid = self.encoder(x)
        top = pyramid[0].shape[-2:]
        merged = sum(
            F.interpolate(lat(f), size=top, mode="bilinear", align_corners=False)
            for lat, f in zip(self.lateral, pyramid, strict=True)
        )
        return F.interpolate(self.head(merged), size=size, mode="bilinear", align_corners=False)


@register_backbone("tiny", "band-shared stem (8) + 2-scale U-Net, 32-d features; minutes on 2 CPU cores")
def tiny(in_chans: int) -> SegBackbone:
    spec = BackboneSpec("tiny", in_chans, stem_width=8, fused_width=32, out_dim=32)
    return SegBackbone(spec, TinyTrunk(spec.fused_width, spec.out_dim))


def _timm_backbone(timm_name: str, in_chans: int) -> SegBackbone:
    spec = BackboneSpec(
        timm_name, in_chans, stem_width=16, fused_width=32, out_dim=128, extra={"timm": timm_name}
    )
    return SegBackbone(spec, TimmDenseTrunk(timm_name, spec.fused_width, spec.out_dim))


@register_backbone("resnet18", "band-shared stem (16) + timm resnet18 trunk + FPN-lite decoder, 128-d")
def resnet18(in_chans: int) -> SegBackbone:
    return _timm_backbone("resnet18", in_chans)


@register_backbone("resnet50", "band-shared stem (16) + timm resnet50 trunk + FPN-lite decoder, 128-d")
def resnet50(in_chans: int) -> SegBackbone:
    return _timm_backbone("resnet50", in_chans)
