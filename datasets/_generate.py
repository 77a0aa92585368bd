"""``python -m datasets._generate OUT CONFIG_JSON WORKERS progress|quiet``: the worker parent of
:func:`datasets.synthetic.generate` with several workers.

Its own module, not ``datasets.synthetic`` run with ``-m``: the package imports that module first,
so running it as ``__main__`` would load it twice (runpy warns), and the spawn workers re-import
this main module, whose top level only imports.
"""

from __future__ import annotations

import sys
from pathlib import Path

from datasets import synthetic

if __name__ == "__main__":
    synthetic._IN_WORKER_PARENT = True
    out, config, workers, progress = sys.argv[1:5]
    synthetic.generate(
        Path(out), synthetic._config_from_json(config), progress=progress == "progress", workers=int(workers)
    )
