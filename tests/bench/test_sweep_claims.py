"""Atomic claims: one winner among racing processes; dead or silent owners are taken over."""

from __future__ import annotations

import json
import multiprocessing
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from bench.harness.claims import ClaimStore


def _race(root: str, key: str, queue: multiprocessing.Queue) -> None:
    claim = ClaimStore(Path(root)).try_claim(key)
    queue.put(claim is not None)
    time.sleep(0.5)  # hold it while the others try


def test_exactly_one_of_racing_processes_wins(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_race, args=(str(tmp_path), "unit", queue)) for _ in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    assert sorted(queue.get() for _ in procs) == [False, False, False, True]


def test_release_frees_the_key(tmp_path: Path) -> None:
    store = ClaimStore(tmp_path)
    with store.try_claim("k") as claim:
        assert json.loads(claim.path.read_text())["pid"] == os.getpid()
        assert store.try_claim("k") is None
    assert not (tmp_path / "k").exists()
    assert store.try_claim("k") is not None


def test_claim_of_a_dead_local_process_is_taken_over(tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    owner = {"host": socket.gethostname(), "pid": int(dead.stdout), "time": time.time()}
    (tmp_path / "k").write_text(json.dumps(owner))
    claim = ClaimStore(tmp_path).try_claim("k")
    assert claim is not None and json.loads(claim.path.read_text())["pid"] == os.getpid()
    claim.release()


def test_silent_claim_of_another_host_goes_stale(tmp_path: Path) -> None:
    (tmp_path / "k").write_text(json.dumps({"host": "elsewhere", "pid": 1, "time": 0}))
    assert ClaimStore(tmp_path, stale_after=60).try_claim("k") is None  # fresh file: the owner may live
    old = time.time() - 120
    os.utime(tmp_path / "k", (old, old))
    assert ClaimStore(tmp_path, stale_after=60).try_claim("k") is not None


def test_heartbeat_keeps_a_long_claim_fresh(tmp_path: Path) -> None:
    store = ClaimStore(tmp_path, stale_after=0.6, heartbeat_s=0.1)
    with store.try_claim("k"):
        old = time.time() - 10
        os.utime(tmp_path / "k", (old, old))
        time.sleep(0.3)
        assert not ClaimStore(tmp_path, stale_after=0.6).is_stale(tmp_path / "k")
