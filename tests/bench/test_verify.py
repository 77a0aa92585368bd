"""``bench verify``: committed seed runs re-run here agree with their CSV, and a wrong one is named."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401


@pytest.fixture
def small_grid(tiny_data_root: Path, tmp_path: Path, mlflow_store: str) -> Path:  # noqa: F811
    """A committed grid in miniature: random (2 pretraining seeds) and raw, 2 seeds, its long CSV."""
    from bench.cli import main

    data = ["--data", str(tiny_data_root), "--no-progress", "--samples", "10", "--seeds", "2"]
    assert main(["run", "--method", "random", "--pretrain-seeds", "2", *data]) == 0
    assert main(["run", "--method", "raw", *data]) == 0
    long_csv = tmp_path / "runs_long.csv"
    assert (
        main(["table", "--format", "md", "--out", str(tmp_path / "t.md"), "--long-csv", str(long_csv)]) == 0
    )
    return long_csv


def test_verify_reproduces_a_small_grid_and_names_a_wrong_number(
    small_grid: Path, tiny_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main
    from bench.report.aggregate import runs_from_mlflow

    stored = len(runs_from_mlflow())
    argv = [
        "verify",
        "--from",
        str(small_grid),
        "--cells",
        "4",
        "--data",
        str(tiny_data_root),
        "--no-progress",
    ]
    assert main([*argv, "--tolerance", "0"]) == 0  # same machine, same code: bit-identical
    out = capsys.readouterr().out
    assert "4 of 4 seed runs reproduced within 0 points (largest difference 0.000)" in out
    assert len(runs_from_mlflow()) == stored  # the user's store is untouched

    long = pd.read_csv(small_grid, keep_default_na=False)
    aa = (long["metric"] == "AA") & (long["method"] == "random") & (long["seed"] == 1)
    long.loc[aa, "value"] = long.loc[aa, "value"].astype(float) + 0.05  # a number that was not computed
    tampered = tmp_path / "tampered.csv"
    long.to_csv(tampered, index=False)
    assert main([*argv, "--from", str(tampered), "--methods", "random", "--cells", "2"]) == 1, (
        capsys.readouterr().err
    )
    out = capsys.readouterr().out
    assert "random linear 10 pixels seed 1" in out and "DIFFERS" in out
    assert "1 of 2 seed runs reproduced" in out


def test_verify_refuses_results_of_another_dataset(
    small_grid: Path, tiny_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    long = pd.read_csv(small_grid, keep_default_na=False)
    other = tmp_path / "other.csv"
    long.assign(dataset="7f3342b632355b1d").to_csv(other, index=False)
    argv = ["verify", "--from", str(other), "--cells", "1", "--data", str(tiny_data_root), "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "made on dataset 7f3342b632355b1d" in err and "regenerated" in err and len(err.splitlines()) == 1


def test_a_seed_is_re_run_at_its_recorded_thread_count(small_grid: Path) -> None:
    """torch's CPU results follow the thread count, so the check re-runs at the recorded one."""
    from bench.report.aggregate import long_from_csv
    from bench.report.verify import units_of

    units = units_of(long_from_csv(small_grid))
    assert {u.threads for u in units} == {torch.get_num_threads()}
    assert {u.pretrain_seeds for u in units if u.method == "random"} == {2}
