"""``bench perf --stage cli``: how long the CLI takes to answer, in fresh processes.

A new user's first contact is ``--help`` and ``list``; they must answer at once (goal: under 1 s and
3 s on a 2-core CPU), which holds only while command modules import torch, mlflow, pandas and
matplotlib inside the commands. This stage watches that; a timed unit test would be flaky.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from bench.perf.stages import PerfRow, register_stage

#: Each command is timed this many times; the median is reported (the first run warms the disk cache).
REPEATS = 3
COMMANDS: dict[str, list[str]] = {
    "--help": ["--help"],
    "run --help": ["run", "--help"],
    "list": ["list"],
}


def wall_seconds(argv: list[str]) -> float:
    """Wall time of ``python -m bench ARGV`` in a fresh interpreter (output discarded)."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "bench", *argv], check=True, capture_output=True)
    return time.perf_counter() - start


@register_stage("cli")
def cli_stage(args: argparse.Namespace) -> list[PerfRow]:
    """Median wall time of each command over :data:`REPEATS` fresh processes."""
    rows = []
    for label, argv in COMMANDS.items():
        times = [wall_seconds(argv) for _ in range(REPEATS)]
        rows.append(
            PerfRow(
                "cli", f"python -m bench {label} (median of {REPEATS})", 1000 * statistics.median(times), "ms"
            )
        )
    return rows
