"""Shared fixtures: a tiny synthetic DFC2020 set as real GeoTIFFs, and an isolated BENCH_HOME.

Fixture names are a stable interface for every test package (datasets, bench, methods).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from datasets import Dataset, load_dataset
from datasets.synthetic import SynthConfig, generate

#: 12 labelled + 8 test patches of 32 x 32 px; seed chosen so both splits hold all 8 evaluated classes.
#: No pretraining pool: methods pretrain on the labelled pool's inputs (the fallback of DESIGN 2.4).
TINY_CONFIG = SynthConfig(n_labelled=12, n_test=8, size=32, seed=19, n_pretrain=0)
#: The same set with a SEN12MS-layout pretraining pool of 16 patches from 4 regions (one per season).
TINY_POOL_CONFIG = dataclasses.replace(TINY_CONFIG, n_pretrain=16, pretrain_regions=4)


@pytest.fixture(autouse=True)
def bench_home_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own ``BENCH_HOME``, so no test writes caches into the repository."""
    home = tmp_path / "bench_home"
    monkeypatch.setenv("BENCH_HOME", str(home))
    return home


@pytest.fixture(scope="session")
def tiny_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny synthetic DFC2020 set in the released layout (read-only for tests: copy to modify)."""
    return generate(tmp_path_factory.mktemp("tiny_dfc2020"), TINY_CONFIG)


@pytest.fixture(scope="session")
def tiny_pool_data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny set with its own pretraining pool under ``sen12ms/`` (read-only for tests)."""
    return generate(tmp_path_factory.mktemp("tiny_pool"), TINY_POOL_CONFIG)


@pytest.fixture(scope="session")
def tiny_dataset(tiny_data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Dataset]:
    """``load_dataset(tiny_data_root)``, cached under a session-wide ``BENCH_HOME``."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BENCH_HOME", str(tmp_path_factory.mktemp("tiny_bench_home")))
        yield load_dataset(tiny_data_root, progress=False)
