"""``core``: the second SSCL stage alone (ablation): restore the clean 15 bands from a degraded input.

The input is degraded (band dropout, whole-modality dropout, cutout boxes, Gaussian blur) and
stem + fusion + trunk + a 1x1 reconstruction head are trained to output the clean bands (MSE).
Restoring a dropped SAR band from optical ones (and the reverse) forces the fused features to
model cross-modal relations; cutout forces spatial context; blur forces texture. Stem, fusion and
trunk transfer; the head is discarded. Inside ``sscl`` the stem starts from UniFeat.

Choices (the published description gives the idea, not these constants):

- Degraded values are set to 0: inputs are normalised to [0, 1] (DESIGN 2.3), so 0 is "no
  signal" for every band, and a dropped band stays distinguishable from a blurred one.
- ``p_band`` 0.2: each band dropped independently, about 3 of 15 per image; enough to require
  inference across bands without starving the input. A draw that drops every band is replaced
  by the modality dropout alone, so some input always remains.
- ``p_modality`` 0.25, S1 or S2 with equal odds: the cross-modal case (predict S2 from SAR, the
  cloudy-scene situation, and the reverse) gets a quarter of the samples.
- ``cutout_boxes`` 2 of up to ``cutout_max_frac`` 0.3 of each side: up to ~15 % of the area,
  wider than the stem's receptive field so the trunk's context is needed, small enough to fill.
- ``blur_p`` 0.3, ``blur_sigma`` (0.5, 2.0) px: mild to strong loss of 10-20 m texture.
- ``loss_all_pixels`` True: MSE over every pixel and band, i.e. restore the clean image (the
  published objective); False averages only over degraded elements (masked-modelling style).
- ``steps`` 150, ``batch_size`` 16, ``crop`` 32, AdamW lr 1e-3: the loss is well down and the
  stage takes about a minute on 2 CPU cores with the ``tiny`` backbone; scale up on a GPU.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.models.backbones import SegBackbone
from methods.augment import SAR_BANDS, cutout, random_blur, random_crop, random_dihedral
from methods.registry import PretrainContext, PretrainMethod, register_method
from methods.training import StepOutput, TrainConfig, fit


@dataclass
class CoReConfig(TrainConfig):
    """CoRe settings; see the module docstring for why each default."""

    steps: int = 150
    batch_size: int = 16
    crop: int = 32
    p_band: float = 0.2
    p_modality: float = 0.25
    cutout_boxes: int = 2
    cutout_max_frac: float = 0.3
    blur_p: float = 0.3
    blur_sigma: tuple[float, float] = (0.5, 2.0)
    loss_all_pixels: bool = True


@dataclass
class Degraded:
    """A degraded batch and what was done to it (the masks drive the optional masked loss)."""

    x: torch.Tensor
    dropped: torch.Tensor  # (B, C) bands set to zero
    cut: torch.Tensor  # (B, 1, H, W) cutout pixels, zero in every band
    blurred: torch.Tensor  # (B,) samples that were blurred

    @property
    def mask(self) -> torch.Tensor:
        """(B, C, H, W) elements whose value the degradation changed (or may have)."""
        b, c = self.dropped.shape
        return self.dropped.view(b, c, 1, 1) | self.cut | self.blurred.view(b, 1, 1, 1)


def degrade(x: torch.Tensor, cfg: CoReConfig, gen: torch.Generator) -> Degraded:
    """Blur, then band and modality dropout, then cutout; all batched, on the batch's device."""
    b, c = x.shape[:2]
    device = x.device
    x, blurred = random_blur(x, cfg.blur_p, cfg.blur_sigma, gen)
    is_sar = (torch.arange(c, device=device) < SAR_BANDS).view(1, c)
    drop_sar = torch.rand(b, 1, generator=gen, device=device) < 0.5
    modality = torch.rand(b, 1, generator=gen, device=device) < cfg.p_modality
    dropped_modality = modality & (is_sar == drop_sar)
    dropped = dropped_modality | (torch.rand(b, c, generator=gen, device=device) < cfg.p_band)
    dropped = torch.where(dropped.all(dim=1, keepdim=True), dropped_modality, dropped)
    x = x.masked_fill(dropped.view(b, c, 1, 1), 0.0)
    x, cut = cutout(x, cfg.cutout_boxes, cfg.cutout_max_frac, gen)
    return Degraded(x, dropped, cut, blurred)


def train_core(
    backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext, cfg: CoReConfig, label: str
) -> list[float]:
    """Run the CoRe stage on the whole backbone in place; returns the per-step losses."""
    head = nn.Conv2d(backbone.out_dim, backbone.spec.in_chans, 1)

    def loss_fn(batch: torch.Tensor, gen: torch.Generator) -> StepOutput:
        clean = random_dihedral(random_crop(batch, cfg.crop, gen), gen)
        degraded = degrade(clean, cfg, gen)
        restored = head(backbone(degraded.x)).float()
        if cfg.loss_all_pixels:
            return F.mse_loss(restored, clean), {}
        mask = degraded.mask.expand_as(clean).float()
        loss = ((restored - clean) ** 2 * mask).sum() / mask.sum().clamp(min=1)
        return loss, {"degraded_fraction": mask.mean()}

    params = [*backbone.parameters(), *head.parameters()]
    return fit(label, [backbone, head], params, images, ctx, cfg, loss_fn)


@register_method("core")
class CoRe(PretrainMethod):
    """SSCL stage 2 alone: restore clean bands from degraded input, from a random stem."""

    description = "SSCL stage 2 only (ablation): restore clean S1+S2 from dropped/cut/blurred input"
    label = "CoRe"
    Config = CoReConfig

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Train stem + fusion + trunk; the reconstruction head is discarded."""
        train_core(backbone, images, ctx, self.config, self.name)
