"""Paired tests against the Baseline, Holm-corrected, and the spread split by source (DESIGN 6).

One code path for every place a comparison is shown: the tables and the README summary
(:mod:`bench.report.table`), the paired CSV beside the long form, and MLflow's parent runs
(:func:`seed_summary`, :func:`compare_to_baseline`: plain numpy/pandas in, plain numbers out).

**Pairing.** Seed ``s`` of every method trains on the same labelled pixels and is scored on the
same test pixels, so the label-draw noise that dominates the ± of one column cancels in the
per-seed difference ``d_s = method_s - baseline_s``. Only seeds both have are paired.

**The test.** For each method vs the Baseline, in one table (protocol, budget) and for one score
(AA, OA, mIoU, macro F1, or one class's accuracy):

- the mean paired difference with its 95% t interval (``n - 1`` degrees of freedom);
- an exact two-sided sign-flip (permutation) p-value: under "no difference" each ``d_s`` is as
  likely to have either sign, so all ``2^n`` sign vectors are enumerated and
  ``p = #{signs: |sum(sign * d)| >= |sum(d)|} / 2^n``. No normality is assumed; the smallest
  attainable p is ``2 / 2^n`` (every difference of one sign), so ``n <= 5`` can never give
  ``p < 0.05`` (``2 / 32 = 0.0625``) and ``n = 6`` is the least that can (``2 / 64 = 0.031``);
- Holm's step-down correction across the comparisons of the same table and score (every column
  against the Baseline: methods, ablations, references and controls alike, ``m`` of them):
  sort ``p_(1) <= ... <= p_(m)``, ``p_holm_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``. A cell is
  marked only when ``p_holm < 0.05``. With all ``n`` differences of one sign the smallest p is
  ``2 / 2^n``, and after Holm ``2 m / 2^n``; :func:`min_seeds` gives the least ``n`` that can
  reach significance for ``m`` comparisons (``bench.cli.common.DEFAULT_SEEDS`` is it for a typical
  table).

**The unit is what is replicated.** With ``K`` pretraining runs reused across ``n`` seeds (seed
``s`` uses pretraining seed ``s mod K``, the Baseline's initialisation alike), seeds that share a
pretraining run share its luck: the run explained 59-95% of SimSiam's paired-difference variance
in the v3 results, so nine seeds over three runs carry about three to four seeds' information, and
a test over the nine as if independent rejects a true null far above its nominal 5%. So the pairs
are grouped into **clusters** (:func:`clusters`: seeds linked when they share the method's
pretraining seed or the Baseline's initialisation seed) and, when there are fewer clusters than
pairs, the test and the interval are computed over the cluster means of ``d_s`` (one mean per
pretraining run, each weighing alike; the t interval then has ``K - 1`` degrees of freedom and the
sign-flip test ``2^K`` sign vectors). When every seed has its own pretraining run (``K = n``, the
default, :data:`bench.cli.common.DEFAULT_SEEDS`) the clusters are the seeds and this is the test
above. Rows record the unit (``unit``: :data:`SEED_UNIT` or :data:`RUN_UNIT`) and how many
(``units``); tables say which in their footer. How much of a method's spread the choice of
pretraining run explains is reported beside it (:func:`variance_by_source`).

**Bootstrap over test patches** (:func:`bootstrap_patches`): for a cell with one seed, a
percentile interval of AA and OA from resampling test *patches* with replacement (neighbouring
pixels are not independent, so pixels are never the unit).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.core.intervals import t_interval

CONFIDENCE = 0.95
#: Significance level of a corrected test: a cell is marked only when ``p_holm < ALPHA``.
ALPHA = 0.05
#: Sign vectors are enumerated exactly up to this many pairs (2^22 sums, 32 MiB); above it a
#: seeded Monte Carlo draw of :data:`MONTE_CARLO_DRAWS` vectors estimates p (never below 1 / draws).
MAX_EXACT_PAIRS = 22
MONTE_CARLO_DRAWS = 1 << 20
TEST_NAME = "exact two-sided sign-flip test over paired seeds, Holm-corrected across the columns of a row"
#: The test's unit: a paired seed (each seed its own pretraining run), or a pretraining run (the
#: mean of the paired seeds that share one, when runs are reused across seeds).
SEED_UNIT, RUN_UNIT = "seed", "pretraining run"
#: :data:`TEST_NAME` when the unit is a pretraining run.
RUN_TEST_NAME = (
    "exact two-sided sign-flip test over pretraining-run means of paired seeds, Holm-corrected across "
    "the columns of a row"
)
#: Summary scores and per-class accuracy: the rows of a table that are tested.
SUMMARY_SCORES: tuple[str, ...] = ("AA", "OA", "mIoU", "macroF1")
#: Columns of :func:`compare_to_baseline` and of the paired CSV (after the table keys).
COMPARISON_COLUMNS: tuple[str, ...] = (
    "method",
    "baseline",
    "mean_diff",
    "ci_low",
    "ci_high",
    "pairs",
    "unit",
    "units",
    "p_value",
    "p_holm",
    "comparisons",
    "significant",
)


def sign_flip_p(diffs: Sequence[float] | np.ndarray) -> float:
    """Exact two-sided sign-flip p-value of paired differences (NaN when there are none).

    Every one of the ``2^n`` sign vectors is enumerated (the observed one included), as the sums
    ``sum(sign * d)`` built one difference at a time; ``p`` is the share whose absolute sum is at
    least the observed one (a relative tolerance absorbs the order of floating-point additions).
    All-zero differences give ``p = 1``.
    """
    d = np.asarray(diffs, dtype=np.float64)
    d = d[~np.isnan(d)]
    n = len(d)
    if n == 0:
        return math.nan
    observed = abs(float(d.sum()))
    tol = 1e-9 * max(float(np.abs(d).sum()), 1e-300)
    if n <= MAX_EXACT_PAIRS:
        sums = np.zeros(1)
        for value in d:
            sums = np.concatenate([sums + value, sums - value])
        return float(np.count_nonzero(np.abs(sums) >= observed - tol)) / len(sums)
    rng = np.random.default_rng(0)
    hits = 0
    for start in range(0, MONTE_CARLO_DRAWS, 1 << 14):
        signs = rng.choice((-1.0, 1.0), size=(min(1 << 14, MONTE_CARLO_DRAWS - start), n))
        hits += int(np.count_nonzero(np.abs(signs @ d) >= observed - tol))
    return (hits + 1) / (MONTE_CARLO_DRAWS + 1)


def holm(pvalues: Sequence[float] | np.ndarray) -> np.ndarray:
    """Holm's step-down adjusted p-values, in the input order; NaN entries are not counted in ``m``.

    ``p_holm_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))`` over the sorted p-values: it controls
    the chance of any false claim among the ``m`` at the level compared against, whatever their
    dependence.
    """
    p = np.asarray(pvalues, dtype=np.float64)
    out = np.full_like(p, np.nan)
    valid = np.flatnonzero(~np.isnan(p))
    m = len(valid)
    if m == 0:
        return out
    order = valid[np.argsort(p[valid], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def min_seeds(comparisons: int, alpha: float = ALPHA) -> int:
    """The fewest paired seeds at which ``comparisons`` Holm-corrected sign-flip tests can reach
    ``p_holm < alpha``: the least ``n`` with ``comparisons * 2 / 2^n < alpha``.

    1 comparison: 6 (2 / 64 = 0.031); 3: 7 (6 / 128 = 0.047); 5 to 8: 8 to 9 (8 * 2 / 2^9 = 0.031,
    8 * 2 / 2^8 = 0.0625); up to 12: 9 (24 / 512 = 0.047).
    """
    if comparisons < 1:
        raise ValueError(f"comparisons must be >= 1, got {comparisons}")
    n = 1
    while comparisons * 2.0 / 2.0**n >= alpha:
        n += 1
    return n


@dataclass(frozen=True)
class PairedDifference:
    """Mean of ``a - b`` over the seeds both have (over their cluster means when seeds share a
    pretraining run), its t interval at :data:`CONFIDENCE`, and the exact sign-flip p-value
    (uncorrected; :func:`compare_to_baseline` adds Holm's). ``n`` counts paired seeds, ``units``
    what the test ran over (``unit``: :data:`SEED_UNIT` or :data:`RUN_UNIT`)."""

    mean: float
    low: float
    high: float
    n: int
    p: float = math.nan
    units: int = 0
    unit: str = SEED_UNIT


def clusters(a_groups: pd.Series, b_groups: pd.Series) -> pd.Series:
    """Cluster label (0, 1, ...) of each seed of the index: seeds that share a group of ``a`` (the
    method's pretraining seed) or of ``b`` (the Baseline's) are in one cluster, transitively.

    NaN groups link nothing (a reference row has no pretraining; runs recorded before the
    pretraining seed was a parameter): such a seed is its own cluster unless the other side links
    it. Under ``s mod K`` for both sides the clusters are the ``K`` residues.
    """
    index = a_groups.index.union(b_groups.index)
    parent = list(range(len(index)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for groups in (a_groups.reindex(index), b_groups.reindex(index)):
        first: dict[object, int] = {}
        for i, g in enumerate(groups.to_numpy()):
            if pd.isna(g):
                continue
            j = first.setdefault(g, i)
            parent[root(i)] = root(j)
    roots = [root(i) for i in range(len(index))]
    labels = {r: k for k, r in enumerate(dict.fromkeys(roots))}
    return pd.Series([labels[r] for r in roots], index=index, dtype=int)


def paired_difference(
    a: pd.Series, b: pd.Series, confidence: float = CONFIDENCE, groups: pd.Series | None = None
) -> PairedDifference:
    """``a - b`` paired by index (the seed); seeds missing or NaN in either are left out.

    ``groups`` (a cluster label per seed, :func:`clusters`): when the paired seeds fall into fewer
    clusters than seeds, the differences are averaged per cluster and the mean, interval and test
    are over those ``K`` means (unit :data:`RUN_UNIT`); otherwise over the seeds.
    """
    diff = (a - b).dropna()  # aligned on the index: unshared seeds are NaN
    n = len(diff)
    if n == 0:
        return PairedDifference(math.nan, math.nan, math.nan, 0)
    unit = SEED_UNIT
    if groups is not None:
        labels = groups.reindex(diff.index)
        labels = labels.where(labels.notna(), pd.Series(-1 - np.arange(n), index=diff.index))
        if labels.nunique() < n:
            diff = diff.groupby(labels.to_numpy(), sort=True).mean()
            unit = RUN_UNIT
    values = diff.to_numpy(dtype=np.float64)
    mean, low, high = t_interval(values, confidence)
    return PairedDifference(mean, low, high, n, sign_flip_p(values), len(values), unit)


def compare_to_baseline(
    values: pd.DataFrame,
    baseline: str,
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
    pretrain_seeds: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """Every column of a seed x method frame (one score of one table) against ``baseline``.

    One row per other column with any shared seed, in column order: :data:`COMPARISON_COLUMNS`.
    The Holm family is exactly these rows (``comparisons`` = their number); ``significant`` is
    ``p_holm < alpha``. Empty when ``baseline`` is not a column. ``pretrain_seeds`` (seed x method,
    :func:`per_seed_pretraining`): each comparison's seeds are clustered by the pretraining runs
    both columns used (:func:`clusters`) and tested at that level (:func:`paired_difference`).
    """
    if baseline not in values.columns:
        return pd.DataFrame(columns=list(COMPARISON_COLUMNS))
    empty = pd.Series(dtype=float)

    def groups_of(method: str) -> pd.Series:
        if pretrain_seeds is None or method not in pretrain_seeds.columns:
            return empty
        return pretrain_seeds[method]

    records = []
    for method in values.columns.drop(baseline):
        groups = None
        if pretrain_seeds is not None:
            groups = clusters(groups_of(method), groups_of(baseline))
        diff = paired_difference(values[method], values[baseline], confidence, groups)
        if diff.n == 0:
            continue
        records.append(
            {
                "method": method,
                "baseline": baseline,
                "mean_diff": diff.mean,
                "ci_low": diff.low,
                "ci_high": diff.high,
                "pairs": diff.n,
                "unit": diff.unit,
                "units": diff.units,
                "p_value": diff.p,
            }
        )
    frame = pd.DataFrame(records, columns=list(COMPARISON_COLUMNS))
    frame["p_holm"] = holm(frame["p_value"].to_numpy(dtype=float)) if len(frame) else []
    frame["comparisons"] = len(frame)
    frame["significant"] = frame["p_holm"] < alpha
    return frame


def per_seed(long: pd.DataFrame, metric: str, cls: str = "") -> pd.DataFrame:
    """Values of one score of one table: index = seed, columns = methods (NaN where missing)."""
    rows = long[(long["metric"] == metric) & (long["class"] == cls)]
    return rows.pivot_table(index="seed", columns="method", values="value", aggfunc="first", observed=True)


def per_seed_pretraining(long: pd.DataFrame) -> pd.DataFrame | None:
    """The pretraining seed of every (seed, method) of one table (index = seed, columns = methods;
    NaN for reference rows and runs recorded without one); None when the long form has no column."""
    if "pretrain_seed" not in long.columns:
        return None
    rows = long[["seed", "method", "pretrain_seed"]].drop_duplicates(["seed", "method"])
    seeds = pd.to_numeric(rows["pretrain_seed"], errors="coerce")
    frame = rows.assign(pretrain_seed=seeds)
    return frame.pivot_table(
        index="seed", columns="method", values="pretrain_seed", aggfunc="first", dropna=False, observed=True
    )


def tested_scores(long: pd.DataFrame) -> list[tuple[str, str]]:
    """(metric, class) of every tested row present: per-class accuracy (in the long form's class
    order), then the summary scores."""
    present = long[["metric", "class"]].drop_duplicates().sort_values(["metric", "class"])
    classes = [str(c) for m, c in present.itertuples(index=False) if m == "accuracy"]
    metrics = set(present["metric"].astype(str))
    return [("accuracy", c) for c in classes] + [(m, "") for m in SUMMARY_SCORES if m in metrics]


def paired_comparisons(
    long: pd.DataFrame,
    baseline: str,
    table_keys: Sequence[str],
    confidence: float = CONFIDENCE,
    alpha: float = ALPHA,
) -> pd.DataFrame:
    """:func:`compare_to_baseline` for every table (``table_keys``) and tested score of a long form.

    Columns: the table keys, ``metric``, ``class``, :data:`COMPARISON_COLUMNS`, ``confidence``,
    ``alpha`` and ``test``; differences in the long form's unit (fractions). Tables without the
    baseline contribute nothing. Seeds that share a pretraining run (the long form's
    ``pretrain_seed``) are tested at the level of the runs (:func:`compare_to_baseline`).
    ``baseline`` may be any method: ``bench table --versus METHOD`` compares every column with it.
    """
    columns = [*table_keys, "metric", "class", *COMPARISON_COLUMNS, "confidence", "alpha", "test"]
    frames = []
    for key, table in long.groupby(list(table_keys), sort=True, observed=True):
        pretraining = per_seed_pretraining(table)
        for metric, cls in tested_scores(table):
            values = per_seed(table, metric, cls)
            found = compare_to_baseline(values, baseline, confidence, alpha, pretraining)
            if found.empty:
                continue
            frames.append(
                found.assign(
                    **dict(zip(table_keys, key, strict=True)),
                    metric=metric,
                    **{"class": cls},
                    confidence=confidence,
                    alpha=alpha,
                    test=[RUN_TEST_NAME if u == RUN_UNIT else TEST_NAME for u in found["unit"]],
                )
            )
    if not frames:
        return pd.DataFrame(columns=columns)
    return pd.concat(frames, ignore_index=True)[columns]


def seed_summary(
    values: Sequence[float] | np.ndarray | pd.Series, confidence: float = CONFIDENCE
) -> dict[str, float]:
    """Mean, sample std (ddof=1), count and the t interval of the mean of one score over seeds
    (NaN entries dropped; std and interval NaN below two seeds): a cell's aggregate for MLflow."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = len(x)
    mean, low, high = t_interval(x, confidence)
    std = float(x.std(ddof=1)) if n > 1 else math.nan
    return {"mean": mean, "std": std, "n": float(n), "ci_low": low, "ci_high": high}


#: Notes of :func:`variance_by_source` (shown as footnotes).
K1_NOTE = "K = 1: pretraining variance unknown"
ONE_PER_PRETRAINING_NOTE = "one evaluation seed per pretraining seed: the split is unknown"
NO_PRETRAINING_NOTE = "no pretraining: all spread is evaluation"


def variance_components(values: pd.Series, groups: pd.Series) -> dict[str, float | str]:
    """Split the spread of one score over seeds into between- and within-pretraining-seed parts.

    One-way random-effects ANOVA with the pretraining seed as the group (``K`` groups, ``n_k``
    evaluation seeds in group ``k``, ``N = sum n_k``, group means ``m_k``, grand mean ``m``):

    - within (label draw + training seed): ``MSW = sum_k sum_i (x_ki - m_k)^2 / (N - K)``;
    - between pretraining seeds: ``MSB = sum_k n_k (m_k - m)^2 / (K - 1)``,
      ``n0 = (N - sum_k n_k^2 / N) / (K - 1)``, ``var_between = max(0, (MSB - MSW) / n0)``
      (``MSB`` also holds within-group noise, ``MSW / n0`` of it, which is taken out);
    - ``pretrain_share = var_between / (var_between + MSW)``.

    Returns ``K``, ``N``, ``between_sd`` and ``within_sd`` (the square roots, in the values' unit),
    ``pretrain_share`` and a ``note`` (:data:`K1_NOTE` when ``K = 1``, :data:`NO_PRETRAINING_NOTE`
    without pretraining seeds, :data:`ONE_PER_PRETRAINING_NOTE` when ``N = K``), NaN where unknown.
    """
    frame = pd.DataFrame({"x": values.to_numpy(dtype=float), "g": groups.to_numpy()}).dropna(subset=["x"])
    n_total = len(frame)
    known = frame.dropna(subset=["g"])
    k = int(known["g"].nunique())
    out: dict[str, float | str] = {
        "K": float(k),
        "N": float(n_total),
        "between_sd": math.nan,
        "within_sd": math.nan,
        "pretrain_share": math.nan,
        "note": "",
    }
    if k == 0:
        out["within_sd"] = float(frame["x"].std(ddof=1)) if n_total > 1 else math.nan
        out["note"] = NO_PRETRAINING_NOTE
        return out
    grouped = known.groupby("g")["x"]
    means, sizes = grouped.transform("mean"), grouped.size()
    n = len(known)
    if n > k:
        out["within_sd"] = math.sqrt(float(((known["x"] - means) ** 2).sum()) / (n - k))
    if k == 1:
        out["note"] = K1_NOTE
        return out
    if n == k:
        out["note"] = ONE_PER_PRETRAINING_NOTE
        return out
    msw = float(out["within_sd"]) ** 2
    grand = float(known["x"].mean())
    msb = float((sizes * (grouped.mean() - grand) ** 2).sum()) / (k - 1)
    n0 = (n - float((sizes**2).sum()) / n) / (k - 1)
    between = max(0.0, (msb - msw) / n0)
    out["between_sd"] = math.sqrt(between)
    out["pretrain_share"] = between / (between + msw) if between + msw > 0 else math.nan
    return out


def variance_by_source(
    long: pd.DataFrame, table_keys: Sequence[str], metrics: Sequence[str] = ("AA", "OA")
) -> pd.DataFrame:
    """:func:`variance_components` per table, method and summary score of a long form.

    Columns: the table keys, ``method``, ``metric`` and the components' keys. Reference rows (no
    pretraining seed) get :data:`NO_PRETRAINING_NOTE`.
    """
    records = []
    group = "pretrain_seed" if "pretrain_seed" in long.columns else None
    for key, table in long.groupby([*table_keys, "method"], sort=True, observed=True):
        for metric in metrics:
            rows = table[(table["metric"] == metric) & (table["class"] == "")]
            if rows.empty:
                continue
            groups = pd.to_numeric(rows[group], errors="coerce") if group else pd.Series(np.nan, rows.index)
            records.append(
                {
                    **dict(zip([*table_keys, "method"], key, strict=True)),
                    "metric": metric,
                    **variance_components(rows["value"], groups),
                }
            )
    columns = [*table_keys, "method", "metric", "K", "N", "between_sd", "within_sd", "pretrain_share", "note"]
    return pd.DataFrame(records, columns=columns)


def _aa_oa(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """AA (mean recall over classes with test pixels) and OA of a stack of (..., C, C) confusions."""
    support = confusion.sum(axis=-1)
    diag = np.diagonal(confusion, axis1=-2, axis2=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, diag / np.maximum(support, 1), np.nan)
        aa = np.nanmean(recall, axis=-1)
        oa = diag.sum(axis=-1) / np.maximum(support.sum(axis=-1), 1)
    return aa, oa


def bootstrap_patches(
    confusions: np.ndarray, draws: int = 2000, confidence: float = CONFIDENCE, seed: int = 0
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of AA and OA from resampling test patches (P, C, C) with replacement.

    Each draw takes ``P`` patches with replacement (multinomial counts), sums their confusion
    matrices and scores the sum as the protocol scores the whole test set. For a cell with a
    single seed: it covers test-set sampling only, not label draws or training seeds.
    """
    conf = np.asarray(confusions, dtype=np.float64)
    if conf.ndim != 3 or conf.shape[1] != conf.shape[2] or len(conf) == 0:
        raise ValueError(f"expected per-patch confusions of shape (P, C, C), got {conf.shape}")
    rng = np.random.default_rng(seed)
    flat = conf.reshape(len(conf), -1)
    aa_all, oa_all = [], []
    for start in range(0, draws, 256):
        counts = rng.multinomial(len(conf), np.full(len(conf), 1 / len(conf)), size=min(256, draws - start))
        total = (counts @ flat).reshape(-1, *conf.shape[1:])
        aa, oa = _aa_oa(total)
        aa_all.append(aa)
        oa_all.append(oa)
    lo, hi = 100 * (1 - confidence) / 2, 100 * (1 + confidence) / 2
    result = {}
    for name, sample in (("AA", np.concatenate(aa_all)), ("OA", np.concatenate(oa_all))):
        low, high = np.percentile(sample, [lo, hi])
        result[name] = (float(low), float(high))
    return result
