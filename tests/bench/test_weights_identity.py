"""A ``--weights`` file enters keys and MLflow by its content, never by its path (DESIGN 13)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from bench.harness.pretraining import PretrainSpec
from bench.harness.runner import CellSpec, result_key
from datasets import Dataset
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401
from tests.methods.test_imagenet import _multispectral_resnet18, offline_empty_hub  # noqa: F401


def test_the_weights_identity_is_the_files_content(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save(_multispectral_resnet18(13, seed=1), path)
    first = PretrainSpec("imagenet", "resnet18", weights=path).identity()["weights"]
    copy = tmp_path / "elsewhere" / "renamed.pth"
    copy.parent.mkdir()
    shutil.copy(path, copy)
    assert PretrainSpec("imagenet", "resnet18", weights=copy).identity()["weights"] == first
    torch.save(_multispectral_resnet18(13, seed=2), path)  # replaced at the same path
    assert PretrainSpec("imagenet", "resnet18", weights=path).identity()["weights"] != first
    assert first.startswith("sha256:") and str(tmp_path) not in first


def test_a_method_that_reads_no_weights_is_not_keyed_by_them(tmp_path: Path, tiny_dataset: Dataset) -> None:
    path = tmp_path / "w.pth"
    torch.save({"x": torch.zeros(1)}, path)
    assert PretrainSpec("random", "tiny", weights=path).identity()["weights"] is None
    plain, stray = CellSpec("random", 10), CellSpec("random", 10, weights=path)
    assert result_key(plain, 0, tiny_dataset) == result_key(stray, 0, tiny_dataset)


@pytest.mark.usefixtures("mlflow_store")
def test_a_file_replaced_at_the_same_path_gives_new_keys_and_new_results(
    tiny_data_root: Path, tmp_path: Path
) -> None:
    from bench.cli import main
    from bench.report.aggregate import runs_from_mlflow

    path = tmp_path / "ssl4eo.pth"
    argv = ["run", "--method", "imagenet", "--backbone", "resnet18", "--weights", str(path), "--label", "S"]
    argv += ["--samples", "10", "--seeds", "1", "--data", str(tiny_data_root), "--no-progress"]
    torch.save(_multispectral_resnet18(13, seed=3), path)
    assert main(argv) == 0
    torch.save(_multispectral_resnet18(13, seed=4), path)
    assert main(argv) == 0  # was: "1 seed already recorded", the old weights reused
    runs = runs_from_mlflow()
    assert len(runs) == 2 and runs["result_key"].nunique() == 2
