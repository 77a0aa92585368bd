"""Reader values equal raw rasterio reads after normalisation; the cache round-trips and is reused."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio

import datasets.cache
from datasets import DEFAULT_CLASSES, ClassConfig, Dataset, Normalisation, load_dataset
from tests.datasets.conftest import patch_file


def _raw(path: Path) -> np.ndarray:
    with rasterio.open(path) as src:
        return src.read()


def test_cached_values_equal_raw_reads(tiny_data_root: Path, tiny_dataset: Dataset) -> None:
    split = tiny_dataset.labelled
    for i in range(len(split)):
        assert split.patch_ids[i] == f"ROIs0000_validation_0_p{i}"
        s1 = _raw(patch_file(tiny_data_root, "s1", i)).astype(np.float64)
        s2 = _raw(patch_file(tiny_data_root, "s2", i)).astype(np.float64)
        dfc = _raw(patch_file(tiny_data_root, "dfc", i))[0]
        s1 = (np.clip(np.nan_to_num(s1, nan=-25, neginf=-25, posinf=0), -25, 0) + 25) / 25
        s2 = np.clip(s2, 0, 10000) / 10000
        expected = np.concatenate([s1, s2])
        np.testing.assert_allclose(split.images[i].astype(np.float64), expected, atol=1e-3, rtol=1e-3)
        labels = np.full(dfc.shape, 255)
        for k, dfc_id in enumerate(DEFAULT_CLASSES.dfc_ids):
            labels[dfc == dfc_id] = k
        np.testing.assert_array_equal(split.labels[i], labels)


def test_nonfinite_counted_per_file(tiny_data_root: Path, tiny_dataset: Dataset) -> None:
    for split in (tiny_dataset.labelled, tiny_dataset.test):
        assert split.nonfinite, "the generator puts NaN/-inf in some S1 patches"
        for path, count in split.nonfinite.items():
            assert count == int((~np.isfinite(_raw(Path(path)))).sum()) > 0


def test_class_pixel_counts(tiny_dataset: Dataset) -> None:
    labels = np.asarray(tiny_dataset.labelled.labels)
    counts = tiny_dataset.labelled.class_pixels
    for k, name in enumerate(DEFAULT_CLASSES.names):
        assert counts[name] == int((labels == k).sum())
    assert counts["ignored"] == int((labels == 255).sum())


def test_second_load_reads_no_geotiff(data_copy: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = load_dataset(data_copy, progress=False)

    def no_decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("a cached load must not decode GeoTIFFs")

    monkeypatch.setattr(datasets.cache, "read_patch", no_decode)
    second = load_dataset(data_copy, progress=False)
    assert second.fingerprint == first.fingerprint
    np.testing.assert_array_equal(second.test.images, first.test.images)
    assert isinstance(second.labelled.images, np.memmap)
    manifest = json.loads((second.labelled.path / "manifest.json").read_text())
    assert manifest["bands"][:3] == ["VV", "VH", "B1"] and manifest["n"] == 12


def test_fingerprint_follows_files_and_config(data_copy: Path, bench_home_dir: Path) -> None:
    base = load_dataset(data_copy, progress=False)
    zscore = load_dataset(data_copy, normalisation=Normalisation(mode="zscore"), progress=False)
    ten = ClassConfig(dfc_ids=tuple(range(1, 11)))
    ten_classes = load_dataset(data_copy, classes=ten, progress=False)
    s2 = patch_file(data_copy, "s2", 0)
    os.utime(s2, ns=(s2.stat().st_atime_ns, s2.stat().st_mtime_ns + 10**9))
    touched = load_dataset(data_copy, progress=False)
    assert touched.labelled.path != base.labelled.path, "a touched file is decoded again"
    assert touched.fingerprint == base.fingerprint, "same content, same fingerprint"
    prints = {base.fingerprint, zscore.fingerprint, ten_classes.fingerprint}
    assert len(prints) == 3
    assert ten_classes.labelled.class_pixels.keys() >= {"Savanna", "Snow/Ice"}
    assert float(np.abs(np.asarray(zscore.labelled.images, np.float32)).max()) > 1.0
    leftovers = [p for p in (bench_home_dir / "cache").iterdir() if p.name.startswith(".")]
    assert not leftovers, "temporary cache folders are renamed or removed"


def test_fingerprint_is_the_content_not_the_path(data_copy: Path, tmp_path: Path) -> None:
    moved = tmp_path / "moved"
    shutil.copytree(data_copy, moved)
    original = load_dataset(data_copy, progress=False).fingerprint
    assert load_dataset(moved, progress=False).fingerprint == original
    with rasterio.open(patch_file(moved, "s2", 0), "r+") as dst:
        band = dst.read(4)
        dst.write(band + 1, 4)
    assert load_dataset(moved, progress=False).fingerprint != original


def test_failed_build_leaves_no_cache(data_copy: Path, bench_home_dir: Path) -> None:
    patch_file(data_copy, "s2", 9).write_bytes(b"broken")
    with pytest.raises(datasets.cache.DataError):
        load_dataset(data_copy, progress=False)
    assert not list((bench_home_dir / "cache").iterdir()), "neither a cache nor a temporary folder is left"
