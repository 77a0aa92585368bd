"""Issue 8.4: should the shared network see per-band z-scored bands instead of DESIGN 2.3's [0, 1]?

Scored on the budget's VALIDATION pixels only (``bench.harness.tune.validation_aa``; the test
split is never read): the random-init baseline under both protocols, 200 labelled pixels per
class, 3 budget seeds, on the embedded default decoded both ways. Prints one line per setting.

    .venv/bin/python scripts/input_scale_on_validation.py
"""

from __future__ import annotations

import os
import tempfile
import time
import warnings

warnings.simplefilter("ignore")
home = tempfile.mkdtemp(prefix="input-scale-")
os.environ.setdefault("BENCH_HOME", home)
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")

import torch  # noqa: E402

from bench.harness.runner import CellSpec  # noqa: E402
from bench.harness.tune import validation_aa  # noqa: E402
from datasets import load_dataset  # noqa: E402
from datasets.normalise import Normalisation  # noqa: E402

cpu = torch.device("cpu")
for mode in ("scaled", "zscore"):
    ds = load_dataset(None, normalisation=Normalisation(mode=mode), progress=False)
    for protocol in ("linear", "finetune"):
        start = time.time()
        aa = validation_aa(CellSpec("random", 200, protocol=protocol), range(3), ds, cpu)
        print(f"{mode:7s} random {protocol:8s} validation AA {100 * aa:.1f} ({time.time() - start:.0f} s)")
