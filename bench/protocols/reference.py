"""Reference rows (DESIGN 5): standard machine learning on the raw normalised bands, no deep model.

The seed notes that deep models often fail to beat standard methods on this data, so every table
carries two reference columns, evaluated on exactly the same budget pixels, seeds and test pixels
as the pretraining methods:

- ``raw``: a per-pixel softmax regression on the 15 normalised bands, fitted by the linear
  protocol's own code (:func:`bench.protocols.linear.fit_linear`, same standardisation, L-BFGS and
  weight decay): the linear probe of an identity "backbone".
- ``rf``: a seeded scikit-learn random forest per pixel
  (:func:`bench.protocols.pixel_classifiers.fit_random_forest`).

Neither looks at spatial context, which is what makes them a floor for the deep models. They are
registered as methods too (``methods/reference.py``) so that ``bench run --method raw`` and the
sweep treat them like any other column; the runner sends them here instead of pretraining.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from bench.protocols.budget import LabelBudget
from bench.protocols.linear import LinearConfig, fit_linear
from bench.protocols.pixel_classifiers import FOREST_DEPTH, FOREST_TREES, fit_random_forest
from bench.protocols.registry import EvalProtocol, FitJob, register_protocol
from bench.protocols.validation import Predict


def budget_pixels(images: np.ndarray, patch: np.ndarray, row: np.ndarray, col: np.ndarray) -> np.ndarray:
    """(n, C) float32 band values of the listed pixels, read patch by patch (memmap friendly)."""
    out = np.empty((patch.size, images.shape[1]), dtype=np.float32)
    for p in np.unique(patch):
        at = np.flatnonzero(patch == p)
        out[at] = np.asarray(images[p], dtype=np.float32)[:, row[at], col[at]].T
    return out


def training_pixels(ds: Any, budget: LabelBudget) -> tuple[np.ndarray, np.ndarray]:
    return budget_pixels(ds.labelled.images, budget.patch, budget.row, budget.col), budget.label


def validation_pixels(ds: Any, budget: LabelBudget) -> tuple[np.ndarray, np.ndarray]:
    return budget_pixels(
        ds.labelled.images, budget.val_patch, budget.val_row, budget.val_col
    ), budget.val_label


def band_pixels(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H, W, C): every pixel's bands as a feature vector."""
    return x.float().permute(0, 2, 3, 1)


@register_protocol("raw")
class RawBands(EvalProtocol):
    """Linear probe on the normalised bands: the linear protocol with an identity backbone."""

    description = "reference: per-pixel linear classifier on the 15 normalised bands (linear-probe code)"
    Config = LinearConfig
    reference = True

    def fit(self, job: FitJob) -> Predict:
        x, y = training_pixels(job.ds, job.budget)
        k = job.ds.classes.num_classes
        probe = fit_linear(torch.from_numpy(x).to(job.device), torch.from_numpy(y).to(job.device), k, job.cfg)
        return lambda batch: probe.predict(band_pixels(batch))


@dataclass(frozen=True)
class ForestConfig:
    """Random-forest settings (see :mod:`bench.protocols.pixel_classifiers` for why these sizes)."""

    trees: int = FOREST_TREES
    max_depth: int = FOREST_DEPTH


@register_protocol("rf")
class RandomForest(EvalProtocol):
    """Per-pixel random forest on the normalised bands, seeded by the evaluation seed."""

    description = "reference: per-pixel random forest on the 15 normalised bands (scikit-learn)"
    Config = ForestConfig
    reference = True

    def fit(self, job: FitJob) -> Predict:
        x, y = training_pixels(job.ds, job.budget)
        forest = fit_random_forest(x, y, job.seed, job.cfg.trees, job.cfg.max_depth)

        def predict(batch: torch.Tensor) -> torch.Tensor:
            pixels = band_pixels(batch)
            flat = pixels.reshape(-1, pixels.shape[-1]).cpu().numpy()
            return torch.from_numpy(forest.predict(flat)).view(pixels.shape[:-1]).to(batch.device)

        return predict
