"""The embedded default dataset: generated once per ``bench_home()``, then reused.

Generation goes into a temporary folder that is renamed into place, so an interrupted or
concurrent first run never leaves a half-written default behind. The folder is named by the
generator version and a hash of the default config and of the generator's source (its tables are
constants, not config), so a new generator or a recalibrated default is generated afresh instead
of silently reusing an old set. Version 3 adds the unlabelled SEN12MS-layout pretraining pool
(``sen12ms/``), the default pretraining data of every method that reads data.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from bench.core.atomic import atomic_dir
from bench.core.paths import bench_home
from bench.core.provenance import stable_hash
from datasets import portable, synthetic
from datasets.synthetic import GENERATOR_VERSION, MARKER, SynthConfig, default_workers, generate

DEFAULT_CONFIG = SynthConfig()
#: The generator's code: its module and the arithmetic it computes with (a change to either writes
#: other bytes, so a folder generated before it must not be reused).
_GENERATOR_CODE = [Path(str(m.__file__)).read_text() for m in (synthetic, portable)]
_GENERATOR_KEY = stable_hash([asdict(DEFAULT_CONFIG), *_GENERATOR_CODE], length=8)
DEFAULT_NAME = f"synthetic-dfc2020-v{GENERATOR_VERSION}-{_GENERATOR_KEY}"


def default_data_root(progress: bool = True) -> Path:
    """Folder of the embedded synthetic set, generating it first if needed (in one process per
    core: the main command's cold start includes it, and every patch is seeded on its own)."""
    target = bench_home() / "data" / DEFAULT_NAME
    if (target / MARKER).is_file():
        return target
    with atomic_dir(target, MARKER) as tmp:
        generate(tmp, DEFAULT_CONFIG, progress=progress, workers=default_workers())
    return target
