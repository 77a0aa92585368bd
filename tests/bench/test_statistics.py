"""Paired tests against hand computations: t intervals, exact sign-flip p-values, Holm, the seed
count that can reach significance, the test at the level of pretraining runs when seeds share them,
variance by source and the patch bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from bench.report.aggregate import TABLE_KEYS, long_form
from bench.report.statistics import (
    K1_NOTE,
    ONE_PER_PRETRAINING_NOTE,
    RUN_UNIT,
    SEED_UNIT,
    bootstrap_patches,
    clusters,
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
#: The same, 2 degrees of freedom.
T_975_2 = 4.303


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
    """make_runs with every score of method i shifted so that method - random = DIFFS[method];
    each seed its own pretraining run (K = n), so the seeds are the test's units."""
    methods = ("random", *DIFFS)
    jitter = {
        (m, s): d - 0.1 * i  # make_runs adds 0.1 x the method's index to every score
        for i, m in enumerate(methods)
        if m in DIFFS
        for s, d in enumerate(DIFFS[m])
    }
    return make_runs(methods=methods, budgets=(200,), seeds=tuple(range(7)), jitter=jitter, pretrain_k=None)


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


#: Per-seed paired differences (9 seeds) whose pretraining run is seed mod 3: run 0 (seeds 0, 3,
#: 6) helped a lot, run 1 (1, 4, 7) a little, run 2 (2, 5, 8) hurt a little, every seed is positive
#: but the third run's mean is near zero. Run means: 0.05, 0.01, 0.002.
CLUSTERED = [0.05, 0.01, 0.001, 0.04, 0.012, 0.003, 0.06, 0.008, 0.002]


def test_clusters_link_seeds_that_share_a_pretraining_run() -> None:
    seeds = pd.Index(range(9))
    by3 = pd.Series(seeds % 3, index=seeds)
    own = pd.Series(seeds, index=seeds)
    none = pd.Series(np.nan, index=seeds)
    # method K = 3 against a Baseline with its own init per seed: the 3 runs
    assert clusters(by3, own).tolist() == [0, 1, 2] * 3
    # a reference row (no pretraining) against a Baseline at K = 3: the Baseline's 3 inits
    assert clusters(none, by3).tolist() == [0, 1, 2] * 3
    # K = n on both sides, or nothing known: every seed its own
    assert clusters(own, own).nunique() == 9 and clusters(none, none).nunique() == 9
    # method K = 3 and Baseline K = 2 link transitively: one cluster of all 9
    assert clusters(by3, pd.Series(seeds % 2, index=seeds)).nunique() == 1


def test_seeds_sharing_pretraining_runs_are_tested_over_the_run_means_by_hand() -> None:
    seeds = pd.Index(range(9))
    d = pd.Series(CLUSTERED, index=seeds)
    base = pd.Series(0.5, index=seeds)
    groups = clusters(pd.Series(seeds % 3, index=seeds), pd.Series(seeds % 3, index=seeds))
    at_runs = paired_difference(base + d, base, groups=groups)
    means = [0.05, 0.01, 0.002]  # (0.05 + 0.04 + 0.06) / 3, (0.01 + 0.012 + 0.008) / 3, 0.006 / 3
    mean = sum(means) / 3  # 0.020667
    sd = math.sqrt(sum((m - mean) ** 2 for m in means) / 2)
    assert (at_runs.unit, at_runs.units, at_runs.n) == (RUN_UNIT, 3, 9)
    assert at_runs.mean == pytest.approx(mean)
    assert at_runs.low == pytest.approx(mean - T_975_2 * sd / math.sqrt(3), abs=1e-4)
    assert at_runs.high == pytest.approx(mean + T_975_2 * sd / math.sqrt(3), abs=1e-4)
    # three run means of one sign: 2 of the 2^3 sign vectors reach |sum| = 0.062, p = 0.25
    assert at_runs.p == pytest.approx(2 / 8)
    # as if the 9 seeds were independent (every seed positive): 2 / 512, what the old test claimed
    at_seeds = paired_difference(base + d, base)
    assert (at_seeds.unit, at_seeds.units) == (SEED_UNIT, 9) and at_seeds.p == pytest.approx(2 / 512)
    # with each seed its own run, the runs are the seeds: the seed-level test
    assert paired_difference(base + d, base, groups=pd.Series(seeds, index=seeds)) == at_seeds


def test_unequal_clusters_weigh_each_run_alike() -> None:
    # 5 seeds over K = 2 runs (seed mod 2): run 0 = seeds 0, 2, 4; run 1 = seeds 1, 3
    seeds = pd.Index(range(5))
    d = pd.Series([0.03, -0.01, 0.06, -0.03, 0.0], index=seeds)
    out = paired_difference(d, pd.Series(0.0, index=seeds), groups=pd.Series(seeds % 2, index=seeds))
    assert out.units == 2 and out.mean == pytest.approx((0.03 + -0.02) / 2)  # not the seed mean 0.01
    # run means +0.03 and -0.02, observed |sum| 0.01; the 4 sign vectors give |sums| 0.01, 0.05, 0.05,
    # 0.01, all >= 0.01: p = 1
    assert out.p == 1.0


def test_a_table_at_k_below_n_marks_nothing_the_run_level_test_does_not_support() -> None:
    """9 seeds, every difference positive, over 3 pretraining runs (seed mod 3, the Baseline's
    initialisation alike): the seed-level test would mark it (2 / 512), the run-level one cannot
    (2 / 8); the same scores with one run per seed are marked."""
    from bench.report.table import build_tables, render

    jitter = {("simsiam", s): d - 0.1 for s, d in enumerate(CLUSTERED)}
    clustered = make_runs(("random", "simsiam"), (200,), tuple(range(9)), jitter=jitter, pretrain_k=3)
    paired = paired_comparisons(long_form(clustered), "random", TABLE_KEYS)
    aa = paired[paired["metric"] == "AA"].iloc[0]
    assert (aa["unit"], aa["units"], aa["pairs"]) == (RUN_UNIT, 3, 9)
    assert aa["p_value"] == pytest.approx(0.25) and not paired["significant"].any()
    tables = build_tables(long_form(clustered))
    text = render(tables, "md")
    assert "**" not in text  # nothing marked: no cell the run-level test does not support
    assert "sign-flip test over the means of the paired seeds per pretraining run (3 runs for up to 9" in text
    assert "with 3 pretraining runs no cell can be marked" in text
    for table in tables:  # and every mark there is (none) is one the run-level test gives
        marked = [c.mark for _, cells in table.rows for c in cells if c.mark]
        assert len(marked) == 0 and not table.comparisons["significant"].any()
    independent = make_runs(("random", "simsiam"), (200,), tuple(range(9)), jitter=jitter, pretrain_k=None)
    again = paired_comparisons(long_form(independent), "random", TABLE_KEYS)
    assert (again["unit"] == SEED_UNIT).all() and (again["units"] == 9).all()
    assert again["significant"].all()  # 2 / 512 with one comparison
    assert "**" in render(build_tables(long_form(independent)), "md")


def test_each_comparison_is_clustered_by_the_runs_it_uses() -> None:
    """SimSiam with its own run per seed, SSCL reusing 3 runs, the Baseline one init per seed: only
    SSCL's comparison is at the run level, and the footer says so for that column alone."""
    from bench.report.table import build_tables

    jitter = {
        (m, s): d - 0.1 * (i + 1) for i, m in enumerate(("simsiam", "sscl")) for s, d in enumerate(CLUSTERED)
    }
    runs = make_runs(("random", "simsiam", "sscl"), (200,), tuple(range(9)), jitter=jitter, pretrain_k=None)
    runs.loc[runs["method"] == "sscl", "pretrain_seed"] = runs["seed"] % 3
    paired = paired_comparisons(long_form(runs), "random", TABLE_KEYS)
    aa = paired[paired["metric"] == "AA"].set_index("method")
    assert aa.loc["simsiam", ["unit", "units"]].tolist() == [SEED_UNIT, 9]
    assert aa.loc["sscl", ["unit", "units"]].tolist() == [RUN_UNIT, 3]
    # simsiam 2 / 512 and sscl 2 / 8: Holm over 2, simsiam 0.0078 marked, sscl 0.25 not
    assert aa["significant"].to_dict() == {"simsiam": True, "sscl": False}
    assert "(3 runs for up to 9 seeds" in build_tables(long_form(runs))[0].footer()
    assert (
        "for 1 of the 2 columns, over paired seeds for the others"
        in build_tables(long_form(runs))[0].footer()
    )


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
