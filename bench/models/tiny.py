"""``tiny``: a two-scale U-Net trunk, small enough to train in minutes on 2 CPU cores."""

from __future__ import annotations

import torch
from torch import nn

from bench.models.base import BackboneSpec, SegBackbone, conv_bn_relu, register_backbone, upsample


class TinyTrunk(nn.Module):
    """A two-scale U-Net on the fused map (1/2 and 1/4 resolution): enough context for texture."""

    def __init__(self, cin: int, width: int) -> None:
        super().__init__()
        self.enc = conv_bn_relu(cin, width)
        self.down = nn.Sequential(
            conv_bn_relu(width, 2 * width, stride=2), conv_bn_relu(2 * width, 2 * width)
        )
        self.dec = conv_bn_relu(3 * width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, cin, h, w) -> (B, width, h, w)."""
        skip = self.enc(x)
        deep = self.down(skip)
        return self.dec(torch.cat([skip, upsample(deep, skip.shape[-2:])], dim=1))


@register_backbone(
    "tiny", "band-shared stem (8, stride 2) + 2-scale U-Net, 32-d features; minutes on 2 CPU cores"
)
def tiny(in_chans: int) -> SegBackbone:
    spec = BackboneSpec("tiny", in_chans, stem_width=8, fused_width=32, out_dim=32)
    return SegBackbone(spec, TinyTrunk(spec.fused_width, spec.out_dim))
