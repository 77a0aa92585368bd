"""The sweep on the tiny dataset: runs the grid, resumes without duplicates, shares it between workers."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch

from bench.core.paths import bench_home
from bench.harness.claims import ClaimStore
from bench.harness.runner import result_key
from bench.harness.sweep import grid, run_sweep
from bench.harness.tracking import completed_runs, setup_tracking
from datasets import Dataset

CPU = torch.device("cpu")


@pytest.fixture
def store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh local MLflow store for this test."""
    monkeypatch.chdir(tmp_path)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("BENCH_EXPERIMENT", "test-sweep")
    return tmp_path


def _keys_in_store() -> Counter[str]:
    runs = completed_runs()
    return Counter(runs["tags.bench.result_key"]) if not runs.empty else Counter()


def _sweep_command(data: Path) -> tuple[list[str], dict[str, str]]:
    """A 4-unit ``bench sweep`` (random, 2 budgets x 2 seeds, linear) as a worker subprocess runs it."""
    args = "--methods random --samples 5,10 --seeds 2 --protocol linear --device cpu --no-progress"
    cmd = [sys.executable, "-m", "bench", "sweep", "--data", str(data), *args.split()]
    # the caller's environment passes through (a GPU machine sets PYTHONPATH to its wheels): the repo
    # goes in front of it, not in its place
    repo = str(Path(__file__).resolve().parents[2])
    python_path = os.pathsep.join(p for p in (repo, os.environ.get("PYTHONPATH")) if p)
    return cmd, os.environ | {"PYTHONPATH": python_path}


def test_sweep_resumes_skips_and_reports_failures(store: Path, tiny_dataset: Dataset) -> None:
    claims = ClaimStore(bench_home() / "claims")
    first = grid(["random"], [5], [0], ["linear"])
    report = run_sweep(first, tiny_dataset, CPU, claims, progress=False)
    assert len(report.done) == 1 and not report.failed

    # the interrupted worker of the next run left a claim behind (its pid is dead): taken over
    full = grid(["random", "no-such-method"], [5], [0, 1], ["linear"])
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = {"host": socket.gethostname(), "pid": int(dead.stdout), "time": 0}
    (claims.root / result_key(full[1].spec, 1, tiny_dataset)).write_text(json.dumps(stale))
    report = run_sweep(full, tiny_dataset, CPU, claims, progress=False)
    assert report.skipped == ["random linear 5 pixels seed 0"]
    assert report.done == ["random linear 5 pixels seed 1"]
    assert set(report.failed) == {
        "no-such-method linear 5 pixels seed 0",
        "no-such-method linear 5 pixels seed 1",
    }
    assert "unknown method" in report.summary()

    again = run_sweep(full, tiny_dataset, CPU, claims, progress=False)
    assert not again.done and len(again.skipped) == 2
    keys = _keys_in_store()
    assert len(keys) == 2 and set(keys.values()) == {1}
    assert not [p for p in claims.root.iterdir() if not p.name.startswith(".")]  # every claim released


def test_two_worker_processes_share_the_grid(store: Path, tiny_data_root: Path) -> None:
    cmd, env = _sweep_command(tiny_data_root)
    workers = [
        subprocess.Popen(
            [*cmd, "--worker-id", f"w{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    keys = _keys_in_store()
    assert len(keys) == 4 and set(keys.values()) == {1}, keys  # every unit exactly once
    done = [int(out.split("sweep: ")[1].split(" done")[0]) for out in outputs]
    assert sum(done) == 4, outputs


def test_killed_sweep_resumes_without_duplicates(
    store: Path, tiny_data_root: Path, tiny_dataset: Dataset
) -> None:
    cmd, env = _sweep_command(tiny_data_root)
    setup_tracking()  # create the store before two processes touch it
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline and proc.poll() is None:
        if len(_keys_in_store()) >= 1:
            break
        time.sleep(0.5)
    proc.kill()  # SIGKILL: no cleanup, its claim (if any) stays behind
    proc.wait()
    before = _keys_in_store()
    assert 1 <= len(before) < 4

    units = grid(["random"], [5, 10], [0, 1], ["linear"])
    report = run_sweep(units, tiny_dataset, CPU, ClaimStore(bench_home() / "claims"), progress=False)
    assert len(report.skipped) == len(before) and len(report.done) == 4 - len(before)
    keys = _keys_in_store()
    assert len(keys) == 4 and set(keys.values()) == {1}
