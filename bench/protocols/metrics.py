"""Scores from one global confusion matrix (DESIGN 6), and the mean ± std over seeds.

Per-class accuracy is recall: the diagonal over the row sums of a matrix whose rows are the true
classes. Summing per-patch scores would weight small patches wrongly, so every evaluation
accumulates a single matrix over all valid test pixels and derives every number from it: AA, OA,
and the segmentation scores readers of other land-cover papers compare against (per-class IoU,
mIoU, macro F1).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch

STD_NOTE = "mean ± sample std (ddof=1) over seeds, in %"


def confusion_update(
    cm: torch.Tensor, pred: torch.Tensor, target: torch.Tensor, ignore_index: int = 255
) -> None:
    """Add ``(target, pred)`` pairs to ``cm`` (K x K, rows = truth) in place, skipping ``ignore_index``."""
    k = cm.shape[0]
    target = target.reshape(-1).long()
    pred = pred.reshape(-1).long()
    valid = target != ignore_index
    cm += torch.bincount(target[valid] * k + pred[valid], minlength=k * k).reshape(k, k).to(cm)


def confusion_matrix(
    pred: np.ndarray, target: np.ndarray, num_classes: int, ignore_index: int = 255
) -> np.ndarray:
    """The K x K confusion matrix (rows = truth, int64) of two label arrays."""
    cm = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    confusion_update(cm, torch.as_tensor(np.asarray(pred)), torch.as_tensor(np.asarray(target)), ignore_index)
    return cm.numpy()


@dataclass(frozen=True)
class Scores:
    """Per-class accuracy, AA and OA (and IoU, mIoU, macro F1) as fractions; absent classes are NaN.

    A class absent from the truth has no recall, and its IoU and F1 would be 0 or undefined
    depending only on whether it was ever predicted, so all three per-class scores are NaN for it
    and AA, mIoU and macro F1 average the same set of classes: those present in the truth. The
    segmentation fields default to "not computed" so that scores read back from a store that
    predates them still build.
    """

    per_class: tuple[float, ...]
    aa: float
    oa: float
    iou: tuple[float, ...] = ()
    miou: float = float("nan")
    macro_f1: float = float("nan")

    @classmethod
    def from_confusion(cls, cm: np.ndarray) -> Scores:
        """AA averages only classes present in the truth, so an absent class cannot count as 0."""
        cm = np.asarray(cm, dtype=np.float64)
        support = cm.sum(axis=1)  # true pixels per class: TP + FN
        predicted = cm.sum(axis=0)  # TP + FP
        hits = np.diag(cm)
        present = support > 0
        with np.errstate(invalid="ignore", divide="ignore"):
            recall = np.where(present, hits / support, np.nan)
            iou = np.where(present, hits / (support + predicted - hits), np.nan)
            f1 = np.where(present, 2 * hits / (support + predicted), np.nan)
        total = cm.sum()
        if not np.any(present):
            return cls(tuple(float(r) for r in recall), float("nan"), float("nan"), tuple(iou.tolist()))
        return cls(
            per_class=tuple(float(r) for r in recall),
            aa=float(np.nanmean(recall)),
            oa=float(np.trace(cm) / total),
            iou=tuple(float(v) for v in iou),
            miou=float(np.nanmean(iou)),
            macro_f1=float(np.nanmean(f1)),
        )


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample std (ddof=1) over seeds; std is NaN with a single seed."""
    arr = np.asarray(values, dtype=np.float64)
    mean = float(np.nanmean(arr)) if arr.size else float("nan")
    std = float(np.nanstd(arr, ddof=1)) if np.sum(~np.isnan(arr)) > 1 else float("nan")
    return mean, std


def format_cell(values: Sequence[float]) -> str:
    """``74.6 ± 5.7`` in percent, one decimal; ``74.6`` alone for one seed."""
    mean, std = mean_std(values)
    if np.isnan(mean):
        return "n/a"
    return f"{100 * mean:.1f}" if np.isnan(std) else f"{100 * mean:.1f} ± {100 * std:.1f}"


def format_table(columns: Mapping[str, Sequence[Scores]], class_names: Sequence[str]) -> str:
    """The DESIGN 7 table: rows = classes + AA + OA, one column per method, with the std footnote."""
    rows = [
        (name, [[s.per_class[i] for s in runs] for runs in columns.values()])
        for i, name in enumerate(class_names)
    ]
    rows.append(("AA", [[s.aa for s in runs] for runs in columns.values()]))
    rows.append(("OA", [[s.oa for s in runs] for runs in columns.values()]))
    cells = [[format_cell(v) for v in vals] for _, vals in rows]
    label_w = max(len(name) for name, _ in rows)
    widths = [max(len(h), *(len(r[j]) for r in cells)) for j, h in enumerate(columns)]
    lines = [" " * label_w + "".join(f"  {h:>{w}}" for h, w in zip(columns, widths, strict=True))]
    for (name, _), row in zip(rows, cells, strict=True):
        lines.append(f"{name:<{label_w}}" + "".join(f"  {c:>{w}}" for c, w in zip(row, widths, strict=True)))
    seeds = sorted({len(runs) for runs in columns.values()})
    lines.append(f"({STD_NOTE}; n = {'/'.join(map(str, seeds))})")
    return "\n".join(lines)
