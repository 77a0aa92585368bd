"""load_backbone.py: a ``bench export`` backbone as a plain PyTorch module, without the harness.

``bench export`` copies this file, unchanged, beside the weights it writes. It needs torch, timm
and safetensors (a dependency of timm) and nothing of the harness: it rebuilds the backbone from
the card in the weights file's metadata and loads every tensor (strict), so the module computes
what the harness's backbone computes (the harness's tests compare the two on every built-in
backbone). Usage::

    from load_backbone import load_backbone, normalise
    model = load_backbone("sscl-resnet18-....safetensors")    # eval mode, on the CPU
    x = normalise(s1_db, s2_dn, model.card)                   # (B, 15, H, W) from raw S1 dB + S2 DN
    features = model(x)                                       # (B, out_dim, H, W) per-pixel features

Why a copy of the architecture rather than an import of ``bench.models``: the point is weights
that travel to people who do not install the harness; the layers here are the harness's own
(same names, same order), which is what lets its state dict load strictly.

The architecture, by the card's ``backbone`` spec:

- band-shared backbones (``tiny``, ``resnet18``, ``resnet50``): the same small stem (conv-BN-ReLU
  at stride 2, then conv-BN-ReLU) on every band separately, a 1x1 fusion across bands, then the
  trunk (``tiny``: a two-scale U-Net; timm ResNets: the ResNet without ``conv1``/``bn1``, its four
  stages and an FPN-lite decoder at 1/4);
- standard-stem backbones (``*-stdstem``): the whole timm ResNet on all bands and the FPN-lite;
- then the features are upsampled bilinearly to the input size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

#: Card key in the safetensors metadata (as ``bench.models.exported.CARD_KEY``).
CARD_KEY = "bench.card"
_FIRST_STAGE = ("conv1", "bn1", "act1")


def _cbr(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def _up(x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class _Stem(nn.Module):
    def __init__(self, width: int, stride: int) -> None:
        super().__init__()
        self.layers = nn.Sequential(_cbr(1, width, stride=stride), _cbr(width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class _TinyTrunk(nn.Module):
    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.enc = _cbr(cin, width)
        self.down = nn.Sequential(_cbr(width, 2 * width, stride=2), _cbr(2 * width, 2 * width))
        self.dec = _cbr(3 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skip = self.enc(x)
        return self.dec(torch.cat([skip, _up(self.down(skip), skip.shape[-2:])], dim=1))


class _LightFPN(nn.Module):
    def __init__(self, channels: Sequence[int], out_dim: int) -> None:
        super().__init__()
        self.lateral = nn.ModuleList(nn.Conv2d(ch, out_dim, 1) for ch in channels)
        self.head = _cbr(out_dim, out_dim)

    def forward(self, pyramid: Sequence[torch.Tensor]) -> torch.Tensor:
        top = pyramid[0].shape[-2:]
        merged = sum(_up(lat(f), top) for lat, f in zip(self.lateral, pyramid, strict=True))
        return self.head(merged)


class _TimmTrunk(nn.Module):
    def __init__(self, timm_name: str, out_dim: int, in_chans: int | None) -> None:
        super().__init__()
        import timm

        kwargs: dict[str, Any] = {"features_only": True, "out_indices": (1, 2, 3, 4)}
        if in_chans is not None:  # standard stem: timm's conv1 on all bands
            kwargs["in_chans"] = in_chans
        encoder: Any = timm.create_model(timm_name, pretrained=False, **kwargs)
        if in_chans is None:  # band-shared stem and fusion replace the ResNet's first stage
            for name in _FIRST_STAGE:
                del encoder[name]
        self.encoder = encoder
        self.decoder = _LightFPN(encoder.feature_info.channels(), out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


class ExportedBackbone(nn.Module):
    """(B, C, H, W) normalised input -> per-pixel features (B, out_dim, H, W); ``card``: the export's card."""

    def __init__(self, card: dict[str, Any]) -> None:
        super().__init__()
        spec = card["backbone"]
        self.card = card
        self.in_chans = int(spec["in_chans"])
        self.out_dim = int(spec["out_dim"])
        timm_name = (spec.get("extra") or {}).get("timm")
        self.band_stem = not (spec.get("extra") or {}).get("stem")
        if self.band_stem:
            self.stem = _Stem(int(spec["stem_width"]), int(spec["stem_stride"]))
            self.fusion = _cbr(self.in_chans * int(spec["stem_width"]), int(spec["fused_width"]), kernel=1)
        if timm_name:
            self.trunk: nn.Module = _TimmTrunk(
                timm_name, self.out_dim, None if self.band_stem else self.in_chans
            )
        elif spec["name"] == "tiny":
            self.trunk = _TinyTrunk(int(spec["fused_width"]), self.out_dim)
        else:
            raise ValueError(f"backbone {spec['name']!r}: not a built-in architecture (a plugin's?)")

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the trunk's coarse features, before upsampling."""
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"expected {self.in_chans} bands ({', '.join(self.card['bands'])}), got {x.shape[1]}"
            )
        if not self.band_stem:
            return self.trunk(x)
        b, c, h, w = x.shape
        bands = self.stem(x.reshape(b * c, 1, h, w))
        return self.trunk(self.fusion(bands.reshape(b, c * bands.shape[1], *bands.shape[2:])))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _up(self.features(x), x.shape[-2:])


def read_card(path: str | Path) -> dict[str, Any]:
    """The card (JSON) in an exported ``.safetensors`` file's metadata."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        meta = handle.metadata() or {}
    if CARD_KEY not in meta:
        raise ValueError(f"{path}: no bench card in its metadata; not a `bench export` backbone file")
    card: dict[str, Any] = json.loads(meta[CARD_KEY])
    return card


def load_backbone(path: str | Path, device: str | torch.device = "cpu") -> ExportedBackbone:
    """The exported backbone with every trained tensor loaded (strict), in eval mode."""
    from safetensors.torch import load_file

    model = ExportedBackbone(read_card(path))
    model.load_state_dict(load_file(str(path)))
    return model.to(device).eval()


def normalise(s1_db: Any, s2_dn: Any, card: dict[str, Any]) -> torch.Tensor:
    """Raw S1 sigma0 in dB (B, 2, H, W) and S2 L1C reflectance x 10000 (B, 13, H, W) -> the network's
    input, as the card's ``normalisation.per_band`` says: non-finite -> ``fill``, clip to ``clip``,
    then ``(x - subtract) / divide``, band by band in the card's order."""
    x = torch.cat(
        [torch.as_tensor(s1_db, dtype=torch.float32), torch.as_tensor(s2_dn, dtype=torch.float32)], 1
    )
    out = torch.empty_like(x)
    for i, band in enumerate(card["normalisation"]["per_band"]):
        v = x[:, i]
        if band.get("fill") is not None:
            v = torch.where(torch.isfinite(v), v, torch.full_like(v, band["fill"]))
        v = v.clamp(*band["clip"])
        out[:, i] = (v - band["subtract"]) / band["divide"]
    return out
