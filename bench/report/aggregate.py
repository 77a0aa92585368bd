"""Seed runs from the tracking store -> tidy frames -> mean and std over seeds.

Everything here is pure pandas on a *wide* frame of runs (one row per finished seed run, the
columns of :data:`ID_COLUMNS` plus one metric column each: ``acc.<class>``, ``AA``, ``OA`` as
fractions), so the statistics are testable on a hand-made frame and the table and plot never
retrain anything. :func:`runs_from_mlflow` is the only function that talks to MLflow.

Std is the sample standard deviation over seeds (``ddof=1``), undefined (NaN) for a single seed.
"""

from __future__ import annotations

import pandas as pd

from bench.harness.tracking import completed_runs, metric_name
from datasets.classes import DFC_NAMES

#: Identity of a seed run: the MLflow tags (``bench.<name>``) and params the frame keeps.
ID_TAGS: dict[str, str] = {
    "result_key": "bench.result_key",
    "method": "bench.method",
    "protocol": "bench.protocol",
    "budget": "bench.budget",
    "budget_unit": "bench.budget_unit",
    "seed": "bench.seed",
    "backbone": "bench.backbone",
    "dataset": "bench.dataset_fingerprint",
}
ID_COLUMNS: tuple[str, ...] = ("run_id", *ID_TAGS, "code_version", "end_time")
#: Runs that differ in these are never averaged together: one table per distinct combination.
TABLE_KEYS: tuple[str, ...] = ("dataset", "backbone", "budget_unit", "protocol", "budget")
SUMMARY_METRICS: tuple[str, ...] = ("AA", "OA")
STD_KIND = "sample std over seeds (ddof=1)"

#: The seed paper's column order and labels; methods not listed follow in alphabetical order.
METHOD_LABELS: dict[str, str] = {
    "random": "Baseline",
    "imagenet": "ImageNet",
    "simsiam": "SimSiam",
    "sscl": "SSCL",
}


#: Sanitised metric suffix -> (display name, DFC id) for ordering rows as the class ids go.
_KNOWN_CLASSES: dict[str, tuple[str, int]] = {metric_name(n): (n, i) for i, n in DFC_NAMES.items()}


def method_order(methods: list[str] | set[str] | pd.Series) -> list[str]:
    """Methods in the seed table's order (Baseline, ImageNet, SimSiam, SSCL), the rest after."""
    present = set(methods)
    known = [m for m in METHOD_LABELS if m in present]
    return known + sorted(present - set(known))


def method_label(method: str) -> str:
    """Column header of a method (``random`` -> ``Baseline``)."""
    return METHOD_LABELS.get(method, method)


def class_columns(runs: pd.DataFrame) -> list[str]:
    """The ``acc.<class>`` columns, in DFC id order (unknown classes after, alphabetically)."""
    cols = [c for c in runs.columns if c.startswith("acc.")]
    return sorted(cols, key=lambda c: (_KNOWN_CLASSES.get(c[4:], ("", 99))[1], c))


def class_display_name(column: str) -> str:
    """``acc.Urban_Built-up`` -> ``Urban/Built-up`` (the DFC name when the class is known)."""
    return _KNOWN_CLASSES.get(column[4:], (column[4:], 0))[0]


def runs_from_mlflow(experiment: str | None = None) -> pd.DataFrame:
    """Every finished seed run of the experiment as a wide frame (empty frame when none)."""
    raw = completed_runs(experiment)
    if raw.empty:
        return pd.DataFrame(columns=list(ID_COLUMNS))
    runs = pd.DataFrame({"run_id": raw["run_id"]})
    for col, tag in ID_TAGS.items():
        runs[col] = raw.get(f"tags.{tag}")
    runs["code_version"] = raw.get("params.code_version")
    runs["end_time"] = raw.get("end_time")
    metrics = [c for c in raw.columns if c.startswith("metrics.acc.") or c[8:] in SUMMARY_METRICS]
    for col in metrics:
        runs[col.removeprefix("metrics.")] = raw[col]
    runs["budget"] = pd.to_numeric(runs["budget"])
    runs["seed"] = pd.to_numeric(runs["seed"])
    return runs


def dedupe(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per result key (the latest finished), so a repeated cell is never counted twice."""
    if runs.empty:
        return runs
    return runs.sort_values("end_time").drop_duplicates("result_key", keep="last").reset_index(drop=True)


def long_form(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run x metric (each class, AA, OA): the long-form CSV and the input of stats.

    ``metric`` is the class display name (or AA / OA), ``accuracy`` a fraction in [0, 1];
    ``metric`` is an ordered categorical (classes in DFC id order, then AA, OA).
    """
    runs = dedupe(runs)
    value_cols = [*class_columns(runs), *(m for m in SUMMARY_METRICS if m in runs.columns)]
    ids = [c for c in ID_COLUMNS if c in runs.columns]
    long = runs.melt(id_vars=ids, value_vars=value_cols, var_name="metric", value_name="accuracy")
    long = long.dropna(subset=["accuracy"])
    names = [class_display_name(c) if c.startswith("acc.") else c for c in value_cols]
    long["metric"] = pd.Categorical(
        long["metric"].map(lambda c: class_display_name(c) if c.startswith("acc.") else c), categories=names
    )
    order = [c for c in ("protocol", "budget", "method", "seed", "metric") if c in long.columns]
    return long.sort_values(order).reset_index(drop=True)


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and seed count per table key x method x metric."""
    keys = [*TABLE_KEYS, "method", "metric"]
    grouped = long.groupby(keys, observed=True, sort=True)["accuracy"]
    stats = grouped.agg(mean="mean", std=lambda s: s.std(ddof=1), n="count").reset_index()
    return stats


def select(runs: pd.DataFrame, **equal: object) -> pd.DataFrame:
    """Runs whose columns equal the given values; ``None`` values do not filter."""
    for col, value in equal.items():
        if value is not None:
            runs = runs[runs[col] == value]
    return runs
