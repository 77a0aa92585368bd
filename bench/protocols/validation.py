"""Scoring a predictor: on every valid test pixel, or only at the budget's validation pixels.

Selection, early stopping and tuning may read only the budget's validation pixels.

The budget (:mod:`bench.protocols.budget`) holds a few labelled pixels per class on held-out
validation patches. Models predict those patches whole (context matters for a segmentation
network) and are scored only at the budgeted pixels: the dense labels of the validation patches
are never read.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from bench.core.device import as_input, host_tensor
from bench.core.progress import progress_of
from bench.protocols.budget import LabelBudget
from bench.protocols.metrics import confusion_update

#: ``predict(x) -> (B, H, W)`` class indices for a (B, C, H, W) float batch on the device.
Predict = Callable[[torch.Tensor], torch.Tensor]


def fewest_validation_pixels(budget: LabelBudget) -> int:
    """The smallest number of validation pixels of a class that has any (0 without validation pixels).

    It sets the resolution of the validation AA: with ``v`` pixels in each of ``C`` classes, one
    pixel moves AA by ``100 / (C v)`` points (:func:`can_rank_checkpoints`).
    """
    counts = np.bincount(np.asarray(budget.val_label, dtype=np.int64))
    counts = counts[counts > 0]
    return int(counts.min()) if counts.size else 0


def can_rank_checkpoints(budget: LabelBudget, min_pixels: int) -> bool:
    """Whether the budget's validation pixels are enough to choose between checkpoints: every class
    with validation pixels has at least ``min_pixels`` of them (``FinetuneConfig.min_val_pixels``).

    Why a floor: validation AA from ``v`` pixels per class moves in steps of ``100 / (C v)`` points
    and its sampling sd is about ``50 / sqrt(C v)`` points at 50% recall; checkpoint selection takes
    the best of ``steps / eval_every`` evaluations (20 by default), which on noise alone lifts the
    chosen one well above its true value. At 10 px/class (2 validation pixels per class under the
    80/20 split, 16 in all for 8 classes) a step is 6.25 points and the sd about 12.5 points, far
    above the few points that separate checkpoints of one run, so the choice is a draw of noise.
    """
    return fewest_validation_pixels(budget) >= min_pixels


@torch.no_grad()
def validation_confusion(
    predict: Predict,
    images: np.ndarray,
    budget: LabelBudget,
    num_classes: int,
    device: torch.device,
    chunk: int = 8,
) -> np.ndarray:
    """(K, K) confusion of ``predict`` at the budget's validation pixels of the labelled pool ``images``."""
    patches = np.unique(budget.val_patch)
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    for start in range(0, patches.size, chunk):
        rows = patches[start : start + chunk]
        pred = predict(as_input(host_tensor(images[rows]), device)).cpu().numpy()
        local = np.searchsorted(rows, budget.val_patch)
        inside = (local < rows.size) & (rows[np.minimum(local, rows.size - 1)] == budget.val_patch)
        guess = pred[local[inside], budget.val_row[inside], budget.val_col[inside]]
        np.add.at(cm, (budget.val_label[inside], guess), 1)
    return cm


@torch.no_grad()
def confusion_on_split(
    predict: Predict,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    device: torch.device,
    batch_size: int = 8,
    progress: bool = False,
) -> np.ndarray:
    """Global (K, K) confusion of ``predict`` over every valid pixel of ``images``, batch by batch:
    nothing of the split is kept beyond the counts (disk and memory independent of its size)."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64, device=device)
    for start in progress_of(range(0, len(images), batch_size), desc="test", unit="batch", enabled=progress):
        pred = predict(as_input(host_tensor(images[start : start + batch_size]), device))
        confusion_update(cm, pred, host_tensor(labels[start : start + batch_size]).to(device))
    return cm.cpu().numpy()
