"""Decode and validate one patch: GeoTIFFs -> normalised (15, H, W) input + class-index labels.

Every check raises :class:`DataError` with the file path and the problem, so one message tells
the user which file to fix; the cache builder turns it into a skip under ``skip_bad``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from rasterio.errors import RasterioError

from bench.core.errors import DataError
from datasets.classes import ClassConfig
from datasets.layouts import PatchFiles
from datasets.normalise import Normalisation


@dataclass(frozen=True)
class RasterSpec:
    """What a modality's file must contain."""

    bands: int
    kinds: str  # accepted numpy dtype kinds: "f" float, "u" unsigned, "i" signed
    dtype_hint: str


SPECS: dict[str, RasterSpec] = {
    "s1": RasterSpec(2, "f", "float32 dB (VV, VH)"),
    "s2": RasterSpec(13, "u", "uint16 L1C DN (B1..B12 with B8A)"),
    "dfc": RasterSpec(1, "ui", "integer DFC class ids"),
}


def read_raster(path: Path, modality: str) -> np.ndarray:
    """Read every band of ``path`` (bands first) and check band count and dtype for ``modality``."""
    spec = SPECS[modality]
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
) -> tuple[np.ndarray, np.ndarray | None, int]:
    """(normalised float32 (15,H,W), uint8 labels (H,W) or None, replaced non-finite S1 pixels).

    ``shape`` is the (H, W) every patch of the split must have (the first patch's).
    """
    s1 = read_raster(patch.s1, "s1")
    s2 = read_raster(patch.s2, "s2")
    expected = shape or s2.shape[1:]
    arrays = [(patch.s1, s1), (patch.s2, s2)]
    labels = None
    if patch.dfc is not None:
        dfc = read_raster(patch.dfc, "dfc")
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
