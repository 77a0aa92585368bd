"""The embedded default dataset: generated once per ``bench_home()``, then reused.

Generation goes into a temporary folder that is renamed into place, so an interrupted or
concurrent first run never leaves a half-written default behind.
"""

from __future__ import annotations

from pathlib import Path

from bench.core.atomic import atomic_dir
from bench.core.paths import bench_home
from datasets.synthetic import MARKER, SynthConfig, generate

DEFAULT_NAME = "synthetic-dfc2020-v1"
DEFAULT_CONFIG = SynthConfig()


def default_data_root(progress: bool = True) -> Path:
    """Folder of the embedded synthetic set, generating it first if needed."""
    target = bench_home() / "data" / DEFAULT_NAME
    if (target / MARKER).is_file():
        return target
    with atomic_dir(target, MARKER) as tmp:
        generate(tmp, DEFAULT_CONFIG, progress=progress)
    return target
