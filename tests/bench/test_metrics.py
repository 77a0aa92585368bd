"""Metrics against a confusion matrix computed by hand."""

from __future__ import annotations

import math

import numpy as np

from bench.protocols.metrics import Scores, confusion_matrix, format_table, mean_std


def test_confusion_and_scores_by_hand() -> None:
    target = np.array([0, 0, 0, 1, 1, 2, 2, 2, 2, 255])
    pred = np.array([0, 0, 1, 1, 0, 2, 2, 0, 2, 1])
    cm = confusion_matrix(pred, target, 4)
    expected = np.array([[2, 1, 0, 0], [1, 1, 0, 0], [1, 0, 3, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(cm, expected)
    s = Scores.from_confusion(cm)
    assert s.per_class[:3] == (2 / 3, 1 / 2, 3 / 4) and math.isnan(s.per_class[3])  # class 3 absent
    assert math.isclose(s.aa, (2 / 3 + 1 / 2 + 3 / 4) / 3)
    assert math.isclose(s.oa, 6 / 9)


def test_iou_and_f1_by_hand() -> None:
    """IoU = TP / (TP + FP + FN), F1 = 2TP / (2TP + FP + FN), averaged over classes in the truth."""
    cm = np.array([[2, 1, 0, 0], [1, 1, 0, 0], [1, 0, 3, 0], [0, 0, 0, 0]])
    s = Scores.from_confusion(cm)
    iou = (2 / (2 + 2 + 1), 1 / (1 + 1 + 1), 3 / (3 + 0 + 1))
    f1 = (4 / (4 + 2 + 1), 2 / (2 + 1 + 1), 6 / (6 + 0 + 1))
    np.testing.assert_allclose(s.iou[:3], iou)
    assert math.isnan(s.iou[3])  # absent class: undefined, not 0
    assert math.isclose(s.miou, sum(iou) / 3) and math.isclose(s.macro_f1, sum(f1) / 3)


def test_absent_class_predicted_counts_against_the_true_class_only() -> None:
    """Pixels predicted as an absent class lower their true class's IoU; the absent class stays NaN."""
    s = Scores.from_confusion(np.array([[3, 1], [0, 0]]))
    assert s.iou[0] == 3 / 4 and math.isnan(s.iou[1]) and s.miou == 3 / 4
    assert math.isclose(s.macro_f1, 6 / 7)


def test_mean_std_is_sample_std() -> None:
    mean, std = mean_std([0.5, 0.7, 0.9])
    assert math.isclose(mean, 0.7) and math.isclose(std, 0.2)
    assert math.isnan(mean_std([0.5])[1])


def test_table_layout() -> None:
    s = Scores((0.5, 1.0), 0.75, 0.8)
    text = format_table({"Baseline": [s, Scores((0.7, 1.0), 0.85, 0.9)]}, ("Forest", "Water"))
    lines = text.splitlines()
    assert lines[0].split() == ["Baseline"]
    assert lines[1].split() == ["Forest", "60.0", "±", "14.1"]
    assert lines[3].startswith("AA") and lines[4].startswith("OA")
    assert "ddof=1" in lines[-1]
