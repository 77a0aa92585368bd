"""Fixtures that copy the tiny set so a test can break one file of it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import rasterio


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
