"""Layouts: the registry, the released, Copernicus-Bench (both split schemes) and SEN12MS copies
read like the released layout; the split scheme in the fingerprint and in ``bench data check``."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import bench.cli.data
import datasets.layouts
from bench.cli import main
from bench.core.errors import DataError
from datasets import (
    DEFAULT_CLASSES,
    ClassConfig,
    Dataset,
    Layout,
    get_layout,
    igbp_to_dfc,
    list_layouts,
    load_dataset,
    load_pretrain_pool,
    register_layout,
)
from datasets.layouts import SplitSources, detect_layout
from tests.datasets.conftest import (
    TORCHGEO_LISTS,
    copernicus_copy,
    dfc_names,
    patch_file,
    torchgeo_style_copy,
)

#: The archive's lists agreeing with the release: the validation patches in train/val, test in test.
AS_RELEASED = {
    "train": dfc_names("validation", 12)[:9],
    "val": dfc_names("validation", 12)[9:],
    "test": dfc_names("test", 8),
}
#: A re-split like GFM-Bench's: the release's test patches labelled, its validation patches tested.
SWAPPED = {
    "train": dfc_names("test", 8)[:6],
    "val": dfc_names("test", 8)[6:],
    "test": dfc_names("validation", 12),
}


def _same_splits(a: Dataset, b: Dataset) -> None:
    for x, y in ((a.labelled, b.labelled), (a.test, b.test)):
        assert x.patch_ids == y.patch_ids
        np.testing.assert_array_equal(x.images, y.images)
        np.testing.assert_array_equal(x.labels, y.labels)


def test_copernicus_layout_matches_released(
    tiny_data_root: Path, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    """The seed scheme on a copy is the release's experiment, fingerprint included; csv is another."""
    root = copernicus_copy(tiny_data_root, tmp_path / "cb", AS_RELEASED)
    flat = load_dataset(root, progress=False)
    assert flat.layout == "copernicus" and tiny_dataset.layout == "synthetic"
    assert flat.split_scheme == "seed" and flat.fingerprint == tiny_dataset.fingerprint
    _same_splits(flat, tiny_dataset)
    listed = load_dataset(root, split_scheme="csv", progress=False)
    _same_splits(listed, tiny_dataset)  # these lists give the same patches, yet another experiment
    assert listed.split_scheme == "csv" and listed.fingerprint != tiny_dataset.fingerprint


def test_seed_scheme_splits_by_name_whatever_the_lists_say(
    tiny_data_root: Path, tiny_dataset: Dataset, tmp_path: Path
) -> None:
    root = copernicus_copy(tiny_data_root, tmp_path / "cb", SWAPPED)
    _same_splits(load_dataset(root, progress=False), tiny_dataset)
    listed = load_dataset(root, split_scheme="csv", progress=False)
    assert listed.labelled.patch_ids == tiny_dataset.test.patch_ids
    assert listed.test.patch_ids == tiny_dataset.labelled.patch_ids
    np.testing.assert_array_equal(listed.test.images, tiny_dataset.labelled.images)


def test_seed_scheme_needs_no_lists(tiny_data_root: Path, tiny_dataset: Dataset, tmp_path: Path) -> None:
    root = copernicus_copy(tiny_data_root, tmp_path / "cb", {})
    assert load_dataset(root, progress=False).fingerprint == tiny_dataset.fingerprint
    with pytest.raises(DataError, match=r"dfc-train-new\.csv: missing split list"):
        load_dataset(root, split_scheme="csv", progress=False)


def test_torchgeo_fixture_style(tmp_path: Path) -> None:
    """float64 S1 and int32 labels are read; all-``test`` names give no seed split, the lists do."""
    root = torchgeo_style_copy(tmp_path / "tg")
    with pytest.raises(DataError, match=r"no ROIs0000_validation_\* files .* --split-scheme csv"):
        load_dataset(root, progress=False)
    ds = load_dataset(root / "dfc2020_s1s2", split_scheme="csv", progress=False)
    ids = {name: [f"ROIs0000_test_0_p{i}" for i in TORCHGEO_LISTS[name]] for name in TORCHGEO_LISTS}
    assert list(ds.labelled.patch_ids) == ids["train"] + ids["val"]
    assert list(ds.test.patch_ids) == ids["test"]
    assert ds.labelled.images.shape == (9, 15, 8, 8) and np.isfinite(ds.labelled.images).all()
    assert 0 < sum(ds.labelled.class_pixels[n] for n in DEFAULT_CLASSES.names) < 9 * 64


def test_split_scheme_a_layout_lacks(data_copy: Path, tiny_data_root: Path, tmp_path: Path) -> None:
    (data_copy / "synthetic.json").unlink()
    with pytest.raises(DataError, match="split scheme 'csv' does not apply to the dfc2020 layout"):
        load_dataset(data_copy, split_scheme="csv", progress=False)
    root = copernicus_copy(tiny_data_root, tmp_path / "cb", AS_RELEASED)
    with pytest.raises(DataError, match=r"split scheme 'lists' .* \(it has: seed, csv\)"):
        load_dataset(root, split_scheme="lists", progress=False)


def test_check_prints_layout_scheme_and_counts(
    tiny_data_root: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = copernicus_copy(tiny_data_root, tmp_path / "cb", SWAPPED)
    assert main(["data", "check", "--data", str(root), "--split-scheme", "csv"]) == 0
    printed = capsys.readouterr().out
    assert "layout copernicus  split scheme csv" in printed and "patches: 8 labelled / 12 test" in printed
    assert "warning" not in printed  # 20 patches: a sample, not a full copy
    monkeypatch.setattr(bench.cli.data, "FULL_COPY_PATCHES", 10)
    assert main(["data", "check", "--data", str(root), "--split-scheme", "csv"]) == 0
    printed = capsys.readouterr().out
    assert "warning: 8 labelled / 12 test patches, the DFC2020 release has 986 labelled" in printed
    assert "'csv' split scheme is not the seed's protocol" in printed
    assert main(["data", "check", "--data", str(root)]) == 0
    printed = capsys.readouterr().out
    assert "split scheme seed" in printed and "patches: 12 labelled / 8 test" in printed
    assert "warning: 12 labelled / 8 test" in printed and "missing or skipped files?" in printed
    assert main(["data", "check", "--data", str(root), "--split-scheme", "lists"]) == 2


def test_a_layout_is_one_registered_class(
    tiny_data_root: Path, tiny_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A layout added from outside the module is detected, loaded and listed with no other edit."""
    monkeypatch.setattr(datasets.layouts, "_LAYOUTS", dict(datasets.layouts._LAYOUTS))

    @register_layout("by-split")
    class BySplit(Layout):
        description = "one folder per split holding every modality"
        schemes = ("seed",)
        folders: ClassVar[dict[str, str]] = {"labelled": "train", "test": "eval"}

        @classmethod
        def detect(cls, root: Path) -> bool:
            return all((root / folder).is_dir() for folder in cls.folders.values())

        @classmethod
        def list_splits(cls, root: Path, scheme: str) -> dict[str, SplitSources]:
            return {name: cls._split(root / folder, name) for name, folder in cls.folders.items()}

        @classmethod
        def _split(cls, folder: Path, name: str) -> SplitSources:
            def path_of(mod: str, prefix: str, rest: str) -> Path:
                return folder / f"{prefix}_{mod}_{rest}.tif"

            ids = datasets.layouts.patch_ids_in([folder])
            return datasets.layouts.pair_patches(name, ids, path_of, cls.modalities, cls.rasters)

    for released, folder in (("validation", "train"), ("test", "eval")):
        (tmp_path / "bs" / folder).mkdir(parents=True)
        for tif in tiny_data_root.glob(f"ROIs0000_{released}/*/*.tif"):
            shutil.copy(tif, tmp_path / "bs" / folder / tif.name)
    ds = load_dataset(tmp_path / "bs", progress=False)
    assert ds.layout == "by-split" and get_layout("by-split") is BySplit and "by-split" in list_layouts()
    _same_splits(ds, tiny_dataset)


def test_detection(tiny_data_root: Path, data_copy: Path, tmp_path: Path) -> None:
    """The synthetic set refines the released layout; two unrelated layouts at once is an error."""
    assert detect_layout(tiny_data_root) is get_layout("synthetic")
    (data_copy / "synthetic.json").unlink()
    assert detect_layout(data_copy) is get_layout("dfc2020")
    (data_copy / "dfc2020_s1s2").mkdir()
    with pytest.raises(DataError, match="matches several dataset layouts"):
        load_dataset(data_copy, progress=False)


def test_copernicus_missing_file_named(tiny_data_root: Path, tmp_path: Path) -> None:
    root = copernicus_copy(tiny_data_root, tmp_path / "cb", AS_RELEASED)
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
