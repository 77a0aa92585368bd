"""MLflow as users compare runs: one weights artifact per trained healthy pretraining run, the
artifact root beside a local store, MLflow's source tags, and MLflow's telemetry off by default."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import numpy as np
import pytest
import torch

from bench.harness import tracking
from bench.harness.pretraining import PretrainSpec, UnhealthyPretraining, load_or_pretrain
from datasets import Dataset
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401
from tests.bench.test_pretraining import DEAD_CORE


@pytest.mark.usefixtures("mlflow_store")
def test_a_run_that_fails_its_gate_logs_no_weights(tiny_dataset: Dataset) -> None:
    spec = PretrainSpec("core", "tiny", seed=3, method_overrides=DEAD_CORE)
    with pytest.raises(UnhealthyPretraining):
        load_or_pretrain(spec, tiny_dataset, torch.device("cpu"), progress=False)
    client, exp_id = tracking.setup_tracking()
    (run,) = client.search_runs([exp_id], "tags.`bench.kind` = 'pretrain'")
    assert run.info.status == "FAILED" and client.list_artifacts(run.info.run_id) == []
    assert run.data.tags["mlflow.source.name"].startswith("bench")


def test_artifacts_of_a_local_store_go_beside_it_not_into_the_working_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, elsewhere = tmp_path / "store", tmp_path / "elsewhere"
    store.mkdir(), elsewhere.mkdir()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")
    monkeypatch.setenv("BENCH_EXPERIMENT", "beside-test")
    monkeypatch.chdir(elsewhere)
    parent = tracking.parent_run("cell", "bench.cell_key", "k", "cell")
    client, exp_id = tracking.setup_tracking()
    assert client.get_experiment(exp_id).artifact_location == (store / "mlruns" / "beside-test").as_uri()
    note = tmp_path / "note.txt"
    note.write_text("x")
    client.log_artifact(parent, str(note))
    artifact_dir = Path(client.get_run(parent).info.artifact_uri.removeprefix("file://"))
    assert (artifact_dir / "note.txt").is_file() and artifact_dir.is_relative_to(store)
    assert list(elsewhere.iterdir()) == []  # nothing lands where the command happened to run
    assert client.get_run(parent).data.tags["mlflow.source.type"] == "LOCAL"
    assert "mlflow.source.name" in client.get_run(parent).data.tags
    mlflow.set_tracking_uri(None)


#: Environment variables that make MLflow switch telemetry off by itself (CI, pytest), removed so
#: the child sees what a user's shell has.
_QUIET = {"PYTEST_CURRENT_TEST", "CI", "GITHUB_ACTIONS", "MLFLOW_DISABLE_TELEMETRY", "DO_NOT_TRACK"}


def _child(code: str, **env: str) -> str:
    clean = {k: v for k, v in os.environ.items() if k not in _QUIET and not k.endswith("_CI")}
    done = subprocess.run(
        [sys.executable, "-c", code], env={**clean, **env}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_mlflow_telemetry_is_off_unless_the_user_turns_it_on() -> None:
    probe = (
        "import os, bench.harness.tracking; from mlflow.telemetry import get_telemetry_client; "
        "from mlflow.telemetry.utils import is_telemetry_disabled; "
        "print(os.environ['MLFLOW_DISABLE_TELEMETRY'], is_telemetry_disabled(), get_telemetry_client())"
    )
    assert _child(probe) == "true True None"
    # the user's own setting is kept (checked without importing mlflow: it would start telemetry)
    keep = "import os, bench; print(os.environ['MLFLOW_DISABLE_TELEMETRY'])"
    assert _child(keep, MLFLOW_DISABLE_TELEMETRY="false") == "false"
    assert (
        _child("import os, bench; print(os.environ.get('MLFLOW_DISABLE_TELEMETRY'))", DO_NOT_TRACK="1")
        == "None"
    )


def _seed(parent: str, seed: int, health: str) -> str:
    names = ("Forest", "Water")
    run_id = tracking.start_seed(parent, run_name=f"s{seed}", tags={"bench.seed": str(seed)})
    time.sleep(0.3)  # the seed's work
    return tracking.record_seed(
        parent,
        run_name=f"s{seed}",
        tags={"bench.result_key": f"k{seed}", "bench.seed": str(seed), tracking.HEALTH_TAG: health},
        params={"config_hash": "h"},
        metrics={"AA": 0.5, "OA": 0.6},
        confusion=np.eye(2, dtype=np.int64),
        class_names=names,
        run_id=run_id,
    )


@pytest.mark.usefixtures("mlflow_store")
def test_a_cell_parent_spans_its_seeds_and_is_marked_when_they_used_unhealthy_weights(tmp_path: Path) -> None:
    from bench.harness.pretraining import HEALTH_TAG

    assert tracking.HEALTH_TAG == HEALTH_TAG  # one tag, read on seeds and written on parents
    parent = tracking.cell_run("cell-u", {"bench.method": "core"}, {}, "cell")
    last = _seed(parent, 0, "passed")
    client, _ = tracking.setup_tracking()
    cell = client.get_run(parent)
    assert cell.info.end_time >= client.get_run(last).info.end_time  # not created-and-done in ms
    assert cell.info.end_time - cell.info.start_time >= 300
    assert cell.data.tags[HEALTH_TAG] == "passed"

    line = "failed: pretraining core seed 1 failed its health gate: recon_skill 0.01 < 0.05"
    last = _seed(parent, 1, line)
    cell = client.get_run(parent)
    assert cell.info.end_time >= client.get_run(last).info.end_time
    assert cell.data.tags[HEALTH_TAG] == f"failed (1 of 2 seeds): {line}" and cell.info.status == "FINISHED"
    table = Path(client.download_artifacts(parent, "cell_table.md", str(tmp_path))).read_text()
    assert "UNHEALTHY: 1 of 2 seeds" in table and "recon_skill 0.01 < 0.05" in table


@pytest.mark.usefixtures("mlflow_store")
def test_bench_run_prints_the_runs_url_on_the_model_training_view(
    tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert tracking.runs_url("http://host:5000/", "7") == (
        "http://host:5000/#/experiments/7/runs?workflowType=machine_learning"
    )
    from bench.cli import main

    argv = ["run", "--method", "random", "--samples", "10", "--seeds", "1", "--protocol", "linear"]
    assert main([*argv, "--data", str(tiny_data_root), "--no-progress"]) == 0
    _, exp_id = tracking.setup_tracking()
    url = f"http://127.0.0.1:5000/#/experiments/{exp_id}/runs?workflowType=machine_learning"
    assert f"then open {url}" in capsys.readouterr().out
