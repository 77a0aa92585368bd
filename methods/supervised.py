"""``supervised``: the positive control; cross-entropy on the pretraining pool's coarse ``lc`` labels.

SEN12MS's own baselines pretrain this way: its MODIS IGBP layer (500 m, blocky, about 75% right)
mapped to the DFC classes with DESIGN 2.1's lookup (``datasets.loader.IGBPAsDFC``; Savanna and
Snow/Ice, and IGBP 0, fall to the ignore index of the default classes). A per-pixel 1x1 head on
the backbone's features is trained with cross-entropy at every labelled pixel of random crops;
the head is discarded and the whole backbone transfers, as with every method.

It is a *control*, not a competitor (``role = "control"``: tables show it after the methods, never
ranked among them). It answers "could this protocol reward a good initialisation at all?": if
``supervised`` does not beat random initialisation, a self-supervised method's "no difference" says
nothing. It reads labels, the pool's own (never the labelled pool's or the test's), so it runs
unchanged on a real SEN12MS copy with its ``lc_*`` files (``--pretrain-data``).

Choices:

- the compute rule of every self-supervised method (issue 20, ``scripts/choose_pretrain_schedules.py``):
  4800 crops of 32 px seen, here 300 steps of 16, AdamW lr 1e-3 (``methods.training``), so the
  control is neither stronger by training longer nor weaker by training shorter. Until issue 21's
  second round it ran 150 steps of 16 (2400 crops, half the rule): its schedule was copied from
  ``simsiam`` before that moved to 150 steps of 32.
- exact crops and dihedral flips (``methods.augment``) applied to images and labels together (the
  labels travel as a 16th channel of the batch), no resampling, so labels stay class indices.
- logits upsampled from the backbone's coarse features to the crop, as the finetune protocol's
  head does; a crop whose pixels are all ignored contributes nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from bench.core.errors import BenchError
from bench.models.backbones import SegBackbone, upsample
from methods.augment import random_crop, random_dihedral
from methods.registry import PretrainContext, PretrainMethod, register_method
from methods.training import StepOutput, TrainConfig, fit

IGNORE = 255
#: Head width: DFC2020's 10 classes; any class config evaluates a subset, so its indices are below.
MAX_CLASSES = 10


@dataclass
class SupervisedConfig(TrainConfig):
    """Supervised-pretraining settings; see the module docstring for why each default."""

    steps: int = 300
    batch_size: int = 16
    crop: int = 32


class LabelledImages:
    """The pool's images with its labels as one more channel, drawn by :class:`methods.training.ImageBatches`
    like any image array (indexing, ``len``, ``nbytes``, conversion), without copying the pool."""

    def __init__(self, images: np.ndarray, labels: np.ndarray) -> None:
        if len(images) != len(labels) or images.shape[2:] != labels.shape[1:]:
            raise BenchError(
                f"supervised: {len(labels)} label maps of {labels.shape[1:]} for {len(images)} images "
                f"of {images.shape[2:]}; the pool's labels must match its images"
            )
        self.images, self.labels = images, labels
        self.shape = (images.shape[0], images.shape[1] + 1, *images.shape[2:])

    def __len__(self) -> int:
        return len(self.images)

    @property
    def nbytes(self) -> int:
        return int(self.images.nbytes + self.labels.nbytes * 2)

    def __getitem__(self, rows: Any) -> np.ndarray:
        x = np.asarray(self.images[rows], dtype=np.float32)
        return np.concatenate([x, np.asarray(self.labels[rows], dtype=np.float32)[:, None]], axis=1)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        return self[np.arange(len(self))].astype(dtype or np.float32)


@register_method("supervised")
class Supervised(PretrainMethod):
    """Cross-entropy on the pool's MODIS ``lc`` labels (mapped to DFC classes); the positive control."""

    description = "control: supervised pretraining on the pool's coarse lc labels (IGBP -> DFC)"
    label = "Supervised (lc)"
    role = "control"
    needs_labels = True
    Config = SupervisedConfig

    def bare_forward(self, backbone: SegBackbone, device: torch.device) -> Callable[[], torch.Tensor]:
        cfg: SupervisedConfig = self.config
        x = torch.rand(cfg.batch_size, backbone.spec.in_chans, cfg.crop, cfg.crop, device=device)
        return lambda: backbone.features(x)

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Train backbone + a 1x1 head at the pool's labelled pixels; the head is discarded."""
        cfg: SupervisedConfig = self.config
        if ctx.labels is None:
            raise BenchError(
                "supervised: the harness handed no pool labels; it trains on a SEN12MS pool's lc "
                "(--pretrain-data <SEN12MS folder with lc_* files>)"
            )
        head = nn.Conv2d(backbone.out_dim, MAX_CLASSES, 1)
        channels = images.shape[1]

        def loss_fn(batch: torch.Tensor, gen: torch.Generator) -> StepOutput:
            batch = random_dihedral(random_crop(batch, cfg.crop, gen), gen)
            x, y = batch[:, :channels], batch[:, channels].round().long()
            logits = upsample(head(backbone.features(x)), x.shape[-2:])
            loss = F.cross_entropy(logits.float(), y, ignore_index=IGNORE)
            labelled = y != IGNORE
            acc = (logits.argmax(1) == y)[labelled].float().mean() if labelled.any() else loss.new_zeros(())
            return loss, {"pixel_accuracy": acc.detach()}

        data = LabelledImages(images, ctx.labels)
        params = [*backbone.parameters(), *head.parameters()]
        fit(self.name, [backbone, head], params, data, ctx, cfg, loss_fn)  # type: ignore[arg-type]
