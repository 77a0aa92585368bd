"""Kills leave the tracking store usable: atomic store creation, KILLED runs, parent status."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bench.harness import tracking
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

CREATE_STORE = "from bench.harness.tracking import setup_tracking; setup_tracking('probe')"
REPO = Path(__file__).resolve().parents[2]


def _kill_during_creation(folder: Path, delay_s: float) -> None:
    """Start a first command on a new store and SIGKILL it ``delay_s`` after MLflow starts creating it."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{folder / 'mlflow.db'}",
        "MLFLOW_LOGGING_LEVEL": "INFO",  # the line the kill is timed on
        "PYTHONPATH": str(REPO),
    }
    proc = subprocess.Popen(
        [sys.executable, "-c", CREATE_STORE], cwd=folder, env=env, stderr=subprocess.PIPE, text=True
    )
    assert proc.stderr is not None
    started = False
    for line in proc.stderr:  # MLflow logs this line when it starts creating the tables
        if "Creating initial MLflow database tables" in line:
            started = True
            break
    assert started, "the store was never created"
    time.sleep(delay_s)
    proc.send_signal(signal.SIGKILL)
    proc.wait()


@pytest.mark.slow
def test_kill_during_store_creation_leaves_no_store_or_a_working_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Before the fix, 2 of 5 such kills left a store that failed every later command."""
    for delay_s in (0.0, 0.3, 1.0):
        folder = tmp_path / f"kill-{delay_s}"
        folder.mkdir()
        _kill_during_creation(folder, delay_s)
        db = folder / "mlflow.db"
        monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
        monkeypatch.chdir(folder)
        client, exp_id = tracking.setup_tracking("after-kill")
        client.create_run(exp_id)
        assert len(client.search_runs([exp_id])) == 1, delay_s
        assert not list(folder.glob(".mlflow.db.*")), "the killed creator's temporary is removed"


def _seed(parent: str, seed: str, complete: bool = True) -> str:
    if not complete:
        client, exp_id = tracking.setup_tracking()
        run = client.create_run(
            exp_id, tags={"bench.kind": "seed", "mlflow.parentRunId": parent, "bench.seed": seed}
        )
        client.set_terminated(run.info.run_id, "FAILED")
        return run.info.run_id
    return tracking.record_seed(
        parent,
        run_name=f"seed {seed}",
        tags={"bench.result_key": f"k{seed}", "bench.seed": seed},
        params={},
        metrics={"AA": 0.5},
        confusion=np.eye(2, dtype=np.int64),
        class_names=("a", "b"),
    )


@pytest.mark.usefixtures("mlflow_store")
def test_runs_of_a_dead_process_are_marked_killed_live_ones_kept() -> None:
    parent = tracking.cell_run("cell-a", {}, {}, "cell a")
    client, exp_id = tracking.setup_tracking()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead_pid = dead.stdout.decode().strip()
    runs = {}
    for who, pid in (("dead", dead_pid), ("alive", str(os.getppid()))):
        tags = {"mlflow.parentRunId": parent, **tracking.process_tags(), "bench.pid": pid}
        runs[who] = client.create_run(exp_id, tags=tags).info.run_id
    assert tracking.cell_run("cell-a", {}, {}, "cell a") == parent  # the next command of the cell
    assert client.get_run(runs["dead"]).info.status == "KILLED"
    assert client.get_run(runs["alive"]).info.status == "RUNNING"
    # a sweep's pretraining run is not nested: found by its weights' key before they are trained again
    tags = {"bench.pretrain_key": "w1", **tracking.process_tags(), "bench.pid": dead_pid}
    orphan = client.create_run(exp_id, tags=tags).info.run_id
    assert tracking.close_dead_runs(pretrain_key="w1") == [orphan]
    assert client.get_run(orphan).info.status == "KILLED"


@pytest.mark.usefixtures("mlflow_store")
def test_parent_status_follows_its_seeds() -> None:
    parent = tracking.cell_run("cell-b", {}, {}, "cell b")
    client, _ = tracking.setup_tracking()
    client.set_terminated(parent, "FAILED")  # e.g. pretraining raised in an earlier command
    _seed(parent, "1", complete=False)
    _seed(parent, "0")
    assert client.get_run(parent).info.status == "FAILED"  # seed 1 is still not done
    _seed(parent, "1")
    assert client.get_run(parent).info.status == "FINISHED"
