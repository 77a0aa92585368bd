"""Aggregation over a hand-made frame of seed runs: mean, sample std, dedupe, long form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report.aggregate import class_columns, dedupe, long_form, method_order, summarise

CLASSES = {"acc.Water": 10, "acc.Forest": 1, "acc.Urban_Built-up": 7}


def make_runs(
    methods: tuple[str, ...] = ("sscl", "random"),
    budgets: tuple[int, ...] = (200, 800),
    seeds: tuple[int, ...] = (0, 1, 2),
    protocols: tuple[str, ...] = ("linear",),
) -> pd.DataFrame:
    """Wide runs with known values: acc = base(method) + budget/1e4 + seed/100 + class_id/1000."""
    rows = []
    for m_i, method in enumerate(methods):
        for protocol in protocols:
            for budget in budgets:
                for seed in seeds:
                    accs = {
                        c: 0.4 + 0.1 * m_i + budget / 1e4 + seed / 100 + cid / 1000
                        for c, cid in CLASSES.items()
                    }
                    rows.append(
                        {
                            "run_id": f"{method}-{protocol}-{budget}-{seed}",
                            "result_key": f"k-{method}-{protocol}-{budget}-{seed}",
                            "method": method,
                            "protocol": protocol,
                            "budget": budget,
                            "budget_unit": "pixels",
                            "seed": seed,
                            "backbone": "tiny",
                            "dataset": "fp0123456789abcdef",
                            "code_version": "abc123",
                            "end_time": pd.Timestamp("2026-01-01") + pd.Timedelta(seed, "h"),
                            **accs,
                            "AA": float(np.mean(list(accs.values()))),
                            "OA": 0.5 + 0.1 * m_i + seed / 100,
                        }
                    )
    return pd.DataFrame(rows)


def test_class_columns_follow_dfc_ids() -> None:
    assert class_columns(make_runs()) == ["acc.Forest", "acc.Urban_Built-up", "acc.Water"]


def test_method_order_puts_seed_methods_first() -> None:
    assert method_order(["zeta", "sscl", "random", "alpha", "imagenet"]) == [
        "random",
        "imagenet",
        "sscl",
        "alpha",
        "zeta",
    ]


def test_mean_and_sample_std_per_class() -> None:
    stats = summarise(long_form(make_runs())).set_index(["method", "budget", "metric"])
    forest = stats.loc[("sscl", 800, "Forest")]
    values = [0.4 + 0.1 * 0 + 0.08 + s / 100 + 0.001 for s in (0, 1, 2)]
    assert forest["mean"] == pytest.approx(np.mean(values))
    assert forest["std"] == pytest.approx(np.std(values, ddof=1))  # sample std: 0.01 exactly
    assert forest["std"] == pytest.approx(0.01)
    assert forest["n"] == 3
    assert stats.loc[("random", 200, "Urban/Built-up"), "mean"] == pytest.approx(0.5 + 0.02 + 0.01 + 0.007)


def test_single_seed_std_is_nan() -> None:
    stats = summarise(long_form(make_runs(seeds=(4,))))
    assert stats["std"].isna().all() and (stats["n"] == 1).all()


def test_duplicate_result_key_counts_once_latest_wins() -> None:
    runs = make_runs(methods=("random",), budgets=(200,), seeds=(0, 1))
    again = runs.iloc[[0]].assign(run_id="again", OA=0.99, end_time=pd.Timestamp("2027-01-01"))
    both = pd.concat([runs, again], ignore_index=True)
    assert len(dedupe(both)) == 2
    oa = summarise(long_form(both)).set_index("metric").loc["OA"]
    assert oa["n"] == 2 and oa["mean"] == pytest.approx((0.99 + 0.51) / 2)


def test_long_form_one_row_per_run_and_metric() -> None:
    runs = make_runs(protocols=("linear", "finetune"))
    long = long_form(runs)
    assert len(long) == len(runs) * (len(CLASSES) + 2)
    assert list(long["metric"].cat.categories) == ["Forest", "Urban/Built-up", "Water", "AA", "OA"]
    assert {
        "method",
        "budget",
        "seed",
        "protocol",
        "metric",
        "accuracy",
        "budget_unit",
        "code_version",
    } <= set(long)


def record_runs(runs: pd.DataFrame) -> None:
    """Write the hand-made runs to the real MLflow store the way the runner does."""
    from bench.harness.tracking import cell_run, record_seed
    from bench.report.aggregate import ID_TAGS

    for _, run in runs.iterrows():
        tags = {tag: str(run[col]) for col, tag in ID_TAGS.items()}
        parent = cell_run(f"cell-{run['method']}-{run['protocol']}-{run['budget']}", {}, {}, "cell")
        metrics = {c: run[c] for c in runs.columns if c.startswith("acc.") or c in ("AA", "OA")}
        record_seed(
            parent,
            run_name=str(run["run_id"]),
            tags=tags,
            params={"code_version": str(run["code_version"])},
            metrics=metrics,
            confusion=np.eye(2, dtype=np.int64),
            class_names=["a", "b"],
        )


@pytest.fixture
def tracked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """A fresh local MLflow store holding :func:`make_runs` (2 methods x 2 budgets x 3 seeds)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("BENCH_EXPERIMENT", "test-aggregate")
    runs = make_runs()
    record_runs(runs)
    return runs


def test_runs_from_mlflow_round_trip(tracked: pd.DataFrame) -> None:
    from bench.report.aggregate import runs_from_mlflow

    stored = runs_from_mlflow()
    assert len(stored) == len(tracked)
    assert set(stored["result_key"]) == set(tracked["result_key"])
    expected = summarise(long_form(tracked))
    got = summarise(long_form(stored))
    pd.testing.assert_frame_equal(got, expected, check_dtype=False, check_categorical=False)
