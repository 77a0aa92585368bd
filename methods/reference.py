"""``raw`` and ``rf``: the reference rows, registered beside the methods so every table has them.

They pretrain nothing and use no backbone: the runner hands them to the reference protocols of
the same name (``bench/protocols/reference.py``: a per-pixel linear classifier and a random forest
on the 15 normalised bands), on the same budget pixels, seeds and test pixels as every method.
They answer the question a reader asks first: does any deep model beat standard pixel-wise ML?
"""

from __future__ import annotations

import numpy as np

from bench.models.backbones import SegBackbone
from methods.registry import PretrainContext, PretrainMethod, register_method


class ReferenceRow(PretrainMethod):
    """A column with no deep model; ``evaluated_by`` names its reference protocol."""

    needs_data = False

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        raise RuntimeError(f"{self.name} is a reference row: it is evaluated by a protocol, not pretrained")


@register_method("raw")
class RawBands(ReferenceRow):
    description = "reference: per-pixel linear classifier on the 15 normalised bands (no deep model)"
    label = "Raw bands"
    evaluated_by = "raw"


@register_method("rf")
class RandomForestRow(ReferenceRow):
    description = "reference: per-pixel random forest on the 15 normalised bands (no deep model)"
    label = "Random forest"
    evaluated_by = "rf"
