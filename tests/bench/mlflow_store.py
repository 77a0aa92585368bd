"""A throwaway MLflow store for tests: one sqlite file per session, one experiment per test."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def mlflow_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("mlflow")


@pytest.fixture
def mlflow_store(mlflow_dir: Path, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point bench.harness.tracking at a temp sqlite store (artifacts under it) and a fresh experiment."""
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{mlflow_dir / 'mlflow.db'}")
    experiment = f"test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BENCH_EXPERIMENT", experiment)
    monkeypatch.chdir(mlflow_dir)
    return experiment
