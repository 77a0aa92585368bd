"""Decode-once cache: every split becomes normalised float16 memmaps plus a JSON manifest.

The cache folder is keyed by the source file paths, sizes and mtimes, the normalisation and the
class config, so editing a file or changing the protocol builds a new cache and nothing stale is
read. The split's ``fingerprint`` (what results, budgets and weights are keyed by) is a hash of the
decoded content instead: the same data copied to another path or machine keeps its fingerprint,
so workers on several machines agree on which cells are done.
A cache directory is written under a temporary name and renamed into place, so a reader never
sees half a cache, and concurrent builders of the same key simply keep the first one finished.
Its ``digest.json`` (:mod:`bench.core.integrity`) is checked when the folder is opened: a corrupted
or truncated file is reported, the folder moved aside and decoded again from the sources.
"""

from __future__ import annotations

import hashlib
import json
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bench.core.atomic import atomic_dir
from bench.core.errors import DataError
from bench.core.integrity import usable_folder, write_folder_digest
from bench.core.paths import bench_home
from bench.core.progress import progress_of
from bench.core.provenance import stable_hash
from datasets.classes import ClassConfig
from datasets.layouts import BadFile, SplitSources
from datasets.normalise import BAND_NAMES, Normalisation
from datasets.reader import read_patch

CACHE_VERSION = 1
MANIFEST = "manifest.json"


@dataclass(frozen=True)
class CachedSplit:
    """One decoded split, memory-mapped read-only.

    ``nonfinite`` lists only files with replaced pixels; ``skipped`` the files left out under
    ``skip_bad`` (path, reason); ``class_pixels`` counts labelled pixels per class name plus
    ``ignored``.
    """

    name: str
    path: Path
    images: np.memmap
    labels: np.memmap | None
    patch_ids: tuple[str, ...]
    fingerprint: str
    nonfinite: dict[str, int]
    class_pixels: dict[str, int]
    skipped: tuple[BadFile, ...]
    band_names: tuple[str, ...] = BAND_NAMES

    def __len__(self) -> int:
        return len(self.patch_ids)


def cache_root() -> Path:
    return bench_home() / "cache"


def split_fingerprint(sources: SplitSources, classes: ClassConfig, normalisation: Normalisation) -> str:
    """Cache folder key: hash of the source files' identity and of what shapes the cached bytes."""
    files = []
    for patch in sources.patches:
        for path in (patch.s1, patch.s2, patch.dfc):
            if path is not None:
                st = path.stat()
                files.append((str(path.resolve()), st.st_size, st.st_mtime_ns))
    return stable_hash(
        {
            "version": CACHE_VERSION,
            "split": sources.name,
            "files": files,
            "missing": [str(b) for b in sources.bad],
            "classes": classes,
            "normalisation": normalisation,
        }
    )


def report_bad(bad: BadFile) -> None:
    """Tell the user about a file left out under ``skip_bad`` (never silently)."""
    warnings.warn(f"skipping {bad}", stacklevel=3)
    print(f"skipping {bad}", file=sys.stderr)


def _handle_bad(bad: list[BadFile], skip_bad: bool) -> None:
    if bad and not skip_bad:
        more = f" (and {len(bad) - 1} more bad files; --skip-bad leaves them out)" if len(bad) > 1 else ""
        raise DataError(f"{bad[0]}{more}")
    for b in bad:
        report_bad(b)


def _memmap(file: Path, dtype: type, shape: tuple[int, ...]) -> np.memmap:
    """``np.memmap`` of ``file``; a refused mapping (``ulimit -v``: ENOMEM, no file name) names it."""
    try:
        return np.memmap(file, dtype=dtype, mode="r", shape=shape)
    except OSError as err:
        if err.filename is None:
            raise OSError(err.errno, err.strerror, str(file)) from err
        raise


def _open(path: Path, manifest: dict) -> CachedSplit:
    n, h, w = manifest["n"], manifest["height"], manifest["width"]
    images = _memmap(path / "images.f16", np.float16, (n, len(BAND_NAMES), h, w))
    labels = _memmap(path / "labels.u8", np.uint8, (n, h, w)) if manifest["labelled"] else None
    return CachedSplit(
        name=manifest["split"],
        path=path,
        images=images,
        labels=labels,
        patch_ids=tuple(manifest["patch_ids"]),
        fingerprint=manifest["fingerprint"],
        nonfinite=dict(manifest["nonfinite"]),
        class_pixels=dict(manifest["class_pixels"]),
        skipped=tuple(BadFile(Path(p), r) for p, r in manifest["skipped"]),
        band_names=tuple(manifest["bands"]),
    )


def _build(
    tmp: Path,
    sources: SplitSources,
    fingerprint: str,
    classes: ClassConfig,
    normalisation: Normalisation,
    skip_bad: bool,
    progress: bool,
) -> None:
    """Decode every patch of ``sources`` into ``tmp`` (validating each file on the way)."""
    bad = list(sources.bad)
    _handle_bad(bad, skip_bad)
    labelled = all(p.dfc is not None for p in sources.patches)
    ids: list[str] = []
    nonfinite: dict[str, int] = {}
    counts = np.zeros(256, dtype=np.int64)
    shape: tuple[int, int] | None = None
    content = hashlib.sha256()
    bar = progress_of(sources.patches, desc=f"caching {sources.name}", unit="patch", enabled=progress)
    with (tmp / "images.f16").open("wb") as img_fh, (tmp / "labels.u8").open("wb") as lab_fh:
        for patch in bar:
            try:
                image, labels, n_bad = read_patch(patch, classes, normalisation, shape, sources.rasters)
            except DataError as err:
                if not skip_bad:
                    raise
                b = BadFile(patch.s2, str(err))
                bad.append(b)
                report_bad(b)
                continue
            shape = shape or (image.shape[1], image.shape[2])
            image_bytes = image.astype(np.float16).tobytes()
            img_fh.write(image_bytes)
            content.update(patch.patch_id.encode())
            content.update(image_bytes)
            if labels is not None:
                lab_fh.write(labels.tobytes())
                content.update(labels.tobytes())
                counts += np.bincount(labels.ravel(), minlength=256)
            if n_bad:
                nonfinite[str(patch.s1)] = n_bad
            ids.append(patch.patch_id)
    if not ids:
        raise DataError(
            f"{sources.name} split: empty dataset, no usable patches"
            + (f" ({len(bad)} bad files)" if bad else "")
        )
    assert shape is not None  # set by the first decoded patch, and ids is not empty
    class_pixels = {name: int(counts[i]) for i, name in enumerate(classes.names)} if labelled else {}
    if labelled:
        class_pixels["ignored"] = int(counts.sum() - sum(class_pixels.values()))
    manifest = {
        "source_key": fingerprint,
        "fingerprint": stable_hash(
            {"content": content.hexdigest(), "classes": classes, "normalisation": normalisation}
        ),
        "split": sources.name,
        "labelled": labelled,
        "n": len(ids),
        "height": shape[0],
        "width": shape[1],
        "bands": list(BAND_NAMES),
        "dtype": "float16",
        "patch_ids": ids,
        "nonfinite": nonfinite,
        "class_pixels": class_pixels,
        "skipped": [[str(b.path), b.reason] for b in bad],
        "classes": list(classes.names),
        "normalisation": normalisation.mode,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1))
    write_folder_digest(tmp, ["images.f16", "labels.u8", MANIFEST])


def cached_split(
    sources: SplitSources,
    classes: ClassConfig,
    normalisation: Normalisation,
    *,
    skip_bad: bool = False,
    progress: bool = True,
) -> CachedSplit:
    """Open the cache of ``sources``, decoding the GeoTIFFs first if it does not exist yet."""
    if not sources.patches and not sources.bad:
        raise DataError(f"{sources.name} split: empty dataset, no patches found")
    fingerprint = split_fingerprint(sources, classes, normalisation)
    final = cache_root() / fingerprint
    hit = usable_folder(final, f"decoded {sources.name} cache")
    if not hit:
        with atomic_dir(final, MANIFEST) as tmp:
            _build(tmp, sources, fingerprint, classes, normalisation, skip_bad, progress)
    manifest = json.loads((final / MANIFEST).read_text())
    split = _open(final, manifest)
    if hit:  # a fresh build has already reported its bad files
        _handle_bad(list(split.skipped), skip_bad)
    return split
