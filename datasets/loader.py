"""``load_dataset``: the one entry point from a folder (or nothing) to cached, validated splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.provenance import stable_hash
from datasets.cache import CachedSplit, cached_split
from datasets.classes import DEFAULT_CLASSES, IGBP_TO_DFC, ClassConfig
from datasets.embedded import default_data_root
from datasets.layouts import DEFAULT_SPLIT_SCHEME, detect_layout
from datasets.normalise import BAND_NAMES, DEFAULT_NORMALISATION, Normalisation


@dataclass(frozen=True)
class Dataset:
    """A DFC2020-like dataset: the labelled pool and the test split, decoded and cached.

    ``split_scheme`` says how the patches were assigned to the two (``seed``: the seed's protocol).
    ``pretrain_pool`` is the SEN12MS-layout pool that comes with the dataset (the embedded
    default's, generator version 3), the default pretraining data, None for a real copy;
    ``pretrain_pool_id`` a cheap hash of what determines its content (for result keys).
    """

    root: Path
    layout: str
    fingerprint: str
    classes: ClassConfig
    normalisation: Normalisation
    labelled: CachedSplit
    test: CachedSplit
    band_names: tuple[str, ...] = BAND_NAMES
    split_scheme: str = DEFAULT_SPLIT_SCHEME
    pretrain_pool: Path | None = None
    pretrain_pool_id: str | None = None


@dataclass(frozen=True)
class IGBPAsDFC(ClassConfig):
    """The evaluated DFC classes, read from MODIS IGBP codes (SEN12MS ``lc`` band 1) through
    DESIGN 2.1's lookup: IGBP 1-5 -> Forest, 12 and 14 -> Croplands, 8/9 -> Savanna (ignored by
    the default classes), and so on. ``source`` keeps its cache apart from DFC-labelled caches."""

    source: str = "igbp"

    @property
    def stored_codes(self) -> tuple[int, ...]:
        """IGBP 0-17: every code an ``lc`` file holds is known (11-17 map to DFC classes too)."""
        return tuple(range(len(IGBP_TO_DFC)))

    def lookup(self) -> np.ndarray:
        table = np.full(65536, self.ignore_index, dtype=np.uint8)
        table[: len(IGBP_TO_DFC)] = super().lookup()[list(IGBP_TO_DFC)]
        return table


def load_dataset(
    data: Path | str | None = None,
    *,
    classes: ClassConfig = DEFAULT_CLASSES,
    normalisation: Normalisation = DEFAULT_NORMALISATION,
    skip_bad: bool = False,
    progress: bool = True,
    split_scheme: str = DEFAULT_SPLIT_SCHEME,
) -> Dataset:
    """Open ``data`` (a DFC2020 folder, released or Copernicus-Bench layout), or the embedded default.

    The first call decodes and validates every GeoTIFF into the cache; later calls only open memmaps.
    Raises :class:`bench.core.errors.DataError` naming the file on any broken input unless ``skip_bad``.
    ``split_scheme`` picks how a layout that offers a choice splits (Copernicus-Bench: ``seed`` by
    file name, ``csv`` by the archive's lists); a scheme the layout lacks is an error.
    """
    root = (default_data_root(progress) if data is None else Path(data)).resolve()
    layout = detect_layout(root)
    splits = {
        name: cached_split(src, classes, normalisation, skip_bad=skip_bad, progress=progress)
        for name, src in layout.splits(root, split_scheme).items()
    }
    # The seed scheme is the reference experiment: a copy split by file name holds the same patches
    # as the release and shares its fingerprint. Any other scheme is a different experiment even
    # where its lists happen to give the same patches, so it enters the fingerprint (and every key).
    parts: list[object] = [splits["labelled"].fingerprint, splits["test"].fingerprint]
    if split_scheme != DEFAULT_SPLIT_SCHEME:
        parts.append({"split_scheme": split_scheme})
    # The dataset's own pretraining pool is not part of the fingerprint (budgets and the validation
    # split are drawn from it and do not depend on the pool); its identity enters result keys.
    pool_text = layout.pool_identity(root)
    return Dataset(
        root=root,
        layout=layout.name,
        fingerprint=stable_hash(parts),
        classes=classes,
        normalisation=normalisation,
        labelled=splits["labelled"],
        test=splits["test"],
        split_scheme=split_scheme,
        pretrain_pool=layout.default_pool(root),
        pretrain_pool_id=None if pool_text is None else stable_hash(pool_text),
    )


def load_pretrain_pool(
    path: Path | str,
    *,
    classes: ClassConfig = DEFAULT_CLASSES,
    normalisation: Normalisation = DEFAULT_NORMALISATION,
    skip_bad: bool = False,
    progress: bool = True,
) -> CachedSplit:
    """A SEN12MS pretraining pool (s1 + s2 of every patch), cached.

    ``labels`` are its MODIS ``lc`` mapped to ``classes`` (IGBP -> DFC, :class:`IGBPAsDFC`) when
    every patch has an lc file, else None; only the ``supervised`` control reads them.
    """
    root = Path(path).resolve()
    sources = detect_layout(root).pool(root)
    igbp = IGBPAsDFC(classes.dfc_ids, classes.ignore_index)
    return cached_split(sources, igbp, normalisation, skip_bad=skip_bad, progress=progress)
