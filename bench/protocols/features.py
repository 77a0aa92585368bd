"""Frozen-backbone features of a budget's labelled pixels, extracted once per checkpoint and cached.

The linear probe fits on these with full-batch L-BFGS: each of its loss evaluations is an epoch
over the labelled pixels, and none of them re-runs the backbone. Only the listed pixels are kept,
(n, D) float16 per entry, so disk use grows with the budget and not with the data: the test split
is never cached (real DFC2020 test features would be 86 GB for resnet18); the linear protocol
streams it through backbone + probe instead. The checkpoint is identified by a digest of the
backbone's weights themselves, so re-pretrained (``--force-pretrain``) or differently loaded
weights can never be served stale features. Written atomically, with a content digest.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.device import as_input, autocast, host_tensor, to_device
from bench.core.integrity import atomic_entry, move_aside, usable_entry
from bench.core.paths import bench_home
from bench.core.progress import progress_of
from bench.core.provenance import stable_hash
from bench.models.backbones import SegBackbone


def weights_digest(backbone: SegBackbone) -> str:
    """sha256 (16 hex) of every parameter and buffer: the identity of a checkpoint's content."""
    digest = hashlib.sha256()
    for name, tensor in sorted(backbone.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]


@torch.no_grad()
def pixel_features(
    backbone: SegBackbone,
    images: np.ndarray,
    patch: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    device: torch.device,
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "features",
) -> np.ndarray:
    """(n, D) float16 features (eval mode) at the pixels ``images[patch, :, row, col]``.

    Only the patches that hold a listed pixel go through the backbone, ``batch_size`` at a time,
    whole (a segmentation network needs the context); the rest of each feature map is dropped.
    """
    to_device(backbone, device).eval()
    out = np.empty((patch.size, backbone.out_dim), dtype=np.float16)
    order = np.argsort(patch, kind="stable")
    patches, first = np.unique(patch[order], return_index=True)
    bounds = np.append(first, patch.size)  # pixels of patches[i] are order[bounds[i]:bounds[i + 1]]
    for start in progress_of(range(0, patches.size, batch_size), desc=desc, unit="batch", enabled=progress):
        chunk = patches[start : start + batch_size]
        x = as_input(host_tensor(images[chunk]), device)
        with autocast(device):
            feats = backbone(x)
        at = order[bounds[start] : bounds[start + chunk.size]]
        local = torch.from_numpy(np.searchsorted(chunk, patch[at])).to(device)
        r, c = torch.from_numpy(row[at]).to(device), torch.from_numpy(col[at]).to(device)
        out[at] = feats[local, :, r, c].to(torch.float16).cpu().numpy()
    return out


def _usable_features(path: Path) -> bool:
    """The feature file exists, matches its digest and opens as an .npy; else it is extracted again."""
    if not usable_entry(path, "feature cache"):
        return False
    try:
        np.load(path, mmap_mode="r")
    except Exception as err:  # matches its digest but is not an .npy: written wrong
        move_aside(path, f"unreadable ({type(err).__name__})", "feature cache")
        return False
    return True


def cached_pixel_features(
    backbone: SegBackbone,
    images: np.ndarray,
    patch: np.ndarray,
    row: np.ndarray,
    col: np.ndarray,
    *,
    split_fingerprint: str,
    device: torch.device,
    progress: bool = True,
    batch_size: int = 8,
) -> np.ndarray:
    """:func:`pixel_features` of the listed pixels under the backbone's current weights, cached.

    Keyed by the weights' digest, the backbone spec, the split's fingerprint and the pixel list
    itself: device and batch size do not change the features beyond float16 rounding. An entry is
    (n, D) float16 for n listed pixels, so the cache grows with the budget, never with a split.
    """
    coords = np.stack([patch, row, col]).astype(np.int64)
    key = stable_hash(
        {
            "weights": weights_digest(backbone),
            "backbone": backbone.spec,
            "split": split_fingerprint,
            "pixels": hashlib.sha256(coords.tobytes()).hexdigest()[:16],
            "dtype": "f16",
        }
    )
    path = bench_home() / "features" / f"{key}.npy"
    if not _usable_features(path):
        feats = pixel_features(
            backbone, images, patch, row, col, device, batch_size, progress, desc=f"features {key[:8]}"
        )
        with atomic_entry(path) as tmp, open(tmp, "wb") as fh:
            np.save(fh, feats)
    return np.load(path)


def budget_features(
    backbone: SegBackbone,
    ds: Any,
    budget: Any,
    device: torch.device,
    progress: bool = True,
    cache: bool = True,
) -> np.ndarray:
    """Features of a label budget's training pixels (only those) in ``ds``'s labelled pool: what a
    frozen-backbone protocol (linear, kNN) fits on. Cached (:func:`cached_pixel_features`), or with
    ``cache=False`` extracted and dropped (features read once, e.g. a pretraining run's usefulness
    figure)."""
    pool = ds.labelled
    if not cache:
        return pixel_features(backbone, pool.images, budget.patch, budget.row, budget.col, device)
    return cached_pixel_features(
        backbone,
        pool.images,
        budget.patch,
        budget.row,
        budget.col,
        split_fingerprint=pool.fingerprint,
        device=device,
        progress=progress,
    )
