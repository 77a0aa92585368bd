"""``unifeat``: the first SSCL stage alone (ablation): a band-invariant single-channel extractor.

Two different bands of the same image are passed separately through the band-shared stem
(``backbone.stem``), a per-pixel projection head and a predictor; the features of the same pixel
are pulled together across the two bands with SimSiam's symmetric negative cosine loss and a
stop-gradient on the target branch. Only the stem and the heads train; fusion and trunk keep
their initialisation.

Choices (the published description gives the idea, not these constants):

- ``p_cross`` 0.5: with this probability the pair is one SAR and one optical band (the
  modality gap is what the stem must bridge); otherwise any two distinct bands, which keeps
  within-modality pairs (e.g. B4 vs B8) in the mix. The realised cross rate is
  ``p_cross + (1 - p_cross) * 52 / 210`` for 2 SAR + 13 S2 bands, about 0.62.
- ``crop`` 32 px with random flips / rot90 applied identically to both bands, so that pixels
  still correspond; a per-pixel loss needs no large context, and small crops make it cheap.
- Heads as 1x1 convolutions, i.e. SimSiam's MLPs applied per pixel: projection
  ``stem_width -> proj_dim -> proj_dim`` (BN, ReLU; BN without affine at the output, as in
  SimSiam) and a bottleneck predictor ``proj_dim -> proj_dim/4 -> proj_dim``. ``proj_dim`` 64 is
  eight times the tiny stem's width; larger is wasted on a 2-layer stem.
- Schedule ``steps`` 150, ``batch_size`` 32, AdamW lr 1e-3, chosen on validation pixels by
  ``nice -n 5 .venv/bin/python scripts/choose_pretrain_schedules.py schedules --methods unifeat``
  (issue 20) under the compute rule of every self-supervised method, 4800 images seen. Linear
  probe AA on the v3 embedded default's validation pixels (200 px/class, budget seeds 0-1),
  pretraining seed 0: lr 1e-3 batch 16 (300 steps) 43.3 (effective rank 15.7); lr 3e-3 batch 16
  43.9 (13.4); lr 1e-3 batch 32 45.3 (19.1). Inside ``sscl`` the stage keeps batch 16 and gets
  100 steps, a third of sscl's images (``methods.sscl``). Scale ``steps``/``batch_size`` on a GPU.
- Health gate (``UNIFEAT_HEALTH``): effective rank at least 4, std of the normalised pixel
  projections at least 0.25/sqrt(``proj_dim``) (``methods.monitors.collapse_checks``).
- Pairing (``band_pair_views``): the two bands are gathered as the two channels of one image, so
  one crop and one flip serve both, and the branches are split branch-first: ``z[0, k]`` and
  ``z[1, k]`` are image ``k``'s two bands at the same pixels. (Version 1 reshaped the (B, 2) pairs
  image-first and then split the batch in halves, comparing image ``k`` with image ``k + B/2``.)
- Collapse monitors (``methods.monitors``): std of the L2-normalised pixel projections and their
  effective rank; the rank sees dimensional collapse, which the std misses.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from lightly.loss import NegativeCosineSimilarity
from torch import nn

from bench.models.backbones import SegBackbone
from methods.augment import SAR_BANDS, random_crop, random_dihedral
from methods.monitors import collapse_checks, collapse_monitors, pixels_as_rows
from methods.registry import PretrainContext, PretrainMethod, register_method
from methods.training import StepOutput, TrainConfig, fit


@dataclass
class UniFeatConfig(TrainConfig):
    """UniFeat settings; see the module docstring for why each default."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {"paper": {"batch_size": 64, "crop": 64}}

    steps: int = 150
    batch_size: int = 32
    crop: int = 32
    p_cross: float = 0.5
    proj_dim: int = 64
    augment: bool = True


#: UniFeat's health gate: no (dimensional) collapse of the pixel projections. The rank floor is set
#: far below what healthy runs reach (results/README.md lists every run's figures), so that it
#: still catches pixels left with a handful of directions whatever the spread between seeds.
UNIFEAT_HEALTH = collapse_checks(
    "pixel projections",
    "proj_dim",
    min_rank=4.0,
    why_rank="is twice the collapse flag's: every pixel is a sample, so a batch's projections can "
    "span all proj_dim directions, and one left with a handful has collapsed dimensionally",
)


def pixel_mlp(cin: int, hidden: int, cout: int, out_bn: bool) -> nn.Sequential:
    """SimSiam's MLP head applied at every pixel (1x1 convolutions)."""
    layers: list[nn.Module] = [
        nn.Conv2d(cin, hidden, 1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Conv2d(hidden, cout, 1, bias=not out_bn),
    ]
    if out_bn:
        layers.append(nn.BatchNorm2d(cout, affine=False))
    return nn.Sequential(*layers)


def sample_band_pairs(
    batch: int, bands: int, p_cross: float, gen: torch.Generator, device: torch.device
) -> torch.Tensor:
    """(batch, 2) indices of two distinct bands per image; cross-modal with probability ``p_cross``.

    Non-cross pairs are uniform over all ordered pairs of distinct bands.
    """
    first = torch.randint(bands, (batch,), generator=gen, device=device)
    second = (first + torch.randint(1, bands, (batch,), generator=gen, device=device)) % bands
    sar = torch.randint(SAR_BANDS, (batch,), generator=gen, device=device)
    optical = torch.randint(SAR_BANDS, bands, (batch,), generator=gen, device=device)
    swap = torch.rand(batch, generator=gen, device=device) < 0.5
    cross_first, cross_second = torch.where(swap, optical, sar), torch.where(swap, sar, optical)
    cross = torch.rand(batch, generator=gen, device=device) < p_cross
    return torch.stack([torch.where(cross, cross_first, first), torch.where(cross, cross_second, second)], 1)


class UniFeatHeads(nn.Module):
    """Per-pixel projection and prediction heads on top of the stem (discarded after training)."""

    def __init__(self, stem_width: int, proj_dim: int) -> None:
        super().__init__()
        self.projector = pixel_mlp(stem_width, proj_dim, proj_dim, out_bn=True)
        self.predictor = pixel_mlp(proj_dim, max(1, proj_dim // 4), proj_dim, out_bn=False)


def band_pair_views(
    batch: torch.Tensor, pairs: torch.Tensor, crop: int, gen: torch.Generator, augment: bool
) -> torch.Tensor:
    """The two single-band views of every image: (2, B, 1, h, w), branch first.

    ``views[0, k]`` is band ``pairs[k, 0]`` of image ``k`` and ``views[1, k]`` band ``pairs[k, 1]``
    of the *same* image, cut by the same crop and turned by the same flip/rot90, so pixel (i, j)
    of both views is the same ground position: what the per-pixel loss compares.
    """
    b = batch.shape[0]
    x = batch[torch.arange(b, device=batch.device)[:, None], pairs]  # (B, 2, H, W): bands as channels
    x = random_crop(x, crop, gen)  # one crop per image, shared by its two bands
    if augment:
        x = random_dihedral(x, gen)  # one flip/rotation per image, shared by its two bands
    return x.transpose(0, 1).unsqueeze(2)


def branch_outputs(
    stem: nn.Module, heads: UniFeatHeads, views: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Projections ``z`` and predictions ``p`` of both branches, each (2, B, D, h', w').

    Both branches go through the stem in one batch (branch-major, so BatchNorm sees one set of
    statistics for both); ``z[0, k]`` and ``z[1, k]`` are the two bands of image ``k``.
    """
    two, b, _, h, w = views.shape
    z = heads.projector(stem(views.reshape(two * b, 1, h, w)))
    p = heads.predictor(z)
    return z.view(two, b, *z.shape[1:]), p.view(two, b, *p.shape[1:])


def train_unifeat(
    backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext, cfg: UniFeatConfig, label: str
) -> list[float]:
    """Run the UniFeat stage on ``backbone.stem`` in place; returns the per-step losses."""
    heads = UniFeatHeads(backbone.spec.stem_width, cfg.proj_dim)
    criterion = NegativeCosineSimilarity(dim=1)

    def loss_fn(batch: torch.Tensor, gen: torch.Generator) -> StepOutput:
        pairs = sample_band_pairs(batch.shape[0], batch.shape[1], cfg.p_cross, gen, batch.device)
        z, p = branch_outputs(backbone.stem, heads, band_pair_views(batch, pairs, cfg.crop, gen, cfg.augment))
        z = z.detach()  # stop-gradient on the targets (SimSiam)
        loss = 0.5 * (criterion(p[0], z[1]) + criterion(p[1], z[0]))
        return loss, collapse_monitors(pixels_as_rows(z[0]))

    params = [*backbone.stem.parameters(), *heads.parameters()]
    return fit(label, [backbone, heads], params, images, ctx, cfg, loss_fn, salt=1)


@register_method("unifeat")
class UniFeat(PretrainMethod):
    """SSCL stage 1 alone: cross-band pixel-wise SimSiam on the single-channel stem."""

    #: v2: the two branches are the two bands of the same image (v1 mis-paired them).
    #: v3: health gate, schedule chosen on validation (batch 32).
    version = "3"
    description = "SSCL stage 1 only (ablation): cross-band pixel-wise SimSiam on the band-shared stem"
    label = "UniFeat"
    role = "ablation"
    Config = UniFeatConfig
    health = UNIFEAT_HEALTH
    needs_band_stem = True

    def bare_forward(self, backbone: SegBackbone, device: torch.device) -> Callable[[], torch.Tensor]:
        """Two single-band crops per image through the stem and the per-pixel heads."""
        cfg: UniFeatConfig = self.config
        heads = UniFeatHeads(backbone.spec.stem_width, cfg.proj_dim).to(device)
        x = torch.rand(2 * cfg.batch_size, 1, cfg.crop, cfg.crop, device=device)
        return lambda: heads.predictor(heads.projector(backbone.stem(x)))

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Train the stem; fusion and trunk keep their seeded initialisation."""
        train_unifeat(backbone, images, ctx, self.config, self.name)
