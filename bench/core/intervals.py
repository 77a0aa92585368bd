"""The t interval of a mean over seeds: the one copy that tables, paired differences, MLflow
aggregates and ``bench data difficulty --controls`` share (kernel, so harness and report both reach
it; numpy and scipy.special only, so reading a table still imports no torch)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


def t_interval(values: Sequence[float] | np.ndarray, confidence: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the mean over seeds and its Student t interval (NaN entries dropped; the
    interval is NaN below two seeds)."""
    x = np.asarray(values, dtype=np.float64)
    x = x[~np.isnan(x)]
    n = len(x)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = float(x.mean())
    if n < 2:
        return mean, math.nan, math.nan
    from scipy.special import stdtrit  # Student's t quantile; scipy.stats costs seconds to import

    half = float(stdtrit(n - 1, (1 + confidence) / 2) * x.std(ddof=1) / math.sqrt(n))
    return mean, mean - half, mean + half
