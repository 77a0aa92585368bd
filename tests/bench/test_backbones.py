"""The shared backbone: any band count in, per-pixel features out, one stem for every band."""

from __future__ import annotations

import pytest
import torch

from bench.models.backbones import build_backbone, list_backbones


@pytest.mark.parametrize("in_chans", [1, 2, 15])
def test_tiny_gives_per_pixel_features_for_any_band_count(in_chans: int) -> None:
    model = build_backbone("tiny", in_chans).eval()
    out = model(torch.rand(2, in_chans, 24, 40))
    assert out.shape == (2, model.out_dim, 24, 40)
    assert torch.isfinite(out).all()


def test_resnet18_trunk_returns_input_resolution() -> None:
    model = build_backbone("resnet18", 15).eval()
    out = model(torch.rand(1, 15, 64, 64))
    assert out.shape == (1, 128, 64, 64)


def test_stem_is_shared_across_bands() -> None:
    model = build_backbone("tiny", 3).eval()
    band = torch.rand(1, 1, 16, 16)
    feats = model.band_features(band.expand(1, 3, 16, 16).contiguous())
    assert feats.shape == (1, 3, 8, 16, 16)
    torch.testing.assert_close(feats[:, 0], feats[:, 2])
    torch.testing.assert_close(feats[:, 0], model.stem(band))


def test_wrong_band_count_names_both_counts() -> None:
    model = build_backbone("tiny", 15)
    with pytest.raises(ValueError, match="built for 15 bands, got input with 13"):
        model(torch.rand(1, 13, 8, 8))


def test_unknown_backbone_lists_the_registered_ones() -> None:
    with pytest.raises(KeyError, match="tiny"):
        build_backbone("vit_gigantic")
    assert {"tiny", "resnet18", "resnet50"} <= set(list_backbones())
