"""Where the harness keeps generated data, caches and results."""

from __future__ import annotations

import os
from pathlib import Path


def bench_home() -> Path:
    """Root of every cache (synthetic data, decoded patches, weights, features, budgets).

    ``$BENCH_HOME`` when set, else ``.bench`` in the working directory, so a checkout keeps its
    caches beside it and ``rm -r .bench`` starts from scratch.
    """
    return Path(os.environ.get("BENCH_HOME", ".bench")).resolve()


def results_dir() -> Path:
    """Generated tables and plots (``$BENCH_RESULTS`` or ``results/``)."""
    return Path(os.environ.get("BENCH_RESULTS", "results")).resolve()
