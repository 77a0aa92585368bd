"""ImageNet weights: loaded through timm from a local file; clear errors without weights or timm trunk."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from bench.core.errors import BenchError
from bench.models.backbones import build_backbone
from methods import PretrainContext, get_method
from methods.imagenet import stem_filters_from_rgb


@pytest.fixture(autouse=True)
def offline_empty_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Never download: an empty hub cache in offline mode."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))


def test_imagenet_loads_the_given_checkpoint(tmp_path: Path) -> None:
    torch.manual_seed(1)
    source = timm.create_model("resnet18")
    path = tmp_path / "resnet18.pth"
    torch.save(source.state_dict(), path)
    torch.manual_seed(0)
    model = build_backbone("resnet18", 15)
    get_method("imagenet")().pretrain(model, None, PretrainContext(weights=path, progress=False))
    torch.testing.assert_close(model.trunk.encoder.layer3[0].conv1.weight, source.layer3[0].conv1.weight)
    torch.testing.assert_close(model.trunk.encoder.bn1.running_var, source.bn1.running_var)
    rgb = source.conv1.weight.detach()
    expected = stem_filters_from_rgb(rgb, model.spec.stem_width, 3)
    torch.testing.assert_close(model.stem.first_conv.weight, expected)
    # timm's adaptation of the first conv to the trunk's 32 input channels: RGB repeated, scaled 3/32
    torch.testing.assert_close(model.trunk.encoder.conv1.weight[:, :3], rgb * 3 / 32)


def test_stem_filters_are_the_strongest_central_mean_rgb_filters_at_full_scale() -> None:
    rgb = torch.randn(64, 3, 7, 7)
    out = stem_filters_from_rgb(rgb, 16, 3)
    assert out.shape == (16, 1, 3, 3)
    mean = rgb.mean(dim=1, keepdim=True)
    chosen = mean[..., 2:5, 2:5].flatten(1).norm(dim=1).argsort(descending=True)[:16]
    centre = mean[chosen, :, 2:5, 2:5].flatten(1)
    torch.testing.assert_close(out.flatten(1).norm(dim=1), mean[chosen].flatten(1).norm(dim=1))
    torch.testing.assert_close(
        torch.nn.functional.normalize(out.flatten(1), dim=1), torch.nn.functional.normalize(centre, dim=1)
    )


def test_imagenet_without_reachable_weights_says_how_to_provide_them() -> None:
    model = build_backbone("resnet18", 15)
    with pytest.raises(BenchError, match=r"--weights FILE.*hub cache"):
        get_method("imagenet")().pretrain(model, None, PretrainContext(progress=False))


def test_imagenet_rejects_a_missing_or_wrong_file(tmp_path: Path) -> None:
    model = build_backbone("resnet18", 15)
    with pytest.raises(BenchError, match="no such file"):
        get_method("imagenet")().pretrain(model, None, PretrainContext(weights=tmp_path / "none.pth"))
    wrong = tmp_path / "wrong.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, wrong)
    with pytest.raises(BenchError, match="is not a resnet18 checkpoint"):
        get_method("imagenet")().pretrain(model, None, PretrainContext(weights=wrong))


def test_imagenet_needs_a_timm_trunk() -> None:
    with pytest.raises(BenchError, match=r"imagenet needs a timm trunk: --backbone resnet18\|resnet50"):
        get_method("imagenet")().pretrain(build_backbone("tiny", 15), None, PretrainContext())
