"""Unhealthy and missing results are marked in every output (issue 35, item 4): with
``--allow-unhealthy`` the printed table of ``bench run``, the cell's MLflow parent, ``_paired.csv``,
``_variance.csv`` and the plots carry the tables' mark; a method its gate stopped in a sweep is a
column of ``n/a`` with the reason, and the footer does not say the shown Baseline is missing."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest

from bench.cli import main
from bench.harness import tracking
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401
from tests.bench.test_pretraining import DEAD_CORE

DEAD = [f"--set=core.{k}={v}" for k, v in DEAD_CORE]


@pytest.mark.usefixtures("mlflow_store")
def test_a_gated_method_in_a_sweep_is_an_na_column_with_its_reason(
    tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", "--methods", "core,random", "--samples", "20", "--seeds", "2", "--protocol", "linear"]
    assert main([*argv, "--data", str(tiny_data_root), "--no-progress", *DEAD]) != 0
    capsys.readouterr()
    assert main(["table"]) == 0
    out = capsys.readouterr().out
    header = next(line for line in out.splitlines() if "Baseline" in line and "|" in line)
    assert "CoRe" in header  # the column is kept ...
    aa = next(line for line in out.splitlines() if line.startswith("| AA"))
    assert "n/a" in aa  # ... as n/a
    # with the reason (which of its K = n pretraining seeds the gate stopped first depends on the draw)
    assert re.search(r"stopped: pretraining core seed \d failed its health gate", out)
    assert "no Baseline in this table" not in out  # the Baseline is shown


@pytest.mark.usefixtures("mlflow_store")
def test_allow_unhealthy_marks_the_run_table_the_parent_the_csvs_and_the_plots(
    tiny_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--samples", "20", "--seeds", "2", "--data", str(tiny_data_root), "--no-progress"]
    assert main(["run", "--method", "random", *common]) == 0
    assert main(["run", "--method", "core", *common, *DEAD, "--allow-unhealthy"]) == 0
    printed = capsys.readouterr().out
    header = next(line for line in printed.split("== linear")[-1].splitlines() if "CoRe" in line)
    assert "CoRe ‡" in header  # the printed table's column, not only a line under it
    assert "‡ evaluated on weights that failed their health gate (failed: pretraining core seed 0" in printed

    client, exp_id = tracking.setup_tracking()
    (parent,) = client.search_runs([exp_id], "tags.`bench.kind` = 'cell' and tags.`bench.method` = 'core'")
    assert parent.data.tags["bench.pretrain_health"].startswith(
        "failed (2 of 2 seeds): failed: pretraining core"
    )
    (healthy,) = client.search_runs([exp_id], "tags.`bench.kind` = 'cell' and tags.`bench.method` = 'random'")
    assert healthy.data.tags["bench.pretrain_health"] == "passed"

    long_csv = tmp_path / "long.csv"
    assert main(["table", "--long-csv", str(long_csv)]) == 0
    for suffix in ("_paired", "_variance"):
        frame = pd.read_csv(long_csv.with_name(f"long{suffix}.csv"))
        marks = dict(zip(frame["method"], frame["pretrain_health"], strict=False))
        assert marks["core"].startswith("failed (2 of 2 seed runs): failed: pretraining core seed 0"), suffix
        if "random" in marks:  # the variance CSV has the Baseline's row too
            assert marks["random"] == "passed"

    from bench.report.aggregate import (
        long_form,
        runs_from_mlflow,
        summarise,
        unhealthy_methods,
        with_references,
    )
    from bench.report.plot import class_figure, curves_figure

    long = long_form(runs_from_mlflow())
    unhealthy = unhealthy_methods(long)
    assert set(unhealthy) == {"core"}
    stats = summarise(with_references(long))
    for fig in (curves_figure(stats, unhealthy), class_figure(stats, "linear", unhealthy)):
        legend = [t.get_text() for t in fig.legends[0].get_texts()]
        assert "CoRe ‡" in legend and "Baseline" in legend
        assert any("failed their health gate" in t.get_text() for t in fig.texts)
    assert main(["plot", "--out", str(tmp_path / "fig.png")]) == 0
