"""Benchmark harness for pretraining strategies on joint Sentinel-1 + Sentinel-2 land cover.

MLflow's usage telemetry (MLflow 3 sends usage events by default) is off in every harness
process and in what it starts (Ray workers, torchrun ranks inherit the environment): set here,
before anything imports ``mlflow``, which decides at import time. A user who set
``MLFLOW_DISABLE_TELEMETRY`` or ``DO_NOT_TRACK`` themselves keeps their choice
(``MLFLOW_DISABLE_TELEMETRY=false`` turns it on).
"""

import os as _os

if "MLFLOW_DISABLE_TELEMETRY" not in _os.environ and "DO_NOT_TRACK" not in _os.environ:
    _os.environ["MLFLOW_DISABLE_TELEMETRY"] = "true"

__version__ = "0.1.0"
__all__ = ["__version__"]
