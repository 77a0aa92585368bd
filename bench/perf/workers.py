"""``bench perf --stage workers``: two local sweep workers against one, on this machine's cores.

The same 4-unit grid (random init, linear protocol, 2 budgets x 2 seeds, CPU; whole commands,
start-up included) is run three times, each into its own fresh MLflow store, with the decoded data
cache shared:

- one ``bench sweep`` worker (``BENCH_LOCAL_WORKERS=1``: all cores);
- two workers sharing the grid with their thread share (``BENCH_LOCAL_WORKERS=2``: half each);
- two workers without it (every process takes all cores: the oversubscription of issue 12).

Two workers should not be slower than one doing the same units (ratio <= 1, about 1 when the
work is compute-bound); the third row shows what the share prevents. ``OMP_NUM_THREADS`` is
removed from the workers' environment, since an explicit value would override the share.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.core.device import LOCAL_WORKERS_ENV, usable_cores
from bench.core.paths import bench_home
from bench.perf.stages import PerfRow, register_stage, stage_dataset

_GRID = "--methods random --protocol linear --samples 20,50 --seeds 2 --device cpu --no-progress"


def _sweep(data: Path | None, workers: int, share: bool, store: Path) -> float:
    """Wall seconds for ``workers`` concurrent ``bench sweep`` processes to finish the grid."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}
    env |= {
        "BENCH_HOME": str(bench_home()),
        "MLFLOW_TRACKING_URI": f"sqlite:///{store / 'mlflow.db'}",
        "BENCH_EXPERIMENT": "perf-workers",
    }
    if share:
        env[LOCAL_WORKERS_ENV] = str(workers)
    else:
        env.pop(LOCAL_WORKERS_ENV, None)
    cmd = [sys.executable, "-m", "bench", "sweep", *_GRID.split()]
    if data is not None:
        cmd += ["--data", str(data)]
    start = time.perf_counter()
    procs = [
        subprocess.Popen(
            [*cmd, "--worker-id", f"w{i}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for i in range(workers)
    ]
    outputs = [p.communicate()[0] for p in procs]
    seconds = time.perf_counter() - start
    failed = [out for p, out in zip(procs, outputs, strict=True) if p.returncode != 0]
    if failed:
        raise RuntimeError(f"a sweep worker failed:\n{failed[0][-2000:]}")
    return seconds


@register_stage("workers")
def workers_stage(args: argparse.Namespace) -> list[PerfRow]:
    """Grid wall time: 1 worker, 2 workers with their thread share, 2 workers without it."""
    stage_dataset(args)  # decode once
    cores = usable_cores()
    with tempfile.TemporaryDirectory(prefix="bench-perf-workers-") as tmp:
        stores = [Path(tmp) / name for name in ("one", "two", "two-unshared")]
        for store in stores:
            store.mkdir()
        one = _sweep(args.data, 1, True, stores[0])
        two = _sweep(args.data, 2, True, stores[1])
        unshared = _sweep(args.data, 2, False, stores[2])
    grid = f"4 linear units, {cores} cores"
    return [
        PerfRow("workers", f"1 sweep worker, {cores} threads ({grid})", one, "s"),
        PerfRow("workers", f"2 sweep workers, {max(1, cores // 2)} thread(s) each", two, "s"),
        PerfRow("workers", f"2 sweep workers, {cores} threads each (no share)", unshared, "s"),
        PerfRow("workers", "2 workers / 1 worker, with the share (goal <= 1)", two / one, "ratio"),
        PerfRow("workers", "2 workers / 1 worker, without the share", unshared / one, "ratio"),
    ]
