"""A stalled peer ends every live rank within ``BENCH_DIST_TIMEOUT_S``, in one line naming it.

Issue 25 item 4.

Two gloo processes join through the environment as ``torchrun`` starts them; after one good
all-reduce, rank 1 SIGSTOPs itself. Rank 0, in the next gradient all-reduce, must stop within the
timeout (plus the heartbeat check), with a :class:`PeerTimeout` naming rank 1, instead of the
30 minutes the process group waited before.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bench.core import distributed
from bench.core.errors import BenchError

REPO = Path(__file__).resolve().parents[2]
TIMEOUT_S = 3

RANK_SCRIPT = """
import os, signal, sys
import torch
from bench.core import distributed
distributed.init_from_env("cpu")
rank = distributed.world()[0]
try:
    distributed.average_([torch.ones(3)])
    print(f"rank {rank} first all-reduce ok", flush=True)
    if rank == 1:
        os.kill(os.getpid(), signal.SIGSTOP)
    distributed.average_([torch.ones(3)])
except distributed.PeerTimeout as err:
    print(f"error: {err}", file=sys.stderr, flush=True)
    sys.exit(2)
finally:
    distributed.shutdown()
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_stopped_rank_ends_its_peer_within_the_timeout_naming_it() -> None:
    python_path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = os.environ | {
        "WORLD_SIZE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(_free_port()),
        distributed.TIMEOUT_ENV: str(TIMEOUT_S),
        "PYTHONPATH": python_path,
        "OMP_NUM_THREADS": "1",
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", RANK_SCRIPT],
            env=env | {"RANK": str(r), "LOCAL_RANK": str(r)},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    try:
        assert procs[0].stdout is not None
        line = procs[0].stdout.readline()  # after the first all-reduce: the clock starts here
        assert "first all-reduce ok" in line, procs[0].communicate(timeout=60)
        start = time.monotonic()
        _, err = procs[0].communicate(timeout=60)
        took = time.monotonic() - start
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGKILL)  # the stopped rank (torchrun's agent does the same)
            p.wait()
    assert procs[0].returncode == 2, err
    lines = [x for x in err.splitlines() if x.startswith("error: ")]
    assert len(lines) == 1, err
    assert "rank 0 of 2: rank 1 stopped answering in the gradient all-reduce" in lines[0]
    assert distributed.TIMEOUT_ENV in lines[0]
    print(f"rank 0 stopped {took:.1f} s after its peer")
    assert took < TIMEOUT_S + 15, took  # bounded: the timeout plus the heartbeat check, not 30 minutes


def test_timeout_setting_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "soon")
    with pytest.raises(BenchError, match="BENCH_DIST_TIMEOUT_S='soon': expected a positive number"):
        distributed.timeout_s()
    monkeypatch.setenv(distributed.TIMEOUT_ENV, "90")
    assert distributed.timeout_s() == 90.0
    monkeypatch.delenv(distributed.TIMEOUT_ENV)
    assert distributed.timeout_s() == distributed.DEFAULT_TIMEOUT_S
