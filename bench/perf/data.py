"""``bench perf --stage data``: one epoch from the cache vs per-epoch GeoTIFF decoding.

Both paths deliver the same patches as torch tensors ready for a model (normalised float32 input,
uint8 labels), measured in one run on the labelled pool: what the decode-once cache saves per epoch.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from bench.perf.stages import PerfRow, register_stage, stage_dataset
from datasets.layouts import detect_layout
from datasets.reader import read_patch

_BATCH = 32
_CACHE_EPOCHS = 3


def _cache_epoch(images: np.memmap, labels: np.memmap) -> int:
    """Read every batch into torch tensors; returns the patch count (so the work is not dead code)."""
    seen = 0
    for start in range(0, len(images), _BATCH):
        x = torch.from_numpy(np.array(images[start : start + _BATCH])).float()
        y = torch.from_numpy(np.array(labels[start : start + _BATCH]))
        seen += min(x.shape[0], y.shape[0])
    return seen


@register_stage("data")
def data_stage(args: argparse.Namespace) -> list[PerfRow]:
    """Patches/s of a cached epoch (best of 3) and of a GeoTIFF epoch, and their ratio."""
    ds = stage_dataset(args)
    split = ds.labelled
    keep = set(split.patch_ids)
    sources = detect_layout(ds.root).splits(ds.root, ds.split_scheme)["labelled"]
    patches = [p for p in sources.patches if p.patch_id in keep]
    n = len(split)

    assert split.labels is not None  # the labelled pool always has labels
    cache_s = float("inf")
    for _ in range(_CACHE_EPOCHS):
        start = time.perf_counter()
        _cache_epoch(split.images, split.labels)
        cache_s = min(cache_s, time.perf_counter() - start)

    shape = split.images.shape[-2:]
    start = time.perf_counter()
    for patch in patches:
        image, labels, _ = read_patch(patch, ds.classes, ds.normalisation, shape, sources.rasters)
        batch = (torch.from_numpy(image), torch.from_numpy(labels))
        assert batch[0].shape[-2:] == batch[1].shape
    tiff_s = time.perf_counter() - start

    h, w = shape
    what = f"{n} patches {h}x{w}"
    return [
        PerfRow("data", f"cache memmap -> torch ({what})", n / cache_s, "patches/s"),
        PerfRow("data", f"GeoTIFF read + normalise ({what})", len(patches) / tiff_s, "patches/s"),
        PerfRow("data", "cache speed-up over GeoTIFF", (n / cache_s) / (len(patches) / tiff_s), "x"),
    ]
