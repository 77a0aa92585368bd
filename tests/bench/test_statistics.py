"""Paired tests against hand computations: t intervals, exact sign-flip p-values, Holm, the seed
count that can reach significance, variance by source and the patch bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.report.aggregate import TABLE_KEYS, long_form
from bench.report.statistics import (
    K1_NOTE,
    ONE_PER_PRETRAINING_NOTE,
    bootstrap_patches,
    compare_to_baseline,
    holm,
    min_seeds,
    paired_comparisons,
    paired_difference,
    seed_summary,
    sign_flip_p,
    variance_components,
)
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
    # sign flips of (0.05, 0.10, -0.01, 0.10), observed sum 0.24: only (+,+,-,+) and (+,+,+,+)
    # (0.26) and their negatives reach |sum| >= 0.24: 4 of 16
    assert diff.p == pytest.approx(4 / 16)


def test_pairs_only_seeds_both_have() -> None:
    a = pd.Series({1: 0.7, 2: 0.8, 3: 0.9})
    b = pd.Series({0: 0.1, 1: 0.5, 2: 0.6, 3: float("nan")})
    diff = paired_difference(a, b)  # seeds 1 and 2 only: differences 0.2, 0.2
    assert diff.n == 2 and diff.mean == pytest.approx(0.2) and diff.low == pytest.approx(0.2)
    single = paired_difference(a, pd.Series({1: 0.5}))
    assert single.n == 1 and math.isnan(single.low) and single.p == 1.0


def test_exact_sign_flip_p_by_hand() -> None:
    # sums of +-1 +-2 +-3: 6, 4, 2, 0, 0, -2, -4, -6; |sum| >= 6 for 2 of 8
    assert sign_flip_p([1, 2, 3]) == 0.25
    # +-1 +-1 in {2, 0, 0, -2} plus +-2 +-0.5 in {2.5, 1.5, -1.5, -2.5}: |sum| >= 2.5 for
    # 4.5, 3.5, -3.5, -4.5 and 2.5, -2.5 twice: 8 of 16
    assert sign_flip_p([1, -1, 2, 0.5]) == 0.5
    # all of one sign: the smallest attainable p is 2 / 2^n, below 0.05 from n = 6 only
    assert sign_flip_p([0.1] * 5) == 2 / 32 == 0.0625
    assert sign_flip_p([0.3, 0.1, 0.2, 0.1, 0.4, 0.2]) == 2 / 64
    assert sign_flip_p([0.0, 0.0, 0.0]) == 1.0  # no difference at all
    assert math.isnan(sign_flip_p([]))
    # the 0.1 + 0.2 = 0.30000000000000004 kind of rounding does not drop the observed vector
    assert sign_flip_p([0.1, 0.2, -0.3 + 1e-17]) == sign_flip_p([1, 2, -3])


def test_holm_by_hand() -> None:
    # sorted 0.01, 0.03, 0.04 (m = 3): 3 x 0.01 = 0.03; max(0.03, 2 x 0.03) = 0.06; max(0.06, 0.04)
    adjusted = holm([0.01, 0.04, 0.03, float("nan")])
    assert adjusted[:3] == pytest.approx([0.03, 0.06, 0.06]) and math.isnan(adjusted[3])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([]).size == 0


def test_the_default_seed_count_can_reach_corrected_significance() -> None:
    from bench.cli.common import DEFAULT_SEEDS

    assert min_seeds(1) == 6  # 2 / 64 = 0.031 < 0.05 <= 2 / 32
    assert min_seeds(3) == 7  # 6 / 128 = 0.047
    assert min_seeds(8) == DEFAULT_SEEDS == 9  # 16 / 512 = 0.031; 16 / 256 = 0.0625
    assert min_seeds(12) == 9 and min_seeds(13) == 10  # 24 / 512 = 0.047; 26 / 512 = 0.051
    # and the test itself agrees: 9 differences of one sign, 8 comparisons, all of them significant
    frame = pd.DataFrame({m: np.arange(9) + (1.0 if m else 0.0) for m in range(9)})
    assert compare_to_baseline(frame, 0)["significant"].all()
    assert not compare_to_baseline(frame.iloc[:8], 0)["significant"].any()


#: Per-seed paired differences against the Baseline (7 seeds) of three constructed methods.
DIFFS = {
    # all seven positive: p = 2 / 128 = 0.015625
    "simsiam": [0.01, 0.02, 0.03, 0.01, 0.02, 0.03, 0.01],
    # six of +0.03 and one -0.01: observed sum 0.17; |sum| >= 0.17 for all +0.03 with the -0.01
    # either way (0.17, 0.19) and their negatives; flipping any 0.03 drops to <= 0.13: 4 / 128
    "sscl": [0.03, 0.03, 0.03, 0.03, 0.03, 0.03, -0.01],
    # six of +-0.01 summing to 0 plus 0.005: every |sum| >= 0.005, p = 1
    "core": [0.01, -0.01, 0.01, -0.01, 0.01, -0.01, 0.005],
}


def constructed_runs() -> pd.DataFrame:
    """make_runs with every score of method i shifted so that method - random = DIFFS[method]."""
    methods = ("random", *DIFFS)
    jitter = {
        (m, s): d - 0.1 * i  # make_runs adds 0.1 x the method's index to every score
        for i, m in enumerate(methods)
        if m in DIFFS
        for s, d in enumerate(DIFFS[m])
    }
    return make_runs(methods=methods, budgets=(200,), seeds=tuple(range(7)), jitter=jitter)


def test_constructed_scores_exact_p_and_holm() -> None:
    paired = paired_comparisons(long_form(constructed_runs()), "random", TABLE_KEYS)
    aa = paired[paired["metric"] == "AA"].set_index("method")
    assert aa.loc["simsiam", "p_value"] == pytest.approx(2 / 128)
    assert aa.loc["sscl", "p_value"] == pytest.approx(4 / 128)
    assert aa.loc["core", "p_value"] == 1.0
    # Holm over m = 3: 3 x 2/128 = 0.046875; max(0.046875, 2 x 4/128 = 0.0625); max(0.0625, 1)
    assert aa["p_holm"].to_dict() == pytest.approx({"simsiam": 0.046875, "sscl": 0.0625, "core": 1.0})
    assert (aa["comparisons"] == 3).all() and (aa["pairs"] == 7).all()
    # sscl passes uncorrected (0.031) but not after correction: not significant
    assert aa["significant"].to_dict() == {"simsiam": True, "sscl": False, "core": False}
    assert aa.loc["sscl", "mean_diff"] == pytest.approx(0.17 / 7)
    # every score of a run moves together here, so every row (each class, AA, OA, ...) agrees
    assert set(paired["metric"].astype(str)) == {"accuracy", "AA", "OA", "mIoU", "macroF1"}
    assert (paired["significant"] == (paired["method"] == "simsiam")).all()


def test_seed_summary_for_parent_runs() -> None:
    summary = seed_summary([0.60, 0.70, 0.65, 0.80, float("nan")])
    assert summary["n"] == 4 and summary["mean"] == pytest.approx(0.6875)
    assert summary["std"] == pytest.approx(np.std([0.60, 0.70, 0.65, 0.80], ddof=1))
    half = T_975_3 * summary["std"] / 2
    assert summary["ci_low"] == pytest.approx(0.6875 - half, abs=1e-4)
    assert math.isnan(seed_summary([0.5])["std"])


def test_variance_by_source_by_hand() -> None:
    # groups (pretraining seeds) 0: 1, 3; 1: 5, 7; 2: 2, 4 -> means 2, 6, 3; grand mean 11/3
    values = pd.Series([1.0, 5.0, 2.0, 3.0, 7.0, 4.0])
    groups = pd.Series([0, 1, 2, 0, 1, 2])
    out = variance_components(values, groups)
    msw = 6 * 1.0 / (6 - 3)  # every value is 1 from its group mean
    msb = 2 * ((2 - 11 / 3) ** 2 + (6 - 11 / 3) ** 2 + (3 - 11 / 3) ** 2) / 2
    n0 = (6 - 12 / 6) / 2
    between = (msb - msw) / n0  # (8.667 - 2) / 2 = 3.333
    assert out["K"] == 3 and out["N"] == 6 and out["note"] == ""
    assert out["within_sd"] == pytest.approx(math.sqrt(msw))
    assert out["between_sd"] == pytest.approx(math.sqrt(between))
    assert out["pretrain_share"] == pytest.approx(between / (between + msw))  # 0.625
    one = variance_components(values, pd.Series([0] * 6))
    assert one["note"] == K1_NOTE and math.isnan(one["between_sd"]) and one["within_sd"] > 0
    paired_once = variance_components(values[:3], groups[:3])
    assert paired_once["note"] == ONE_PER_PRETRAINING_NOTE and math.isnan(paired_once["within_sd"])
    # no spread between the groups: the between part is 0 (truncated, never negative)
    flat = variance_components(pd.Series([1.0, 3.0, 1.0, 3.0]), pd.Series([0, 0, 1, 1]))
    assert flat["between_sd"] == 0.0 and flat["pretrain_share"] == 0.0


def test_bootstrap_resamples_patches() -> None:
    good = np.array([[10, 0], [0, 10]])
    bad = np.array([[0, 10], [10, 0]])
    same = bootstrap_patches(np.stack([good] * 5), draws=200)
    assert same["OA"] == pytest.approx((1.0, 1.0)) and same["AA"] == pytest.approx((1.0, 1.0))
    mixed = bootstrap_patches(np.stack([good, bad] * 10), draws=2000, seed=1)
    low, high = mixed["OA"]
    # 20 patches, half perfect: OA = share of good patches drawn, about 0.5 +- 1.96 x sqrt(0.25 / 20)
    assert 0.25 < low < 0.5 < high < 0.75
    with pytest.raises(ValueError, match="per-patch confusions"):
        bootstrap_patches(good)
