"""Decode and validate one patch: GeoTIFFs -> normalised (15, H, W) input + class-index labels.

Every check raises :class:`DataError` with the file path and the problem, so one message tells
the user which file to fix; the cache builder turns it into a skip under ``skip_bad``.
"""

from __future__ import annotations

import warnings
from collections import Counter
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
    arrays = [(patch.s1, s1), (patch.s2, s2)]
    labels = None
    if patch.dfc is not None:
        dfc = read_raster(patch.dfc, "dfc", rasters)
        arrays.append((patch.dfc, dfc))
    expected = tuple(shape) if shape is not None else _patch_shape(arrays)
    for path, arr in arrays:
        if arr.shape[1:] != tuple(expected):
            raise DataError(
                f"{path}: shape {arr.shape[1]}x{arr.shape[2]}, expected {expected[0]}x{expected[1]}"
            )
    if patch.dfc is not None:
        labels = classes.to_index(dfc[0])
        _warn_unknown_codes(patch.dfc, dfc[0], classes.stored_codes)
    image, nonfinite = normalisation.apply(s1, s2)
    if not np.isfinite(image).all():
        raise DataError(f"{patch.s2}: non-finite values after normalisation")
    return image, labels, nonfinite


def _patch_shape(arrays: list[tuple[Path, np.ndarray]]) -> tuple[int, int]:
    """The (H, W) most files of the first patch share, so the odd one out is the file named (a 16 px
    S2 beside a 32 px S1 and label is the S2's fault); with no majority every file is named."""
    shapes = [tuple(arr.shape[1:]) for _, arr in arrays]
    common, count = Counter(shapes).most_common(1)[0]
    if count == 1 and len(set(shapes)) > 1:
        sizes = ", ".join(f"{path} {arr.shape[1]}x{arr.shape[2]}" for path, arr in arrays)
        raise DataError(f"the files of one patch differ in size: {sizes}")
    return common[0], common[1]


def _warn_unknown_codes(path: Path, codes: np.ndarray, stored: tuple[int, ...]) -> None:
    """Label codes outside what the file's kind holds (``stored``: 0 and DFC 1-10 for a DFC label
    file, IGBP 0-17 for a SEN12MS ``lc``) are ignored like 0, but said once per file (a wrong label
    file, or another dataset's codes, would otherwise look like few labels)."""
    known = np.array(stored, dtype=np.int64)
    unknown = ~np.isin(codes.astype(np.int64), known)
    if unknown.any():
        found = sorted(int(c) for c in np.unique(codes[unknown]))
        shown = ", ".join(map(str, found[:6])) + (", ..." if len(found) > 6 else "")
        warnings.warn(
            f"{path}: {int(unknown.sum())} pixels have label codes outside {min(stored)}-{max(stored)}: "
            f"{shown}; counted as ignored",
            stacklevel=3,
        )
