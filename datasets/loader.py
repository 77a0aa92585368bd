"""``load_dataset``: the one entry point from a folder (or nothing) to cached, validated splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.core.errors import DataError
from bench.core.provenance import stable_hash
from datasets.cache import CachedSplit, cached_split
from datasets.classes import DEFAULT_CLASSES, ClassConfig
from datasets.embedded import default_data_root
from datasets.layouts import detect_layout, labelled_sources, sen12ms_sources
from datasets.normalise import BAND_NAMES, DEFAULT_NORMALISATION, Normalisation
from datasets.synthetic import MARKER


@dataclass(frozen=True)
class Dataset:
    """A DFC2020-like dataset: the labelled pool and the test split, decoded and cached."""

    root: Path
    layout: str
    fingerprint: str
    classes: ClassConfig
    normalisation: Normalisation
    labelled: CachedSplit
    test: CachedSplit
    band_names: tuple[str, ...] = BAND_NAMES


def load_dataset(
    data: Path | str | None = None,
    *,
    classes: ClassConfig = DEFAULT_CLASSES,
    normalisation: Normalisation = DEFAULT_NORMALISATION,
    skip_bad: bool = False,
    progress: bool = True,
) -> Dataset:
    """Open ``data`` (a DFC2020 folder, released or Copernicus-Bench layout), or the embedded default.

    The first call decodes and validates every GeoTIFF into the cache; later calls only open memmaps.
    Raises :class:`bench.core.errors.DataError` naming the file on any broken input unless ``skip_bad``.
    """
    root = (default_data_root(progress) if data is None else Path(data)).resolve()
    layout = detect_layout(root)
    splits = {
        name: cached_split(src, classes, normalisation, skip_bad=skip_bad, progress=progress)
        for name, src in labelled_sources(root, layout).items()
    }
    return Dataset(
        root=root,
        layout="synthetic" if (root / MARKER).is_file() else layout,
        fingerprint=stable_hash([splits["labelled"].fingerprint, splits["test"].fingerprint]),
        classes=classes,
        normalisation=normalisation,
        labelled=splits["labelled"],
        test=splits["test"],
    )


def load_pretrain_pool(
    path: Path | str,
    *,
    normalisation: Normalisation = DEFAULT_NORMALISATION,
    skip_bad: bool = False,
    progress: bool = True,
) -> CachedSplit:
    """An unlabelled SEN12MS pretraining pool (s1 + s2 of every patch), cached; ``labels`` is None."""
    root = Path(path).resolve()
    layout = detect_layout(root)
    if layout != "sen12ms":
        raise DataError(f"{root}: a pretraining pool must be a SEN12MS folder, found the {layout} layout")
    return cached_split(
        sen12ms_sources(root), DEFAULT_CLASSES, normalisation, skip_bad=skip_bad, progress=progress
    )
