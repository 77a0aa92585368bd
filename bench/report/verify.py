"""The reproduction check: re-run sampled seeds of a committed grid and compare them with its CSV.

``bench verify`` (and ``scripts/regenerate_results.sh --check N``) draws ``N`` seed runs from
``results/runs_long.csv``, evaluates each again on this machine exactly as ``bench run`` would
(same preset, same pretraining seed, same label draw) and compares every score the CSV holds for
it (AA, OA and per-class accuracy, in percentage points) with what came out now. A committed grid
is reproducible when every sampled seed agrees within the tolerance.

Why a tolerance at all: the embedded default's bytes are the same on every machine (the
generator is written in correctly rounded elementwise arithmetic), but torch's CPU kernels sum in
an order that follows the thread count and the CPU's vector width, so a pretraining or a
fine-tuning run moves with them (up to 0.7 AA points per seed between 1 and 2 threads, README
"Reproducibility"). A seed is therefore re-run at the thread count it records, and on the same
kind of CPU the scores come out identical; the tolerance covers another CPU. AA and OA are held
to it; the largest per-class difference is reported beside them (a class of a few hundred test
pixels moves by more). A tolerance of 0 asks for bit-identical AA and OA.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from bench.core.errors import BenchError

#: Default tolerance of AA and OA in percentage points: above the 0.7 that thread count alone moved
#: an SSCL seed by on one CPU (the README's reproducibility section), for another CPU's kernels.
DEFAULT_TOLERANCE = 1.0


@dataclass(frozen=True)
class Unit:
    """One committed seed run, with what ``bench run`` needs to evaluate it again."""

    method: str
    protocol: str
    budget: int
    budget_unit: str
    backbone: str
    seed: int
    #: K of the committed cell (its largest pretraining seed + 1): seed ``s`` used ``s mod K``.
    pretrain_seeds: int
    result_key: str
    #: torch's CPU threads when it was computed (None when not recorded): the re-run uses as many.
    threads: int | None = None

    @property
    def name(self) -> str:
        return f"{self.method} {self.protocol} {self.budget} {self.budget_unit} seed {self.seed}"


@dataclass(frozen=True)
class Check:
    """A unit's committed and recomputed scores (percent) and whether they agree."""

    unit: Unit
    committed_aa: float
    now_aa: float
    committed_oa: float
    now_oa: float
    #: Largest absolute difference of AA and OA, in points (what the tolerance holds).
    max_diff: float
    #: Largest absolute difference over the per-class accuracies, in points (reported only).
    class_diff: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_diff <= self.tolerance


def units_of(long: pd.DataFrame) -> list[Unit]:
    """Every seed run of a long-form CSV (one per result key), in the CSV's order."""
    needed = {"result_key", "method", "protocol", "budget", "budget_unit", "backbone", "seed"}
    missing = sorted(needed - set(long.columns))
    if missing:
        raise BenchError(f"the results CSV lacks the column(s) {', '.join(missing)} a re-run needs")
    runs = long.drop_duplicates("result_key")
    cells = long.groupby(["method", "protocol", "budget", "budget_unit", "backbone"], observed=True)
    column = "pretrain_seed" if "pretrain_seed" in long.columns else "seed"
    largest = cells[column].max() * (1 if column == "pretrain_seed" else np.nan)  # no column: K = 1
    units = []
    for row in runs.itertuples(index=False):
        cell = (row.method, row.protocol, row.budget, row.budget_unit, row.backbone)
        top = largest.get(cell, np.nan)
        units.append(
            Unit(
                method=str(row.method),
                protocol=str(row.protocol),
                budget=int(row.budget),
                budget_unit=str(row.budget_unit),
                backbone=str(row.backbone),
                seed=int(row.seed),
                pretrain_seeds=1 if pd.isna(top) else int(top) + 1,
                result_key=str(row.result_key),
                threads=_threads(getattr(row, "threads", None)),
            )
        )
    return units


def _threads(value: object) -> int | None:
    """A recorded thread count (the ``threads`` column), or None where the CSV has none."""
    try:
        count = int(float(str(value)))
    except ValueError:
        return None
    return count if count >= 1 else None


def sample_units(
    long: pd.DataFrame,
    n: int,
    seed: int = 0,
    methods: Sequence[str] | None = None,
    protocols: Sequence[str] | None = None,
) -> list[Unit]:
    """``n`` seed runs drawn without replacement (a seeded generator, so a check is repeatable),
    optionally only of ``methods`` / ``protocols``; sorted so units that share weights run together."""
    units = [
        u
        for u in units_of(long)
        if (not methods or u.method in methods) and (not protocols or u.protocol in protocols)
    ]
    if not units:
        raise BenchError("no committed seed run matches the --methods/--protocol filters")
    if n > len(units):
        raise BenchError(f"--cells {n}: the results hold only {len(units)} matching seed runs")
    picked = np.random.default_rng(seed).choice(len(units), size=n, replace=False)
    chosen = [units[i] for i in picked]
    return sorted(chosen, key=lambda u: (u.method, u.seed % u.pretrain_seeds, u.protocol, u.budget, u.seed))


def committed_scores(long: pd.DataFrame, unit: Unit) -> dict[str, float]:
    """``{"AA": .., "OA": .., "acc.<class>": ..}`` of ``unit`` in the CSV, in percent."""
    rows = long[long["result_key"].astype(str) == unit.result_key]
    scores: dict[str, float] = {}
    for metric, cls, value in zip(
        rows["metric"].astype(str), rows["class"].astype(str), rows["value"].astype(float), strict=True
    ):
        if metric in ("AA", "OA"):
            scores[metric] = 100 * value
        elif metric == "accuracy":
            scores[f"acc.{cls}"] = 100 * value
    return scores


def compare(unit: Unit, committed: dict[str, float], now: dict[str, float], tolerance: float) -> Check:
    """The check of one unit: every score both sides have, NaN-aware (absent classes agree)."""

    def largest(names: list[str]) -> float:
        diffs = []
        for name in names:
            value, other = committed[name], now.get(name, float("nan"))
            if np.isnan(value) and np.isnan(other):
                continue
            diffs.append(abs(value - other) if not (np.isnan(value) or np.isnan(other)) else float("inf"))
        return max(diffs, default=0.0)

    summaries: list[str] = [n for n in ("AA", "OA") if n in committed]
    return Check(
        unit=unit,
        committed_aa=committed.get("AA", float("nan")),
        now_aa=now.get("AA", float("nan")),
        committed_oa=committed.get("OA", float("nan")),
        now_oa=now.get("OA", float("nan")),
        max_diff=largest(summaries) if summaries else float("inf"),
        class_diff=largest([n for n in committed if n.startswith("acc.")]),
        tolerance=tolerance,
    )


def scores_percent(scores: object, class_names: Sequence[str]) -> dict[str, float]:
    """A :class:`bench.protocols.metrics.Scores` as :func:`committed_scores` names them."""
    out = {"AA": 100 * float(scores.aa), "OA": 100 * float(scores.oa)}  # type: ignore[attr-defined]
    for name, value in zip(class_names, scores.per_class, strict=True):  # type: ignore[attr-defined]
        out[f"acc.{name}"] = 100 * float(value)
    return out


def format_checks(checks: Sequence[Check]) -> str:
    """One line per unit and a closing verdict, as ``bench verify`` prints them."""
    width = max((len(c.unit.name) for c in checks), default=10)
    lines = [f"{'seed run':<{width}}  AA then  AA now  OA then  OA now  AA/OA diff  class diff  verdict"]
    for c in checks:
        verdict = "ok" if c.ok else f"DIFFERS (> {c.tolerance:g})"
        lines.append(
            f"{c.unit.name:<{width}}  {c.committed_aa:7.2f} {c.now_aa:7.2f}  {c.committed_oa:7.2f} "
            f"{c.now_oa:7.2f}  {c.max_diff:10.3f}  {c.class_diff:10.3f}  {verdict}"
        )
    bad = [c for c in checks if not c.ok]
    worst = max((c.max_diff for c in checks), default=0.0)
    if not checks:
        return "nothing checked"
    within = f"within {checks[0].tolerance:g} points (largest difference {worst:.3f})"
    lines.append(f"{len(checks) - len(bad)} of {len(checks)} seed runs reproduced {within}")
    return "\n".join(lines)
