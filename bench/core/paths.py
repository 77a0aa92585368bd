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


def shown_path(path: Path) -> str:
    """``path`` as printed in outputs that may be committed (``results/difficulty.txt``): under
    ``$BENCH_HOME`` as ``$BENCH_HOME/...``, under the working directory relative to it, else as is;
    so no committed file carries the machine's absolute paths."""
    path = Path(path).resolve()
    for root, shown in ((bench_home(), "$BENCH_HOME"), (Path.cwd().resolve(), ".")):
        if path.is_relative_to(root):
            return str(Path(shown) / path.relative_to(root))
    return str(path)
