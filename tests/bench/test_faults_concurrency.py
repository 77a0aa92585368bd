"""Two `bench run` of one cell at once do each seed once (issue 25 item 6), and claims on a
home where none can be written let the work go ahead.

Both processes import everything and open the data first, then start the command together on a
signal, so they reach the seeds at the same moment; `run` claims each seed as `sweep` does.
"""

from __future__ import annotations

import errno
import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
import torch
from mlflow.tracking import MlflowClient

from bench.harness import tracking
from bench.harness.claims import ClaimStore
from bench.harness.runner import CellSpec, result_key, run_cell
from datasets import Dataset
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

REPO = Path(__file__).resolve().parents[2]
SEEDS = 4

WORKER = """
import sys, time
from pathlib import Path
from bench.cli import main
from datasets import load_dataset
import bench.harness.runner  # the imports, before the start signal
load_dataset(sys.argv[1], progress=False)
go = Path(sys.argv[2])
while not go.exists():
    time.sleep(0.01)
sys.exit(main(["run", "--method", "random", "--samples", "5", "--seeds", sys.argv[3], "--data", sys.argv[1],
               "--device", "cpu", "--no-progress", "--set", "linear.max_iter=20"]))
"""


@pytest.mark.slow  # two subprocesses importing torch and mlflow: ~20 s of CPU
def test_two_concurrent_runs_of_one_cell_do_each_seed_once(tmp_path: Path, tiny_data_root: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = os.environ | {
        "BENCH_HOME": str(tmp_path / "home"),
        "MLFLOW_TRACKING_URI": uri,
        "BENCH_EXPERIMENT": "concurrent",
        "PYTHONPATH": python_path,
        "OMP_NUM_THREADS": "1",
    }
    go = tmp_path / "go"
    args = [sys.executable, "-c", WORKER, str(tiny_data_root), str(go), str(SEEDS)]
    workers = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        for _ in range(2)
    ]
    time.sleep(0.5)
    go.touch()
    outputs = [w.communicate(timeout=300)[0] for w in workers]
    assert [w.returncode for w in workers] == [0, 0], outputs

    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("concurrent")
    assert exp is not None
    runs = client.search_runs(
        [exp.experiment_id], "tags.`bench.kind` = 'seed' and tags.`bench.status` = 'complete'"
    )
    per_key = Counter(r.data.tags["bench.result_key"] for r in runs)
    assert len(per_key) == SEEDS and set(per_key.values()) == {1}, per_key  # no seed done twice
    seeds = client.search_runs([exp.experiment_id], "tags.`bench.kind` = 'seed'")
    assert not [r for r in seeds if r.info.status == "RUNNING"]


def test_a_claim_that_cannot_be_written_lets_the_work_go_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A read-only BENCH_HOME (fully cached data, a new experiment): no claim file can be made, so
    the seed runs unclaimed instead of failing (no other writer can share that home)."""

    def read_only(*args: object, **kwargs: object) -> int:
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(tmp_path / "claims" / "k"))

    monkeypatch.setattr("bench.harness.claims.os.open", read_only)
    claim = ClaimStore(tmp_path / "claims").try_claim("k")
    assert claim is not None
    with claim:
        pass


@pytest.mark.usefixtures("mlflow_store")
def test_run_waits_for_a_seed_another_process_holds(tiny_dataset: Dataset) -> None:
    """Seed 0 is claimed by another live process: `run` does seed 1, waits, and takes seed 0 over
    only once its owner is gone (the old `run` took no claims and computed it at once)."""
    import json
    import socket
    import threading

    from bench.core.paths import bench_home

    spec = CellSpec("random", 5, protocol="linear", protocol_overrides={"max_iter": 5})
    owner = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2.0)"])
    reaper = threading.Thread(target=owner.wait)  # reaped at exit: a zombie's pid would look alive
    reaper.start()
    claims = bench_home() / "claims"
    claims.mkdir(parents=True)
    held = {"host": socket.gethostname(), "pid": owner.pid, "time": time.time()}
    (claims / result_key(spec, 0, tiny_dataset)).write_text(json.dumps(held))
    start = time.monotonic()
    cell = run_cell(spec, [0, 1], tiny_dataset, torch.device("cpu"), progress=False, poll_s=0.1)
    assert owner.returncode is not None  # seed 0 was taken over only after its owner ended
    reaper.join()
    assert time.monotonic() - start >= 1.0
    assert [s.skipped for s in cell.seeds] == [False, False]
    assert all(tracking.find_completed(result_key(spec, s, tiny_dataset)) for s in (0, 1))
    assert not [p for p in claims.iterdir() if not p.name.startswith(".")]  # every claim released
