"""``load_dataset``: the one entry point from a folder (or nothing) to cached, validated splits."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from bench.core.provenance import stable_hash
from datasets.cache import CachedSplit, cached_split
from datasets.classes import DEFAULT_CLASSES, ClassConfig
from datasets.embedded import default_data_root
from datasets.layouts import DEFAULT_SPLIT_SCHEME, detect_layout
from datasets.normalise import BAND_NAMES, DEFAULT_NORMALISATION, Normalisation


@dataclass(frozen=True)
class Dataset:
    """A DFC2020-like dataset: the labelled pool and the test split, decoded and cached.

    ``split_scheme`` says how the patches were assigned to the two (``seed``: the seed's protocol).
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
    return Dataset(
        root=root,
        layout=layout.name,
        fingerprint=stable_hash(parts),
        classes=classes,
        normalisation=normalisation,
        labelled=splits["labelled"],
        test=splits["test"],
        split_scheme=split_scheme,
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
    sources = detect_layout(root).pool(root)
    return cached_split(sources, DEFAULT_CLASSES, normalisation, skip_bad=skip_bad, progress=progress)
