"""Fixtures that copy the tiny set so a test can break one file of it, and other copies' layouts.

The Copernicus-Bench helpers spell the archive's folder and list names out rather than reading them
from the layout class, so a wrong constant there fails the tests instead of shaping the fixture.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

import numpy as np
import pytest
import rasterio
from rasterio.crs import CRS
from rasterio.transform import Affine


@pytest.fixture
def data_copy(tiny_data_root: Path, tmp_path: Path) -> Path:
    """A writable copy of the tiny synthetic set (released DFC2020 layout)."""
    return Path(shutil.copytree(tiny_data_root, tmp_path / "dfc"))


def patch_file(root: Path, mod: str, i: int = 3, split: str = "validation") -> Path:
    """Path of one GeoTIFF of the tiny set: modality ``mod`` of patch ``i``."""
    folder = f"{mod}_validation" if split == "validation" else f"{mod}_0"
    return root / f"ROIs0000_{split}" / folder / f"ROIs0000_{split}_{mod}_0_p{i}.tif"


def rewrite(path: Path, data: np.ndarray) -> None:
    """Overwrite ``path`` with ``data`` (bands first), keeping its CRS and transform."""
    with rasterio.open(path) as src:
        profile = src.profile
    profile.update(count=data.shape[0], height=data.shape[1], width=data.shape[2], dtype=data.dtype.name)
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)


def copernicus_copy(released: Path, out: Path, lists: Mapping[str, Iterable[str]]) -> Path:
    """``released`` flattened as the Copernicus-Bench archive: ``dfc2020_s1s2/{s1,s2,dfc}/`` with the
    original file names, plus one ``dfc-<split>-new.csv`` per entry of ``lists`` (dfc file names)."""
    base = out / "dfc2020_s1s2"
    for mod in ("s1", "s2", "dfc"):
        (base / mod).mkdir(parents=True)
        for tif in released.glob(f"ROIs0000_*/{mod}_*/*.tif"):
            shutil.copy(tif, base / mod / tif.name)
    for split, names in lists.items():
        (base / f"dfc-{split}-new.csv").write_text("".join(f"{name}\n" for name in names))
    return out


def dfc_names(split: str, count: int) -> list[str]:
    """The dfc file names of the first ``count`` patches of a released split of the tiny set."""
    return [f"ROIs0000_{split}_dfc_0_p{i}.tif" for i in range(count)]


#: torchgeo's test fixture of the archive: 12 patches, all named as DFC2020 test patches p600..p611.
TORCHGEO_PATCHES = range(600, 612)
TORCHGEO_LISTS = {"train": TORCHGEO_PATCHES[:6], "val": TORCHGEO_PATCHES[6:9], "test": TORCHGEO_PATCHES[9:]}


def torchgeo_style_copy(out: Path, size: int = 8) -> Path:
    """A Copernicus-Bench copy shaped like torchgeo's fixture: S1 float64 dB, S2 uint16, labels int32,
    patches ``ROIs0000_test_*_0_p600..611`` split by the CSV lists of :data:`TORCHGEO_LISTS`."""
    rng = np.random.default_rng(0)
    base = out / "dfc2020_s1s2"
    arrays: dict[str, Callable[[], np.ndarray]] = {
        "s1": lambda: rng.uniform(-25.0, 0.0, (2, size, size)),
        "s2": lambda: rng.integers(0, 10000, (13, size, size), dtype=np.uint16),
        "dfc": lambda: rng.integers(1, 11, (1, size, size), dtype=np.int32),
    }
    for mod, draw in arrays.items():
        (base / mod).mkdir(parents=True)
        for i in TORCHGEO_PATCHES:
            data = draw()
            profile = {"driver": "GTiff", "count": data.shape[0], "height": size, "width": size}
            transform = Affine(10.0, 0.0, 300_000.0 + 100 * i, 0.0, -10.0, 5_500_000.0)
            with rasterio.open(
                base / mod / f"ROIs0000_test_{mod}_0_p{i}.tif",
                "w",
                dtype=data.dtype.name,
                crs=CRS.from_epsg(32632),
                transform=transform,
                **profile,
            ) as dst:
                dst.write(data)
    for split, indices in TORCHGEO_LISTS.items():
        names = "".join(f"ROIs0000_test_dfc_0_p{i}.tif\n" for i in indices)
        (base / f"dfc-{split}-new.csv").write_text(names)
    return out
