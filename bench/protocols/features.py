"""Frozen-backbone per-pixel features, extracted once per (checkpoint, split) and cached.

The linear protocol trains and tests on these, so a seed or budget never re-runs the backbone.
The checkpoint is identified by a digest of the backbone's weights themselves, so re-pretrained
(``--force-pretrain``) or differently loaded weights can never be served stale features.
Layout ``(N, H, W, D)`` float16 (.npy, memory-mapped): one pixel's features are contiguous, which
makes gathering the labelled pixels and streaming test patches cheap. Written atomically.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from bench.core.device import as_input, autocast, host_tensor, to_device
from bench.core.integrity import atomic_entry, move_aside, usable_entry
from bench.core.paths import bench_home
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
def extract(
    backbone: SegBackbone,
    images: np.ndarray,
    device: torch.device,
    out: np.ndarray,
    batch_size: int = 8,
    progress: bool = False,
    desc: str = "features",
) -> None:
    """Write ``backbone(images)`` (eval mode) into ``out`` (N, H, W, D), batch by batch."""
    to_device(backbone, device).eval()
    for start in tqdm(range(0, len(images), batch_size), desc=desc, disable=not progress, leave=False):
        x = as_input(host_tensor(images[start : start + batch_size]), device)
        with autocast(device):
            feats = backbone(x)
        out[start : start + len(x)] = feats.permute(0, 2, 3, 1).to(torch.float16).cpu().numpy()


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


def cached_features(
    backbone: SegBackbone,
    images: np.ndarray,
    *,
    split_fingerprint: str,
    device: torch.device,
    progress: bool = True,
    batch_size: int = 8,
) -> np.ndarray:
    """The (N, H, W, D) float16 features of ``images`` under the backbone's current weights.

    Keyed by the weights' digest, the backbone spec and the split's fingerprint only: device and
    batch size do not change the features beyond float16 rounding.
    """
    key = stable_hash(
        {
            "weights": weights_digest(backbone),
            "backbone": backbone.spec,
            "split": split_fingerprint,
            "dtype": "f16",
        }
    )
    path = bench_home() / "features" / f"{key}.npy"
    if not _usable_features(path):
        n, _, h, w = images.shape
        with atomic_entry(path) as tmp:
            out = np.lib.format.open_memmap(
                tmp, mode="w+", dtype=np.float16, shape=(n, h, w, backbone.out_dim)
            )
            extract(
                backbone, images, device, out, batch_size, progress, desc=f"features {split_fingerprint[:8]}"
            )
            out.flush()
            del out
    return np.load(path, mmap_mode="r")
