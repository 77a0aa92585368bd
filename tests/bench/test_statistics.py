"""Paired differences and best/tie marks against hand computations."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from bench.report.aggregate import long_form
from bench.report.statistics import BEST, TIE, best_marks, paired_difference, paired_vs_baseline
from tests.bench.test_aggregate import make_runs

#: Student's t, 97.5 % quantile, 3 degrees of freedom (from a printed t table).
T_975_3 = 3.182


def test_paired_interval_by_hand() -> None:
    a = pd.Series([0.60, 0.70, 0.65, 0.80])
    b = pd.Series([0.55, 0.60, 0.66, 0.70])
    # differences 0.05, 0.10, -0.01, 0.10: mean 0.06; squared deviations sum to 0.0082
    diff = paired_difference(a, b)
    half = T_975_3 * math.sqrt(0.0082 / 3) / math.sqrt(4)
    assert diff.n == 4 and diff.mean == pytest.approx(0.06)
    assert diff.low == pytest.approx(0.06 - half, abs=1e-4) and diff.high == pytest.approx(
        0.06 + half, abs=1e-4
    )
    assert not diff.excludes_zero  # [-0.023, 0.143]


def test_pairs_only_seeds_both_have() -> None:
    a = pd.Series({1: 0.7, 2: 0.8, 3: 0.9})
    b = pd.Series({0: 0.1, 1: 0.5, 2: 0.6, 3: float("nan")})
    diff = paired_difference(a, b)  # seeds 1 and 2 only: differences 0.2, 0.2
    assert diff.n == 2 and diff.mean == pytest.approx(0.2) and diff.low == pytest.approx(0.2)
    single = paired_difference(a, pd.Series({1: 0.5}))
    assert single.n == 1 and math.isnan(single.low) and not single.excludes_zero


def test_best_only_when_the_runner_up_is_beaten_on_every_draw() -> None:
    clear = pd.DataFrame({"a": [0.80, 0.82, 0.81], "b": [0.70, 0.71, 0.72], "c": [0.5, 0.5, 0.5]})
    assert best_marks(clear) == {"a": BEST}
    close = clear.assign(b=[0.84, 0.70, 0.83])  # b: mean 0.79, beats a on two seeds of three
    assert best_marks(close) == {"a": TIE, "b": TIE}
    assert best_marks(clear[["a"]]) == {}  # nothing to compare with
    assert best_marks(clear.iloc[:1]) == {}  # one seed: no interval, no claim


def test_paired_frame_against_the_baseline() -> None:
    jitter = {("sscl", 0): -0.03, ("sscl", 1): 0.02, ("sscl", 2): 0.04}
    paired = paired_vs_baseline(long_form(make_runs(budgets=(200,), jitter=jitter)), "random")
    oa = paired.set_index("metric").loc["OA"]
    # OA: sscl 0.50 + seed/100 + jitter, random 0.60 + seed/100: differences -0.13, -0.08, -0.06
    assert oa["method"] == "sscl" and oa["baseline"] == "random" and oa["pairs"] == 3
    assert oa["mean_diff"] == pytest.approx(-0.09)
    assert oa["ci_high"] < 0 < oa["ci_high"] - oa["ci_low"]
    assert set(paired["metric"]) == {"AA", "OA", "mIoU", "macroF1"}
    assert paired_vs_baseline(long_form(make_runs(methods=("sscl",))), "random").empty
