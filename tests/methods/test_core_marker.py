"""CoRe's missing marker (issue 20): missing data is marked in feature space, never fed to the stem
as a value outside the data, whatever the normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.backbones import build_backbone
from methods import PretrainContext
from methods.core import CoReConfig, CoReHead, masked_band_features, train_core

QUICK = {"steps": 3, "batch_size": 8, "crop": 16, "log_every": 3, "holdout_fraction": 0.25}


def _banded_images(low: float, width: float) -> tuple[np.ndarray, np.ndarray]:
    """(16, 15, 32, 32) images whose band b lies in [low + b, low + b + width]: disjoint ranges, so
    each single-band image the stem sees must lie wholly inside one band's range."""
    gen = np.random.default_rng(0)
    lows = low + np.arange(15, dtype=np.float32)
    images = lows.reshape(1, 15, 1, 1) + width * gen.random((16, 15, 32, 32), dtype=np.float32)
    return images.astype(np.float32), lows


def _stem_inputs(model: torch.nn.Module) -> tuple[list[torch.Tensor], torch.utils.hooks.RemovableHandle]:
    seen: list[torch.Tensor] = []
    # the convolution that sees raw band values (whichever path the backbone takes to it)
    conv = model.stem.first_conv
    handle = conv.register_forward_pre_hook(lambda _, args: seen.append(args[0].detach().clone()))
    return seen, handle


def _outside_every_band(rows: torch.Tensor, lows: np.ndarray, width: float) -> int:
    """How many single-band images (N, 1, H, W) do not lie wholly inside some band's range."""
    lo = torch.from_numpy(lows).view(1, -1)
    flat = rows.flatten(1)
    inside = (flat.min(1).values.view(-1, 1) >= lo - 1e-4) & (
        flat.max(1).values.view(-1, 1) <= lo + width + 1e-4
    )
    return int((~inside.any(dim=1)).sum())


@pytest.mark.parametrize(
    "low, width",
    [(0.0, 0.5), (-8.0, 0.9)],  # [0, 1]-like bands; z-score-like bands around 0 (-1 is in range there)
    ids=["scaled", "zscore"],
)
def test_the_stem_sees_only_values_its_band_takes(low: float, width: float, ctx: PretrainContext) -> None:
    """Training and the skill measurement: every image the stem gets is one band's real values
    (cut-out pixels filled with that band's pool mean; dropped bands never enter). The v2 marker
    (-1) fails here under either normalisation: in the first it is out of every band's range, in
    the second it lands in a band where that band's data does not go."""
    images, lows = _banded_images(low, width)
    for marker, expect_outside in (("embedding", False), ("value", True)):
        torch.manual_seed(0)
        model = build_backbone("tiny", 15)
        seen, handle = _stem_inputs(model)
        train_core(model, images, ctx, CoReConfig(**QUICK, marker=marker, p_band=0.3), "core")
        handle.remove()
        outside = sum(_outside_every_band(rows, lows, width) for rows in seen)
        assert (outside > 0) == expect_outside, (marker, outside)


def test_missing_band_pixels_get_the_mask_embedding_and_present_ones_the_stem_output() -> None:
    torch.manual_seed(0)
    model = build_backbone("tiny", 15).eval()
    head = CoReHead(model, hidden=8)
    x = torch.rand(2, 15, 16, 16)
    dropped = torch.zeros(2, 15, dtype=torch.bool)
    dropped[0, 3] = dropped[1, 0] = True
    cut = torch.zeros(2, 1, 16, 16, dtype=torch.bool)
    cut[1, :, :4, :4] = True  # the top-left 2 x 2 stem pixels of image 1
    with torch.no_grad():
        feats = masked_band_features(model, x, dropped, cut, head.mask_embedding)
        plain = model.band_features(x)
    emb = head.mask_embedding.view(-1, 1, 1)
    assert torch.equal(feats[0, 3], emb.expand_as(feats[0, 3]))
    assert torch.equal(feats[1, 0], emb.expand_as(feats[1, 0]))
    assert torch.equal(feats[1, 5, :, :2, :2], emb.expand(-1, 2, 2))
    torch.testing.assert_close(feats[0, 4], plain[0, 4])  # present bands: the stem's own output
    torch.testing.assert_close(feats[1, 5, :, 2:, 2:], plain[1, 5, :, 2:, 2:])
    # the embedding is the head's, never the transferred backbone's
    assert not any("mask_embedding" in k for k in model.state_dict())
