"""Aggregation over a hand-made frame of seed runs: mean, sample std, dedupe, long form."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from bench.report.aggregate import (
    class_columns,
    dedupe,
    long_form,
    method_label,
    method_order,
    summarise,
    with_references,
)

CLASSES = {"acc.Water": 10, "acc.Forest": 1, "acc.Urban_Built-up": 7}


def make_runs(
    methods: tuple[str, ...] = ("sscl", "random"),
    budgets: tuple[int, ...] = (200, 800),
    seeds: tuple[int, ...] = (0, 1, 2),
    protocols: tuple[str, ...] = ("linear",),
    jitter: dict[tuple[str, int], float] | None = None,
    pretrain_k: int | None = 2,
) -> pd.DataFrame:
    """Wide runs with known values: acc = base(method) + budget/1e4 + seed/100 + class_id/1000.

    IoU is acc - 0.1, mIoU the mean IoU, macroF1 = AA - 0.05; ``jitter[(method, seed)]`` is added to
    every score of that run (to make paired differences vary); the pretraining seed is the seed mod
    ``pretrain_k`` (None: the seed itself, one pretraining run per seed).
    """
    rows = []
    for m_i, method in enumerate(methods):
        for protocol in protocols:
            for budget in budgets:
                for seed in seeds:
                    extra = (jitter or {}).get((method, seed), 0.0)
                    accs = {
                        c: 0.4 + 0.1 * m_i + budget / 1e4 + seed / 100 + cid / 1000 + extra
                        for c, cid in CLASSES.items()
                    }
                    ious = {f"iou.{c[4:]}": a - 0.1 for c, a in accs.items()}
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
                            "pretrain_seed": seed if pretrain_k is None else seed % pretrain_k,
                            "end_time": pd.Timestamp("2026-01-01") + pd.Timedelta(seed, "h"),
                            **accs,
                            **ious,
                            "AA": float(np.mean(list(accs.values()))),
                            "OA": 0.5 + 0.1 * m_i + seed / 100 + extra,
                            "mIoU": float(np.mean(list(ious.values()))),
                            "macroF1": float(np.mean(list(accs.values()))) - 0.05,
                        }
                    )
    return pd.DataFrame(rows)


def test_class_columns_follow_dfc_ids() -> None:
    assert class_columns(make_runs()) == ["acc.Forest", "acc.Urban_Built-up", "acc.Water"]


def test_method_order_and_labels_come_from_the_registry() -> None:
    assert method_order(["zeta", "sscl", "random", "alpha", "imagenet"]) == [
        "random",
        "imagenet",
        "sscl",
        "alpha",
        "zeta",
    ]
    assert [method_label(m) for m in ("random", "sscl", "zeta")] == ["Baseline", "SSCL", "zeta"]


def test_mean_and_sample_std_per_class() -> None:
    stats = summarise(long_form(make_runs())).set_index(["method", "budget", "metric", "class"])
    forest = stats.loc[("sscl", 800, "accuracy", "Forest")]
    values = [0.4 + 0.1 * 0 + 0.08 + s / 100 + 0.001 for s in (0, 1, 2)]
    assert forest["mean"] == pytest.approx(np.mean(values))
    assert forest["std"] == pytest.approx(np.std(values, ddof=1))  # sample std: 0.01 exactly
    assert forest["std"] == pytest.approx(0.01)
    assert forest["n"] == 3
    assert stats.loc[("random", 200, "accuracy", "Urban/Built-up"), "mean"] == pytest.approx(
        0.5 + 0.02 + 0.01 + 0.007
    )
    assert stats.loc[("random", 200, "IoU", "Urban/Built-up"), "mean"] == pytest.approx(0.437)


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


def test_long_form_one_row_per_run_and_score() -> None:
    runs = make_runs(protocols=("linear", "finetune"))
    long = long_form(runs)
    assert len(long) == len(runs) * (2 * len(CLASSES) + 4)  # accuracy and IoU per class; AA OA mIoU macroF1
    assert list(long["class"].cat.categories) == ["", "Forest", "Urban/Built-up", "Water"]
    first = long[(long["run_id"] == "random-linear-200-0")]
    assert [(m, c) for m, c in zip(first["metric"], first["class"], strict=True)][:5] == [
        ("accuracy", "Forest"),
        ("accuracy", "Urban/Built-up"),
        ("accuracy", "Water"),
        ("AA", ""),
        ("OA", ""),
    ]
    assert set(first["metric"]) == {"accuracy", "AA", "OA", "mIoU", "macroF1", "IoU"}
    assert {
        "method",
        "budget",
        "seed",
        "protocol",
        "metric",
        "class",
        "value",
        "budget_unit",
        "code_version",
        "pretrain_seed",
    } <= set(long)


def reference_runs(backbone: str = "tiny", methods: tuple[str, ...] = ("raw", "rf")) -> pd.DataFrame:
    """Reference runs as the runner records them: protocol ``reference``, same budgets and seeds."""
    refs = make_runs(methods=methods).assign(protocol="reference", backbone=backbone, pretrain_seed=np.nan)
    return refs.assign(run_id=refs["run_id"] + f"-{backbone}", result_key=refs["result_key"] + f"-{backbone}")


def test_references_join_every_protocols_table() -> None:
    runs = pd.concat([make_runs(protocols=("linear", "finetune")), reference_runs()], ignore_index=True)
    view = with_references(long_form(runs))
    assert set(view["protocol"]) == {"linear", "finetune"}  # no table of their own
    refs = view[view["reference"]]
    assert (
        set(refs["method"]) == {"raw", "rf"}
        and not view.loc[~view["reference"], "method"].isin(["raw"]).any()
    )
    per_protocol = refs.groupby("protocol")["run_id"].nunique()
    assert (per_protocol == 2 * 2 * 3).all()  # 2 references x 2 budgets x 3 seeds, in each protocol
    alone = with_references(long_form(reference_runs()))
    assert set(alone["protocol"]) == {"reference"} and alone["reference"].all()
    other_budget = with_references(long_form(pd.concat([make_runs(budgets=(200,)), reference_runs()])))
    at_800 = other_budget[other_budget["budget"] == 800]  # no deep run at 800: a table of their own
    assert set(at_800["protocol"]) == {"reference"} and set(at_800["method"]) == {"raw", "rf"}
    assert set(other_budget.loc[other_budget["budget"] == 200, "protocol"]) == {"linear"}


def test_references_under_several_backbone_tags_count_once_own_backbone_first() -> None:
    other = reference_runs("resnet18", methods=("raw",)).assign(OA=0.99)
    runs = pd.concat([make_runs(), reference_runs("tiny", methods=("raw",)), other], ignore_index=True)
    view = with_references(long_form(runs))
    oa = view[(view["method"] == "raw") & (view["metric"] == "OA")]
    assert len(oa) == 2 * 3 and (oa["value"] < 0.99).all()  # the table's backbone (tiny) wins


def record_runs(runs: pd.DataFrame) -> None:
    """Write the hand-made runs to the real MLflow store the way the runner does."""
    from bench.harness.tracking import cell_run, record_seed
    from bench.report.aggregate import ID_TAGS

    for _, run in runs.iterrows():
        tags = {tag: str(run[col]) for col, tag in ID_TAGS.items() if col in run.index}
        parent = cell_run(f"cell-{run['method']}-{run['protocol']}-{run['budget']}", {}, {}, "cell")
        scores = ("AA", "OA", "mIoU", "macroF1")
        metrics = {c: run[c] for c in runs.columns if c.startswith(("acc.", "iou.")) or c in scores}
        record_seed(
            parent,
            run_name=str(run["run_id"]),
            tags=tags,
            params={"code_version": str(run["code_version"]), "pretrain_seed": str(run["pretrain_seed"])},
            metrics=metrics,
            confusion=np.eye(2, dtype=np.int64),
            class_names=["a", "b"],
        )


@pytest.fixture
def tracked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    """A fresh local MLflow store holding :func:`make_runs` (2 methods x 2 budgets x 3 seeds); one
    sscl run at 200 used weights whose pretraining failed its health gate (``--allow-unhealthy``)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("BENCH_EXPERIMENT", "test-aggregate")
    runs = make_runs().assign(pretrain_health="passed")
    runs.loc[
        (runs["method"] == "sscl") & (runs["budget"] == 200) & (runs["seed"] == 1), "pretrain_health"
    ] = "failed: sscl seed 1: skill 0.001"
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
    health = stored.set_index("result_key")["pretrain_health"]
    assert health.to_dict() == tracked.set_index("result_key")["pretrain_health"].to_dict()
