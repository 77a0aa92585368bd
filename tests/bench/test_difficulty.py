"""``bench data difficulty``: per-pixel classifiers on the tiny set, through the real CLI and MLflow."""

from __future__ import annotations

from pathlib import Path

import mlflow
import numpy as np
import pytest

from bench.cli import main
from bench.harness.difficulty import difficulty, gaps
from bench.protocols.budget import validation_split
from datasets import Dataset
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401


def test_rows_score_the_right_pixels(tiny_dataset: Dataset) -> None:
    rows = difficulty(tiny_dataset, samples=(30,), classifiers=("logistic",))
    by_setting = {r.setting: r for r in rows}
    assert set(by_setting) == {"test", "pool-val"}
    test_labels = np.asarray(tiny_dataset.test.labels)
    assert by_setting["test"].confusion.sum() == (test_labels != 255).sum()
    _, val = validation_split(len(tiny_dataset.labelled), tiny_dataset.fingerprint)
    val_labels = np.asarray(tiny_dataset.labelled.labels)[val]
    assert by_setting["pool-val"].confusion.sum() == (val_labels != 255).sum()
    again = difficulty(tiny_dataset, samples=(30,), classifiers=("logistic",))
    for first, second in zip(rows, again, strict=True):  # seeded draw and fit
        np.testing.assert_array_equal(first.confusion, second.confusion)
    gap = gaps(rows)[("logistic", 30)]
    assert gap == pytest.approx(100 * (by_setting["pool-val"].scores.aa - by_setting["test"].scores.aa))


@pytest.mark.usefixtures("mlflow_store")
def test_cli_prints_and_logs_one_run(
    tiny_data_root: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tiny_data_root.parent)  # the dataset line shows the path relative to here
    argv = [
        "data",
        "difficulty",
        "--data",
        str(tiny_data_root),
        "--samples",
        "20,40",
        "--classifiers",
        "logistic",
    ]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "gap logistic 40/class: pool-val AA - test AA" in printed and "Wetlands" in printed
    assert printed.startswith(f"dataset {Path('.') / tiny_data_root.name}  ")  # no machine root
    runs = mlflow.search_runs(filter_string="tags.`bench.kind` = 'difficulty'", output_format="list")
    assert len(runs) == 1
    metrics = runs[0].data.metrics
    assert {
        "test.logistic.20.AA",
        "pool-val.logistic.40.OA",
        "test.logistic.40.acc.Forest",
        "gap.logistic.40",
    } <= set(metrics)
    aa_line = next(
        line for line in printed.splitlines() if line.startswith("logistic") and " 20  test" in line
    )
    assert float(aa_line.split()[3]) == pytest.approx(100 * metrics["test.logistic.20.AA"], abs=0.05)


def test_cli_refuses_an_unknown_classifier(tiny_data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["data", "difficulty", "--data", str(tiny_data_root), "--classifiers", "svm"]) == 2
    assert "unknown svm" in capsys.readouterr().err


def test_control_interval_is_the_paired_t_interval() -> None:
    from scipy import stats

    from bench.harness.difficulty import ControlRow, format_controls

    control, baseline = np.array([0.60, 0.62, 0.58, 0.65, 0.61]), np.array([0.50, 0.55, 0.49, 0.52, 0.51])
    row = ControlRow("finetune", 10, control, baseline, 1.0)
    d = control - baseline
    half = stats.t.ppf(0.975, 4) * d.std(ddof=1) / np.sqrt(5)
    assert row.interval() == pytest.approx((d.mean(), d.mean() - half, d.mean() + half))
    text = format_controls([row, ControlRow("linear", 200, baseline, control, 1.0)])
    assert "above 0" in text.splitlines()[3] and "below 0" in text.splitlines()[4]


@pytest.mark.slow
@pytest.mark.usefixtures("mlflow_store")
def test_cli_controls_on_the_tiny_pool(tiny_pool_data_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--controls`` runs supervised and random as cells and logs their paired difference."""
    argv = ["data", "difficulty", "--data", str(tiny_pool_data_root), "--samples", "20"]
    argv += ["--classifiers", "logistic", "--controls", "--control-samples", "10", "--control-seeds", "2"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "positive control: supervised (pool lc labels) - random" in printed
    runs = mlflow.search_runs(filter_string="tags.`bench.kind` = 'difficulty'", output_format="list")
    assert {"control.linear.10.diff", "control.finetune.10.low"} <= set(runs[0].data.metrics)


def test_printed_paths_carry_no_machine_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``results/difficulty.txt`` is committed: the dataset shows under ``$BENCH_HOME``, not as /abs/path."""
    from bench.cli.common import shown_path

    monkeypatch.setenv("BENCH_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    assert shown_path(tmp_path / "home" / "data" / "synthetic-v3") == "$BENCH_HOME/data/synthetic-v3"
    assert shown_path(tmp_path / "elsewhere") == "elsewhere"
    assert str(tmp_path) not in shown_path(tmp_path / "home" / "data")
