"""A seed run logs IoU, mIoU and macro F1 that agree with its own confusion matrix artifact."""

from __future__ import annotations

import math

import mlflow
import pandas as pd
import pytest
import torch

from bench.harness.runner import CellSpec, run_seed
from bench.harness.tracking import completed_runs, metric_name
from bench.models.backbones import build_backbone
from bench.protocols.metrics import Scores
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401


@pytest.mark.slow  # about 35 s on 2 shared cores: a real linear evaluation of the tiny set
@pytest.mark.usefixtures("mlflow_store")
def test_seed_run_logs_segmentation_scores_of_its_confusion(tiny_dataset) -> None:
    spec = CellSpec("random", 20, protocol="linear")
    backbone = build_backbone("tiny", len(tiny_dataset.band_names))
    result = run_seed(spec, 0, tiny_dataset, torch.device("cpu"), backbone=backbone, progress=False)
    run = completed_runs().set_index("run_id").loc[result.run_id]
    path = mlflow.artifacts.download_artifacts(run_id=result.run_id, artifact_path="confusion_matrix.csv")
    expected = Scores.from_confusion(pd.read_csv(path, index_col=0).to_numpy())
    assert run["metrics.mIoU"] == pytest.approx(expected.miou) and 0 < expected.miou < 1
    assert run["metrics.macroF1"] == pytest.approx(expected.macro_f1)
    for name, iou in zip(tiny_dataset.classes.names, expected.iou, strict=True):
        logged = run.get(f"metrics.iou.{metric_name(name)}", math.nan)
        assert (math.isnan(iou) and math.isnan(logged)) or logged == pytest.approx(iou), name
