"""Decode and validate one patch: GeoTIFFs -> normalised (15, H, W) input + class-index labels.

Every check raises :class:`DataError` with the file path and the problem, so one message tells
the user which file to fix; the cache builder turns it into a skip under ``skip_bad``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from bench.core.errors import DataError
from datasets.classes import ClassConfig
from datasets.layouts import DFC2020_RASTERS, PatchFiles, RasterSpec
from datasets.normalise import Normalisation


def read_raster(path: Path, modality: str, rasters: dict[str, RasterSpec] = DFC2020_RASTERS) -> np.ndarray:
    """Read every band of ``path`` (bands first) and check band count and dtype for ``modality``
    against the layout's ``rasters``."""
    spec = rasters[modality]
    try:
        with rasterio.open(path) as src:
            if src.count != spec.bands:
                raise DataError(
                    f"{path}: {src.count} bands, a {modality} file has {spec.bands} ({spec.dtype_hint})"
                )
            dtype = np.dtype(src.dtypes[0])
            if dtype.kind not in spec.kinds:
                raise DataError(f"{path}: dtype {dtype}, a {modality} file is {spec.dtype_hint}")
            return src.read()
    except RasterioError as err:
        raise DataError(f"{path}: unreadable or truncated GeoTIFF ({err})") from err


def read_patch(
    patch: PatchFiles,
    classes: ClassConfig,
    normalisation: Normalisation,
    shape: tuple[int, int] | None = None,
    rasters: dict[str, RasterSpec] = DFC2020_RASTERS,
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(normalised float32 (15,H,W), uint8 labels (H,W) or None, replaced non-finite S1 pixels).

    ``shape`` is the (H, W) every patch of the split must have (the first patch's); ``rasters`` the
    layout's band and dtype specs (``SplitSources.rasters``).
    """
    s1 = read_raster(patch.s1, "s1", rasters)
    s2 = read_raster(patch.s2, "s2", rasters)
    expected = shape or s2.shape[1:]
    arrays = [(patch.s1, s1), (patch.s2, s2)]
    labels = None
    if patch.dfc is not None:
        dfc = read_raster(patch.dfc, "dfc", rasters)
        arrays.append((patch.dfc, dfc))
    for path, arr in arrays:
        if arr.shape[1:] != tuple(expected):
            raise DataError(
                f"{path}: shape {arr.shape[1]}x{arr.shape[2]}, expected {expected[0]}x{expected[1]}"
            )
    if patch.dfc is not None:
        labels = classes.to_index(dfc[0])
    image, nonfinite = normalisation.apply(s1, s2)
    if not np.isfinite(image).all():
        raise DataError(f"{patch.s2}: non-finite values after normalisation")
    return image, labels, nonfinite
