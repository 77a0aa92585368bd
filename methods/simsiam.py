"""``simsiam``: image-level SimSiam through ``lightly`` on the shared backbone.

Two augmented views (``methods.augment``: resized crop, flip/rot90, blur, per-band gain and
noise; no RGB colour jitter) go through the backbone; its per-pixel features are global-average
pooled, then lightly's ``SimSiamProjectionHead`` and ``SimSiamPredictionHead``; the loss is
lightly's ``NegativeCosineSimilarity``, symmetric, with a stop-gradient on the projections.
The whole backbone transfers; the heads are discarded.

Choices:

- ``proj_dim`` 512, ``pred_hidden`` 128: SimSiam's 2048/512 shape (bottleneck ratio 4) scaled to
  a 32- to 128-d backbone; the heads act on pooled vectors, so their cost is negligible.
- Schedule ``steps`` 150, ``batch_size`` 32 (64 views through the heads' BatchNorm), AdamW lr
  1e-3 (``methods.training``), chosen on validation pixels by
  ``nice -n 5 .venv/bin/python scripts/choose_pretrain_schedules.py schedules --methods simsiam``
  (issue 20) under the compute rule of every self-supervised method, 4800 images seen. Linear
  probe AA on the v3 embedded default's validation pixels (200 px/class, budget seeds 0-1),
  pretraining seed 0: lr 1e-3 batch 16 (300 steps, the previous batch) 49.4; lr 3e-3 batch 16
  46.7 (effective rank 3.4 of 16); lr 1e-3 batch 32 56.4 (rank 5.7). The larger batch gives the
  heads' BatchNorm more samples; raise it further on a GPU (SimSiam: 256+). ``crop`` 32 px of
  64 px patches keeps a step cheap on the CPU.
- Collapse monitors (``methods.monitors``): lightly's ``std_of_l2_normalized`` of the
  projections, ~1/sqrt(proj_dim) (0.044) when healthy, 0 when collapsed, and their effective
  rank (at most the batch size here), which also sees dimensional collapse.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch
from lightly.loss import NegativeCosineSimilarity
from lightly.models.modules import SimSiamPredictionHead, SimSiamProjectionHead
from torch import nn

from bench.models.backbones import SegBackbone
from methods.augment import AugmentConfig, augment_view
from methods.monitors import collapse_checks, collapse_monitors
from methods.registry import PretrainContext, PretrainMethod, register_method
from methods.training import StepOutput, TrainConfig, fit


@dataclass
class SimSiamConfig(TrainConfig):
    """SimSiam settings; see the module docstring for why each default."""

    presets: ClassVar[dict[str, dict[str, Any]]] = {"paper": {"batch_size": 64, "crop": 128}}

    steps: int = 150
    batch_size: int = 32
    crop: int = 32
    proj_dim: int = 512
    pred_hidden: int = 128
    augment: AugmentConfig = field(default_factory=AugmentConfig)


@register_method("simsiam")
class SimSiam(PretrainMethod):
    """SimSiam (Chen & He 2021) with lightly's heads and loss, on pooled per-pixel features."""

    description = "SimSiam via lightly: two multispectral-safe views, pooled backbone features"
    label = "SimSiam"
    Config = SimSiamConfig
    #: The projections of one batch of images (rank at most the batch size): the rank floor is the
    #: collapse flag's own threshold (``methods.monitors.COLLAPSED_BELOW_RANK``).
    health = collapse_checks(
        "image projections",
        "proj_dim",
        min_rank=2.0,
        why_rank="is the collapse flag's own: one batch of images spans at most the batch size and "
        "healthy runs reach only a few directions there (results/README.md), so the floor catches "
        "the collapse to one direction and no more",
    )
    #: v2: pools the coarse features (backbone v2), not their upsampled copy. v3: health gate,
    #: schedule chosen on validation (batch 32).
    version = "3"

    def bare_forward(self, backbone: SegBackbone, device: torch.device) -> Callable[[], torch.Tensor]:
        """Two views per image through the backbone (the pooled heads cost next to nothing)."""
        cfg: SimSiamConfig = self.config
        x = torch.rand(2 * cfg.batch_size, backbone.spec.in_chans, cfg.crop, cfg.crop, device=device)
        return lambda: backbone.features(x)

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Train the whole backbone with the symmetric SimSiam loss; the heads are discarded."""
        cfg: SimSiamConfig = self.config
        heads = nn.ModuleDict(
            {
                "projector": SimSiamProjectionHead(backbone.out_dim, cfg.proj_dim, cfg.proj_dim),
                "predictor": SimSiamPredictionHead(cfg.proj_dim, cfg.pred_hidden, cfg.proj_dim),
            }
        )
        criterion = NegativeCosineSimilarity()

        def loss_fn(batch: torch.Tensor, gen: torch.Generator) -> StepOutput:
            views = torch.cat([augment_view(batch, cfg.crop, cfg.augment, gen) for _ in range(2)])
            # pooled coarse features: the mean of their bilinear upsampling, without computing it
            z = heads["projector"](backbone.features(views).mean(dim=(2, 3)))
            p = heads["predictor"](z)
            z0, z1 = z.detach().chunk(2)
            p0, p1 = p.chunk(2)
            loss = 0.5 * (criterion(p0, z1) + criterion(p1, z0))
            return loss, collapse_monitors(z0)

        params = [*backbone.parameters(), *heads.parameters()]
        fit(self.name, [backbone, heads], params, images, ctx, cfg, loss_fn)
