"""The shared backbone: any band count in, per-pixel features out, one stem for every band."""

from __future__ import annotations

import copy
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


def _twins(name: str, in_chans: int = 15) -> tuple[torch.nn.Module, torch.nn.Module]:
    """Two copies of one backbone with the same weights: the lean stem path and the plain one."""
    torch.manual_seed(0)
    lean = build_backbone(name, in_chans)
    plain = copy.deepcopy(lean)
    plain.lean_stem = False
    return lean, plain


def _graph(out: torch.Tensor) -> set[str]:
    """Names of every autograd node behind ``out``."""
    names, seen, todo = set(), set(), [out.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or id(node) in seen:
            continue
        seen.add(id(node))
        names.add(type(node).__name__)
        todo += [f for f, _ in node.next_functions]
    return names


@pytest.mark.parametrize("name", ["tiny", "resnet18"])
def test_lean_stem_computes_what_the_plain_stem_and_fusion_compute(name: str) -> None:
    """Same outputs, same gradients of every weight, running statistics updated once, as before."""
    lean, plain = _twins(name)
    x = torch.rand(2, 15, 32, 32)
    outs = []
    for model in (lean, plain):
        model.train()
        out = model.features(x)
        (out * torch.linspace(-1, 1, out.numel()).reshape(out.shape)).sum().backward()
        outs.append(out)
    assert "_BNReLUConvBackward" in _graph(outs[0]) and "_BNReLUConvBackward" not in _graph(outs[1])
    torch.testing.assert_close(outs[0], outs[1])
    grads = {n: p.grad for n, p in plain.named_parameters()}
    for n, p in lean.named_parameters():
        torch.testing.assert_close(p.grad, grads[n], rtol=1e-4, atol=1e-6, msg=n)
    buffers = dict(plain.named_buffers())
    for n, b in lean.named_buffers():
        torch.testing.assert_close(b, buffers[n], msg=n)  # running stats, num_batches_tracked
    lean.eval(), plain.eval()
    torch.testing.assert_close(lean(x), plain(x))


def test_lean_stem_holds_less_for_backward() -> None:
    """The stem's BatchNorm inputs and ReLU outputs (2 maps of 15 x 16 channels at half
    resolution per block) are recomputed in the backward pass instead of kept: resnet18 at 64 px
    held 2.6x the standard model's activations before, 1.8x now."""
    lean, plain = _twins("resnet18")
    x = torch.rand(2, 15, 64, 64)
    standard = training_cost(StandardSegmenter("resnet18", 15, 8).train(), x).held_bytes
    held = {
        label: training_cost(Segmenter(model, 8).train(), x).held_bytes / standard
        for label, model in (("lean", lean), ("plain", plain))
    }
    assert held["plain"] > 2.3
    assert held["lean"] < 0.75 * held["plain"]


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_lean_stem_matches_under_bf16_channels_last_on_cuda() -> None:
    from bench.core.device import as_input, autocast, to_device

    device = torch.device("cuda")
    lean, plain = (to_device(m, device).train() for m in _twins("resnet18"))
    x = as_input(torch.rand(4, 15, 64, 64), device)
    outs = []
    for model in (lean, plain):
        with autocast(device):
            out = model.features(x)
        out.float().square().mean().backward()
        outs.append(out.float())
    torch.testing.assert_close(outs[0], outs[1], rtol=2e-2, atol=2e-2)
    grads = {n: p.grad for n, p in plain.named_parameters()}
    for n, p in lean.named_parameters():
        scale = grads[n].abs().max().clamp(min=1e-6)
        assert (p.grad - grads[n]).abs().max() / scale < 5e-2, n


def test_the_standard_stem_variant_is_the_whole_timm_resnet_on_every_band() -> None:
    """``resnet18-stdstem``: timm's own conv1 on all bands (no band-shared stem), the same FPN-lite
    at 1/4; the methods that train the band-shared stem refuse it in one line, before any work."""
    from bench.core.errors import BenchError
    from methods import get_method

    assert "resnet18-stdstem" in list_backbones() and "resnet50-stdstem" in list_backbones()
    model = build_backbone("resnet18-stdstem", 15).eval()
    assert model.trunk.encoder.conv1.in_channels == 15 and not model.band_stem
    x = torch.rand(1, 15, 64, 48)
    with torch.no_grad():
        assert model.features(x).shape == (1, 128, 16, 12) and model(x).shape == (1, 128, 64, 48)
    assert model.spec.name == "resnet18-stdstem" and model.spec.extra["stem"]
    with pytest.raises(BenchError, match=r"standard stem .* not the band-shared stem"):
        model.band_features(x)
    for method in ("sscl", "unifeat", "core"):
        reason = get_method(method).unavailable_reason("resnet18-stdstem", None)
        assert reason and "band-shared stem" in reason, method
        assert get_method(method).unavailable_reason("resnet18", None) is None
    assert get_method("simsiam").unavailable_reason("resnet18-stdstem", None) is None
    # the band-shared backbones' specs, and so their cached weights' keys, are what they were
    assert "stem" not in build_backbone("resnet18", 15).spec.extra
