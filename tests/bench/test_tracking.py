"""MLflow records: completion marker, lookup by result key, the completed-runs frame."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bench.harness import tracking
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

NAMES = ("Forest", "Urban/Built-up")


def record(parent: str, key: str, **kw: object) -> str:
    return tracking.record_seed(
        parent,
        run_name="r",
        tags={"bench.result_key": key, "bench.seed": "0"},
        params={"config_hash": "h"},
        metrics={"AA": 0.5, "OA": 0.6, f"acc.{tracking.metric_name(NAMES[1])}": 0.4},
        confusion=np.eye(2, dtype=np.int64),
        class_names=NAMES,
        **kw,
    )


@pytest.mark.usefixtures("mlflow_store")
def test_complete_runs_are_found_and_listed() -> None:
    parent = tracking.cell_run("cell1", {"bench.method": "random"}, {"p": "1"}, "cell")
    assert tracking.cell_run("cell1", {}, {}, "cell") == parent  # one parent per cell key
    assert tracking.find_completed("k1") is None
    run_id = record(parent, "k1")
    assert tracking.find_completed("k1") == run_id
    frame = tracking.completed_runs()
    assert len(frame) == 1
    row = frame.iloc[0]
    assert row["tags.bench.status"] == "complete" and row["tags.mlflow.parentRunId"] == parent
    assert row["metrics.acc.Urban_Built-up"] == pytest.approx(0.4) and row["params.config_hash"] == "h"
    client, _ = tracking.setup_tracking()
    assert [a.path for a in client.list_artifacts(run_id)] == ["confusion_matrix.csv", "confusion_matrix.png"]


@pytest.mark.usefixtures("mlflow_store")
def test_failed_write_is_not_complete(monkeypatch: pytest.MonkeyPatch) -> None:
    parent = tracking.cell_run("cell2", {}, {}, "cell")
    monkeypatch.setattr(
        tracking.MlflowClient, "log_artifacts", lambda *a, **k: (_ for _ in ()).throw(OSError("x"))
    )
    with pytest.raises(OSError):
        record(parent, "k2")
    assert tracking.find_completed("k2") is None
    assert tracking.completed_runs().empty


def test_default_uri_is_what_mlflow_ui_opens(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from mlflow.store.tracking import DEFAULT_TRACKING_URI

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)
    assert DEFAULT_TRACKING_URI == "sqlite:///mlflow.db"
    assert tracking.tracking_uri() == f"sqlite:///{tmp_path / 'mlflow.db'}"
