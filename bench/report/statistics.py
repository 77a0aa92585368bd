"""Paired comparisons over seeds: methods share label draws seed by seed (DESIGN 6).

Seed ``s`` of every method trains on the same labelled pixels and is scored on the same test
pixels, so the label-draw noise that dominates the ± of a single column cancels in the per-seed
difference of two methods. The honest interval for "A beats B" is therefore a t interval over the
seed-paired differences (only seeds both have; ``n - 1`` degrees of freedom), not a comparison of
two overlapping mean ± std cells. With fewer than two pairs there is no interval (NaN).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy import stats

from bench.report.aggregate import SEGMENTATION_METRICS, SUMMARY_METRICS, TABLE_KEYS, with_references
from methods.registry import baseline_method

CONFIDENCE = 0.95
BEST, TIE = "best", "tie"


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over the seeds both have, with its t interval at :data:`CONFIDENCE`."""

    mean: float
    low: float
    high: float
    n: int

    @property
    def excludes_zero(self) -> bool:
        """True when the interval lies wholly on one side of 0 (False when it is undefined)."""
        return self.low > 0 or self.high < 0


def paired_difference(a: pd.Series, b: pd.Series, confidence: float = CONFIDENCE) -> PairedDifference:
    """``a - b`` paired by index (the seed); seeds missing or NaN in either are left out."""
    diff = (a - b).dropna().to_numpy(dtype=np.float64)  # aligned on the index: unshared seeds are NaN
    n = len(diff)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0)
    mean = float(diff.mean())
    if n < 2:
        return PairedDifference(mean, math.nan, math.nan, n)
    half = float(stats.t.ppf((1 + confidence) / 2, n - 1) * diff.std(ddof=1) / math.sqrt(n))
    return PairedDifference(mean, mean - half, mean + half, n)


def per_seed(long: pd.DataFrame, metric: str, cls: str = "") -> pd.DataFrame:
    """Values of one score of one table: index = seed, columns = methods (NaN where missing)."""
    rows = long[(long["metric"] == metric) & (long["class"] == cls)]
    return rows.pivot_table(index="seed", columns="method", values="value", aggfunc="first", observed=True)


def paired_vs_baseline(long: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """Every method minus ``baseline`` per table and summary score (fractions): the paired CSV.

    Columns: the table keys, ``method``, ``baseline``, ``metric``, ``mean_diff``, ``ci_low``,
    ``ci_high``, ``pairs`` and ``confidence``. Tables without the baseline contribute nothing.
    """
    records = []
    for key, table in long.groupby(list(TABLE_KEYS), sort=True, observed=True):
        for metric in (*SUMMARY_METRICS, *SEGMENTATION_METRICS):
            values = per_seed(table, metric)
            if baseline not in values.columns:
                continue
            for method in values.columns.drop(baseline):
                diff = paired_difference(values[method], values[baseline])
                records.append(
                    {
                        **dict(zip(TABLE_KEYS, key, strict=True)),
                        "method": method,
                        "baseline": baseline,
                        "metric": metric,
                        "mean_diff": diff.mean,
                        "ci_low": diff.low,
                        "ci_high": diff.high,
                        "pairs": diff.n,
                        "confidence": CONFIDENCE,
                    }
                )
    columns = [*TABLE_KEYS, "method", "baseline", "metric", "mean_diff", "ci_low", "ci_high", "pairs"]
    return pd.DataFrame(records, columns=[*columns, "confidence"])


def paired_report(long: pd.DataFrame) -> pd.DataFrame:
    """The paired CSV beside the long form: every method and reference row minus the registry's
    baseline, in every table the references join."""
    return paired_vs_baseline(with_references(long), baseline_method())


def best_marks(values: pd.DataFrame) -> dict[str, str]:
    """Which methods (columns of a seed x method frame) to mark as the row's best, or as tied.

    The method with the highest mean is ``best`` only when its paired interval against the
    runner-up excludes 0. Otherwise it and every method whose paired interval against it includes
    0 are a ``tie``. With fewer than two methods, or fewer than two paired seeds against the
    runner-up, nothing is marked: no claim can be made.
    """
    means = values.mean().dropna().sort_values(ascending=False, kind="stable")
    if len(means) < 2:
        return {}
    top, runner_up = means.index[0], means.index[1]
    decisive = paired_difference(values[top], values[runner_up])
    if decisive.n < 2:
        return {}
    if decisive.low > 0:
        return {top: BEST}
    tied = [m for m in means.index[1:] if not paired_difference(values[top], values[m]).excludes_zero]
    return dict.fromkeys((top, *tied), TIE)
