"""The Copernicus-Bench flat layout and SEN12MS are read like the released layout; class config."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from bench.core.errors import DataError
from datasets import (
    DEFAULT_CLASSES,
    ClassConfig,
    Dataset,
    igbp_to_dfc,
    list_layouts,
    load_dataset,
    load_pretrain_pool,
)
from tests.datasets.conftest import patch_file


def _flatten(root: Path, out: Path) -> Path:
    """Copernicus-Bench layout: labelled pool split into train/val CSVs, test into test CSV."""
    base = out / "dfc2020_s1s2"
    for mod in ("s1", "s2", "dfc"):
        (base / mod).mkdir(parents=True)
        for tif in root.glob(f"ROIs0000_*/{mod}_*/*.tif"):
            shutil.copy(tif, base / mod / tif.name)
    names = {
        s: [f"ROIs0000_{s}_dfc_0_p{i}.tif" for i in range(n)] for s, n in (("validation", 12), ("test", 8))
    }
    (base / "dfc-train-new.csv").write_text("\n".join(names["validation"][:9]) + "\n")
    (base / "dfc-val-new.csv").write_text("\n".join(names["validation"][9:]) + "\n")
    (base / "dfc-test-new.csv").write_text("\n".join(names["test"]) + "\n")
    return out


def test_copernicus_layout_matches_released(
    tiny_data_root: Path, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    flat = load_dataset(_flatten(tiny_data_root, tmp_path / "cb"), progress=False)
    assert flat.layout == "copernicus" and tiny_dataset.layout == "synthetic"
    for a, b in ((flat.labelled, tiny_dataset.labelled), (flat.test, tiny_dataset.test)):
        assert a.patch_ids == b.patch_ids
        np.testing.assert_array_equal(a.images, b.images)
        np.testing.assert_array_equal(a.labels, b.labels)


def test_copernicus_missing_file_named(tiny_data_root: Path, tmp_path: Path) -> None:
    root = _flatten(tiny_data_root, tmp_path / "cb")
    gone = root / "dfc2020_s1s2" / "s1" / "ROIs0000_test_s1_0_p2.tif"
    gone.unlink()
    with pytest.raises(DataError, match="missing s1 file") as err:
        load_dataset(root, progress=False)
    assert str(gone) in str(err.value)


def test_sen12ms_pretrain_pool(tiny_data_root: Path, tmp_path: Path) -> None:
    season = tmp_path / "ROIs1158_spring"
    for k in range(5):
        for mod in ("s1", "s2"):
            (season / f"{mod}_7").mkdir(parents=True, exist_ok=True)
            shutil.copy(
                patch_file(tiny_data_root, mod, k), season / f"{mod}_7" / f"ROIs1158_spring_{mod}_7_p{k}.tif"
            )
    pool = load_pretrain_pool(season, progress=False)
    assert pool.labels is None and pool.images.shape == (5, 15, 32, 32)
    assert pool.patch_ids[0] == "ROIs1158_spring_7_p0"
    assert load_pretrain_pool(tmp_path, progress=False).fingerprint == pool.fingerprint
    with pytest.raises(DataError, match="SEN12MS"):
        load_pretrain_pool(tiny_data_root, progress=False)
    with pytest.raises(DataError, match="no DFC2020 labelled/test splits"):
        load_dataset(season, progress=False)


def test_class_config() -> None:
    assert DEFAULT_CLASSES.names == (
        "Forest", "Shrubland", "Grassland", "Wetlands", "Croplands", "Urban/Built-up", "Barren", "Water",
    )  # fmt: skip
    stored = np.array([0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11])
    assert DEFAULT_CLASSES.to_index(stored).tolist() == [255, 0, 1, 255, 2, 3, 4, 5, 255, 6, 7, 255]
    nine = ClassConfig(dfc_ids=(1, 2, 3, 4, 5, 6, 7, 9, 10))
    assert nine.to_index(stored)[3] == 2 and nine.num_classes == 9
    with pytest.raises(ValueError):
        ClassConfig(dfc_ids=(1, 1))
    assert igbp_to_dfc(np.arange(19)).tolist() == [0, 1, 1, 1, 1, 1, 2, 2, 3, 3, 4, 5, 6, 7, 6, 8, 9, 10, 0]
    assert set(list_layouts()) == {"dfc2020", "copernicus", "sen12ms", "synthetic"}
