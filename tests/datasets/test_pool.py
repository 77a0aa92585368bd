"""The embedded default's pretraining pool (generator version 3): SEN12MS layout read by the SEN12MS
reader, regions disjoint from the labelled pool's and the test's, all four seasons, a coarse MODIS-like
``lc`` and never the fine labels; it is the default pretraining data and its identity keys results."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import rasterio

from bench.harness.pretraining import pretraining_images
from bench.harness.runner import CellSpec, result_key
from datasets import load_dataset, load_pretrain_pool
from datasets.layouts import SEN12MS, detect_layout
from datasets.synthetic import SEN12MS_SEASON_FOLDERS, make_patch, patch_transform
from tests.conftest import TINY_POOL_CONFIG

#: Region cells of the generator's map: regions lie 60 km apart on a grid from (300 km, 5500 km).
REGION_KM = 60_000.0


def _region_cell(path: Path) -> tuple[int, int]:
    with rasterio.open(path) as src:
        x, y = src.transform.c, src.transform.f
    return int((x - 300_000.0) // REGION_KM), int((5_500_000.0 - y) // REGION_KM)


def test_pool_is_read_by_the_sen12ms_reader(tiny_pool_data_root: Path) -> None:
    ds = load_dataset(tiny_pool_data_root, progress=False)
    assert ds.pretrain_pool == tiny_pool_data_root.resolve() / "sen12ms"
    assert detect_layout(ds.pretrain_pool) is SEN12MS
    pool = load_pretrain_pool(ds.pretrain_pool, progress=False)
    assert pool.images.shape == (TINY_POOL_CONFIG.n_pretrain, 15, 32, 32)
    assert pool.labels is not None and pool.labels.shape == (TINY_POOL_CONFIG.n_pretrain, 32, 32)
    assert all(pid.startswith(tuple(SEN12MS_SEASON_FOLDERS.values())) for pid in pool.patch_ids)
    assert not list(ds.pretrain_pool.rglob("*dfc*"))  # SEN12MS ships s1, s2 and lc only


def test_pool_regions_are_disjoint_from_labelled_and_test(tiny_pool_data_root: Path) -> None:
    cells = {
        split: {_region_cell(p) for p in tiny_pool_data_root.glob(pattern)}
        for split, pattern in (
            ("labelled", "ROIs0000_validation/s2_validation/*.tif"),
            ("test", "ROIs0000_test/s2_0/*.tif"),
            ("pool", "sen12ms/ROIs*/s2_*/*.tif"),
        )
    }
    assert len(cells["pool"]) == TINY_POOL_CONFIG.pretrain_regions
    assert not cells["pool"] & cells["labelled"] and not cells["pool"] & cells["test"]
    # one SEN12MS scene per region, all four seasons
    seasons = {p.name for p in (tiny_pool_data_root / "sen12ms").iterdir()}
    assert seasons == set(SEN12MS_SEASON_FOLDERS.values())


def test_pool_lc_is_coarse_and_not_the_fine_labels(tiny_pool_data_root: Path) -> None:
    """IGBP is constant on the map's 500 m blocks, and disagrees with the fine labels in places."""
    config, px = TINY_POOL_CONFIG, TINY_POOL_CONFIG.modis_px
    lc_files = sorted((tiny_pool_data_root / "sen12ms").glob("ROIs*/lc_*/*.tif"))
    assert len(lc_files) == config.n_pretrain
    agree = total = 0
    for i in range(config.n_pretrain):
        arrays = make_patch(config, "pretrain", i)
        igbp, t = arrays["lc"][0].astype(np.int64), patch_transform(config, "pretrain", i)
        by = (round(-t.f / 10) + np.arange(config.size)) // px
        bx = (round(t.c / 10) + np.arange(config.size)) // px
        block = by[:, None] * 100_000 + bx[None, :]
        for b in np.unique(block):
            assert np.unique(igbp[block == b]).size == 1
        dfc = np.asarray([0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10])[igbp]
        agree += int((dfc == arrays["dfc"][0]).sum())
        total += dfc.size
    with rasterio.open(lc_files[0]) as src:
        assert (src.count, src.dtypes[0]) == (4, "uint16")
    assert 0.3 < agree / total < 0.95  # informative, but coarse and noisy


def test_pool_is_the_default_pretraining_data_and_keys_results(tiny_pool_data_root: Path) -> None:
    ds = load_dataset(tiny_pool_data_root, progress=False)
    images, fingerprint = pretraining_images(ds, None, transductive=False)
    assert len(images) == TINY_POOL_CONFIG.n_pretrain and fingerprint.startswith("sen12ms:")
    other = dataclasses.replace(ds, pretrain_pool_id="another pool")
    simsiam, random = CellSpec("simsiam", 10), CellSpec("random", 10)
    assert result_key(simsiam, 0, ds) != result_key(simsiam, 0, other)
    assert result_key(random, 0, ds) == result_key(random, 0, other)  # reads no data
