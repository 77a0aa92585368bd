"""A method that cannot run is reported once, up front, skipped, and shown as n/a in the table."""

from __future__ import annotations

from pathlib import Path

import mlflow
import pytest

from bench.cli import main
from bench.harness.availability import recorded_unavailable, screen
from bench.harness.sweep import grid
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

SWEEP = ["sweep", "--methods", "random,imagenet", "--samples", "20", "--seeds", "1", "--protocol", "linear"]


@pytest.fixture(autouse=True)
def offline_empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No ImageNet weights anywhere, and no download: what a fresh offline machine has."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


def test_screen_leaves_out_each_unavailable_method_with_its_reason(tmp_path: Path) -> None:
    units = grid(["random", "imagenet"], [5, 10], [0, 1], ["linear"], backbone="tiny")
    runnable, reasons = screen(units)
    assert runnable == [u for u in units if u.spec.method == "random"]
    assert list(reasons) == ["imagenet"] and "needs a timm trunk" in reasons["imagenet"]
    _, reasons = screen(grid(["imagenet"], [5], [0], ["linear"], backbone="resnet18"))
    assert "no ImageNet weights for resnet18" in reasons["imagenet"]
    _, reasons = screen(
        grid(["imagenet"], [5], [0], ["linear"], backbone="resnet18", weights=tmp_path / "x.pth")
    )
    assert reasons == {"imagenet": f"--weights {tmp_path / 'x.pth'}: no such file"}


@pytest.mark.usefixtures("mlflow_store")
def test_sweep_skips_imagenet_on_tiny_once_and_the_table_keeps_its_column(
    tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*SWEEP, "--data", str(tiny_data_root), "--no-progress"]
    assert main(argv) == 0
    captured = capsys.readouterr()
    out = captured.out
    assert out.count("skipping imagenet: needs a timm trunk") == 1
    assert "UserWarning" not in captured.err  # short-class warnings: one plain line each, after the units
    warned = [line for line in out.splitlines() if line.startswith("warning: ")]
    assert warned and len(warned) == len(set(warned))
    assert out.index("skipping imagenet") < out.index("sweep: 1 done")
    assert "0 failed" in out and "not run (see the first lines): imagenet" in out

    assert main(argv) == 0  # again: nothing to do, and no second record
    assert "sweep: 0 done, 1 skipped" in capsys.readouterr().out
    records = mlflow.search_runs(filter_string="tags.`bench.kind` = 'unavailable'")
    assert len(records) == 1 and records["status"].tolist() == ["FINISHED"]
    (reasons,) = recorded_unavailable().values()
    assert list(reasons) == ["imagenet"]

    assert main(["table"]) == 0
    table = capsys.readouterr().out
    header = next(line for line in table.splitlines() if line.startswith("|  |"))
    assert "ImageNet" in header and "Baseline" in header
    first_row = table.splitlines()[table.splitlines().index(header) + 2]
    imagenet = [c.strip() for c in header.split("|")].index("ImageNet")
    assert first_row.split("|")[imagenet].strip() == "n/a¹"  # short; the reason once, as a footnote
    assert table.count("¹ ImageNet: needs a timm trunk (--backbone resnet18\\|resnet50), not 'tiny'") == 1
