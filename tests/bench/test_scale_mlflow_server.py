"""A real ``mlflow server`` (sqlite backend, 127.0.0.1, free port): shared by workers, killed, restarted.

- two ``bench sweep`` workers against it: every seed run and every cell's parent run exactly once;
- the server killed mid-sweep: the worker waits ``BENCH_TRACKING_PATIENCE_S``, then stops with one
  line; no run is complete without its metrics; after a restart a re-run does exactly the rest;
- ``bench table`` against a dead server: one line, within seconds.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

REPO = Path(__file__).resolve().parents[2]
#: 3 cells (budgets) x 2 seeds of the method without pretraining.
SWEEP = "--methods random --samples 5,10,15 --seeds 2 --protocol linear --device cpu --no-progress"
UNITS = 6


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MlflowServer:
    """``mlflow server`` in its own process group (it forks uvicorn: kill the group, not the pid)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 240.0) -> None:
        cmd = [sys.executable, "-m", "mlflow", "server", "--host", "127.0.0.1", "--port", str(self.port)]
        cmd += ["--backend-store-uri", f"sqlite:///{self.root / 'server.db'}"]
        cmd += ["--artifacts-destination", str(self.root / "artifacts"), "--workers", "1"]
        env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}  # no job runner processes
        log = (self.root / "server.log").open("ab")
        self.proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=log, start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, (self.root / "server.log").read_text()[-2000:]
            try:
                with urllib.request.urlopen(f"{self.url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        return
            except OSError:
                time.sleep(0.5)
        raise TimeoutError(f"mlflow server did not answer on {self.url} within {timeout} s")

    def kill(self) -> None:
        """SIGKILL the server and its workers: no shutdown, as when a machine dies."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    srv = MlflowServer(tmp_path_factory.mktemp("mlflow_server"))
    srv.start()
    yield srv
    srv.kill()


def _env(server: MlflowServer, experiment: str, home: Path, **extra: str) -> dict[str, str]:
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    return os.environ | {
        "MLFLOW_TRACKING_URI": server.url,
        "BENCH_EXPERIMENT": experiment,
        "BENCH_HOME": str(home),
        "PYTHONPATH": python_path,
        "OMP_NUM_THREADS": "1",
        **extra,
    }


def _sweep(data: Path, worker: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "bench",
        "sweep",
        "--data",
        str(data),
        *SWEEP.split(),
        "--worker-id",
        worker,
    ]


def _runs(server: MlflowServer, experiment: str, kind: str) -> list:
    client = MlflowClient(server.url)
    exp = client.get_experiment_by_name(experiment)
    return [] if exp is None else client.search_runs([exp.experiment_id], f"tags.`bench.kind` = '{kind}'")


def _complete(server: MlflowServer, experiment: str) -> list:
    return [r for r in _runs(server, experiment, "seed") if r.data.tags.get("bench.status") == "complete"]


def test_two_workers_record_every_seed_and_parent_once(
    server: MlflowServer, tiny_data_root: Path, tmp_path: Path
) -> None:
    env = _env(server, "two-workers", tmp_path / "home")
    workers = [
        subprocess.Popen(
            _sweep(tiny_data_root, f"w{i}"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [w.communicate(timeout=600)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs
    seeds = Counter(r.data.tags["bench.result_key"] for r in _complete(server, "two-workers"))
    assert len(seeds) == UNITS and set(seeds.values()) == {1}, seeds
    cells = Counter(r.data.tags["bench.cell_key"] for r in _runs(server, "two-workers", "cell"))
    assert len(cells) == 3 and set(cells.values()) == {1}, cells  # one parent per cell, not 4 for 3


def test_killed_server_stops_workers_then_a_rerun_does_the_rest(
    server: MlflowServer, tiny_data_root: Path, tmp_path: Path
) -> None:
    env = _env(server, "fault", tmp_path / "home", BENCH_TRACKING_PATIENCE_S="4")
    worker = subprocess.Popen(
        _sweep(tiny_data_root, "w"), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and worker.poll() is None and not _complete(server, "fault"):
        time.sleep(0.2)
    assert worker.poll() is None, worker.communicate()
    server.kill()  # mid-sweep: at least one unit recorded, the worker busy with the next
    killed_at = time.monotonic()
    try:
        out, err = worker.communicate(timeout=120)
        waited = time.monotonic() - killed_at
    finally:
        server.start()  # the next tests (and this one's re-run) need it back
    assert worker.returncode == 2, (out, err)
    last = err.strip().splitlines()[-1]
    assert last.startswith(f"error: tracking server {server.url} did not answer for 4 s"), err
    assert "Traceback" not in err, err
    assert waited < 60, waited  # patience 4 s per call, not MLflow's ~8 minutes of retries

    complete = _complete(server, "fault")
    assert 1 <= len(complete) < UNITS
    expected = set(MlflowClient(server.url).get_run(complete[0].info.run_id).data.metrics)
    assert {"AA", "OA"} <= expected
    assert all(set(r.data.metrics) == expected for r in complete)  # complete = all metrics logged

    rerun = subprocess.run(_sweep(tiny_data_root, "w"), env=env, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert f"sweep: {UNITS - len(complete)} done, {len(complete)} skipped" in rerun.stdout, rerun.stdout
    seeds = Counter(r.data.tags["bench.result_key"] for r in _complete(server, "fault"))
    assert len(seeds) == UNITS and set(seeds.values()) == {1}, seeds


def test_table_against_a_dead_server_fails_fast_with_one_line(tmp_path: Path) -> None:
    dead = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    env = os.environ | {"MLFLOW_TRACKING_URI": dead, "BENCH_HOME": str(tmp_path / "home")}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bench", "table"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2, result
    assert result.stderr.strip().startswith(f"error: tracking server {dead} did not answer for 5 s")
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert time.monotonic() - start < 90  # 5 s of patience plus the interpreter's start (slow when loaded)
