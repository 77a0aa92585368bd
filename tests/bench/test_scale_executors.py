"""Ray and submitit sweeps of one tiny grid give the local sweep's table; a killed Ray worker costs nothing.

Real engines: a local Ray instance (2 CPUs) and submitit's local executor (the job arrays it would
submit to SLURM, run as local processes). The grid is 2 units of the ``random`` method (no
pretraining cost), so the test measures the plumbing, not training.
"""

from __future__ import annotations

import os
import re
import signal
import threading
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from bench.core.paths import bench_home
from bench.harness.claims import ClaimStore
from bench.harness.executors import RemoteContext, run_ray, run_submitit
from bench.harness.sweep import grid, run_sweep
from bench.harness.tracking import completed_runs
from bench.report.aggregate import long_form, runs_from_mlflow
from bench.report.table import build_tables, render
from datasets import Dataset

CPU = torch.device("cpu")
UNITS = grid(["random"], [5], [0, 1], ["linear"])


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    return tmp_path


def _table(experiment: str) -> str:
    """The markdown table, less the code version (the tree may be committed to between the sweeps)."""
    return re.sub(
        r"code: \S+", "code: -", render(build_tables(long_form(runs_from_mlflow(experiment))), "md")
    )


def _keys(experiment: str) -> Counter[str]:
    return Counter(completed_runs(experiment)["tags.bench.result_key"])


def _kill_first_unit_task(stop: threading.Event, killed: list[int]) -> None:
    """SIGKILL the first Ray worker seen running ``unit_task`` (Ray titles it ``ray::unit_task``)."""
    while not stop.is_set() and not killed:
        for pid in filter(str.isdigit, os.listdir("/proc")):
            try:
                title = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if title.startswith(b"ray::unit_task"):
                os.kill(int(pid), signal.SIGKILL)
                killed.append(int(pid))
                return
        time.sleep(0.02)


def test_ray_and_submitit_sweeps_match_the_local_sweep(
    store: Path, tiny_data_root: Path, tiny_dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("BENCH_EXPERIMENT", "local")
    local = run_sweep(UNITS, tiny_dataset, CPU, ClaimStore(bench_home() / "claims"), progress=False)
    assert len(local.done) == 2

    monkeypatch.setenv("BENCH_EXPERIMENT", "ray")
    ctx = RemoteContext.of_driver({"data": tiny_data_root}, "cpu")
    stop, killed = threading.Event(), []
    killer = threading.Thread(target=_kill_first_unit_task, args=(stop, killed))
    killer.start()
    try:
        ray_report = run_ray(UNITS, tiny_dataset, ctx, num_cpus=2)
    finally:
        stop.set()
        killer.join()
    assert killed, "no Ray unit task was seen running"
    assert sorted(ray_report.done) == sorted(local.done) and not ray_report.failed, ray_report.summary()
    assert set(_keys("ray").values()) == {1} and len(_keys("ray")) == 2  # the killed unit: retried, once

    again = run_ray(UNITS, tiny_dataset, ctx, num_cpus=2)  # complete: nothing is sent to Ray
    assert len(again.skipped) == 2 and not again.done

    monkeypatch.setenv("BENCH_EXPERIMENT", "submitit")
    ctx = RemoteContext.of_driver({"data": tiny_data_root}, "cpu")
    sub = run_submitit(UNITS, tiny_dataset, ctx, folder=store / "submitit", cluster="local", time_min=10)
    assert sorted(sub.done) == sorted(local.done) and not sub.failed, sub.summary()
    assert set(_keys("submitit").values()) == {1} and len(_keys("submitit")) == 2

    assert _table("ray") == _table("local") == _table("submitit")
