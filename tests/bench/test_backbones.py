"""The shared backbone: any band count in, per-pixel features out, one stem for every band."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F

from bench.models.backbones import ARCH_VERSION, build_backbone, list_backbones
from bench.models.timm_resnet import StandardSegmenter
from bench.perf.backbone import training_cost
from bench.protocols.finetune import Segmenter


@pytest.mark.parametrize("in_chans", [1, 2, 15])
def test_tiny_gives_per_pixel_features_for_any_band_count(in_chans: int) -> None:
    model = build_backbone("tiny", in_chans).eval()
    out = model(torch.rand(2, in_chans, 24, 40))
    assert out.shape == (2, model.out_dim, 24, 40)
    assert torch.isfinite(out).all()


@pytest.mark.parametrize("size", [(64, 64), (37, 50)])
def test_resnet18_decodes_at_a_quarter_and_returns_input_resolution(size: tuple[int, int]) -> None:
    model = build_backbone("resnet18", 15).eval()
    x = torch.rand(1, 15, *size)
    coarse = model.features(x)
    assert coarse.shape[-2:] == tuple((s + 3) // 4 for s in size)
    out = model(x)
    assert out.shape == (1, 128, *size)
    torch.testing.assert_close(out, F.interpolate(coarse, size=size, mode="bilinear", align_corners=False))


def test_resnet_first_stage_is_the_band_shared_stem_and_fusion() -> None:
    model = build_backbone("resnet18", 15)
    assert "conv1" not in model.trunk.encoder and "bn1" not in model.trunk.encoder
    assert model.spec.fused_width == 64  # the ResNet's first-stage width: layer1 gets what it expects


def test_architecture_revision_is_part_of_the_spec() -> None:
    """The pretrained-weights cache keys on the spec: a new architecture must not reuse old weights."""
    spec = build_backbone("tiny", 15).spec
    assert dataclasses.asdict(spec)["version"] == ARCH_VERSION >= 2


def test_resnet18_costs_what_a_standard_segmentation_model_costs() -> None:
    """DESIGN 3 in device-independent terms: the backbone with the finetune classifier against the
    timm trunk on all bands + the same decoder + logits upsampled. Counted, not timed: FLOPs and
    the activations kept for backward (the GPU figures come from ``bench perf --stage backbone``)."""
    torch.manual_seed(0)
    x = torch.rand(2, 15, 128, 128)
    ours = training_cost(Segmenter(build_backbone("resnet18", 15), 8).train(), x)
    standard = training_cost(StandardSegmenter("resnet18", 15, 8).train(), x)
    assert ours.flops < 1.3 * standard.flops  # the stem and fusion cost about the trunk's first stage
    assert ours.held_bytes < 4 * standard.held_bytes


def test_stem_is_shared_across_bands_at_stride_2() -> None:
    model = build_backbone("tiny", 3).eval()
    band = torch.rand(1, 1, 16, 16)
    feats = model.band_features(band.expand(1, 3, 16, 16).contiguous())
    assert feats.shape == (1, 3, 8, 8, 8)
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
