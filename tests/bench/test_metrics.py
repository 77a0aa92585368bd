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
