"""``random``: no pretraining; the backbone keeps its seeded random initialisation (the baseline)."""

from __future__ import annotations

import numpy as np

from bench.models.backbones import SegBackbone
from methods.registry import PretrainContext, PretrainMethod, register_method


@register_method("random")
class RandomInit(PretrainMethod):
    """The baseline every method must beat: weights as ``torch.manual_seed(seed)`` left them."""

    description = "no pretraining: seeded random initialisation (the baseline)"
    label = "Baseline"
    baseline = True
    needs_data = False

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Nothing to learn: the harness seeded the initialisation before calling this."""
