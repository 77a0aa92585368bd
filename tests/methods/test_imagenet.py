"""ImageNet weights: every usual file format, checked strictly; clear errors and up-front reasons."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch

from bench.core.errors import BenchError
from bench.models.backbones import build_backbone
from methods import PretrainContext, get_method
from methods.imagenet import stem_filters_from_rgb, weights_status
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401


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
    torch.testing.assert_close(
        model.trunk.encoder.layer1[0].bn1.running_var, source.layer1[0].bn1.running_var
    )
    rgb = source.conv1.weight.detach()
    expected = stem_filters_from_rgb(rgb, model.spec.stem_width, 3)
    torch.testing.assert_close(model.stem.first_conv.weight, expected)
    assert "conv1" not in model.trunk.encoder  # the band-shared stem replaces the ResNet's first stage


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
    with pytest.raises(
        BenchError, match=r"is not a resnet18 checkpoint: only 0 of 95 trunk tensors map; tensors 95 missing"
    ):
        get_method("imagenet")().pretrain(model, None, PretrainContext(weights=wrong))


def test_imagenet_needs_a_timm_trunk() -> None:
    with pytest.raises(BenchError, match=r"imagenet needs a timm trunk: --backbone resnet18\|resnet50"):
        get_method("imagenet")().pretrain(build_backbone("tiny", 15), None, PretrainContext())


def _random_resnet18(seed: int) -> dict[str, torch.Tensor]:
    """torchvision's resnet18 with random weights: the key names of resnet18-f37072fd.pth."""
    import torchvision

    torch.manual_seed(seed)
    return torchvision.models.resnet18(weights=None).state_dict()


def _torchvision_pth(state: dict[str, torch.Tensor], folder: Path) -> Path:
    path = folder / "resnet18-f37072fd.pth"
    torch.save(state, path)
    return path


def _timm_bin(state: dict[str, torch.Tensor], folder: Path) -> Path:
    path = folder / "pytorch_model.bin"
    torch.save(state, path)
    return path


def _timm_safetensors(state: dict[str, torch.Tensor], folder: Path) -> Path:
    from safetensors.torch import save_file

    path = folder / "model.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path


def _lightning_ckpt(state: dict[str, torch.Tensor], folder: Path) -> Path:
    """A LightningModule holding the ResNet as ``self.model.backbone`` beside a head of its own."""
    path = folder / "epoch=9-step=100.ckpt"
    wrapped = {f"model.backbone.{k}": v for k, v in state.items() if not k.startswith("fc.")}
    wrapped["model.head.weight"] = torch.zeros(3, 512)
    torch.save(
        {"epoch": 9, "global_step": 100, "pytorch-lightning_version": "2.4.0", "state_dict": wrapped}, path
    )
    return path


@pytest.mark.parametrize("write", [_torchvision_pth, _timm_bin, _timm_safetensors, _lightning_ckpt])
def test_imagenet_reads_every_usual_checkpoint_format(write, tmp_path: Path) -> None:
    state = _random_resnet18(seed=3)
    path = write(state, tmp_path)
    model = build_backbone("resnet18", 15)
    get_method("imagenet")().pretrain(model, None, PretrainContext(weights=path, progress=False))
    torch.testing.assert_close(model.trunk.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])
    torch.testing.assert_close(
        model.trunk.encoder.layer2[0].downsample[1].running_mean, state["layer2.0.downsample.1.running_mean"]
    )
    expected = stem_filters_from_rgb(state["conv1.weight"], model.spec.stem_width, 3)
    torch.testing.assert_close(model.stem.first_conv.weight, expected)


def test_what_does_not_map_stays_random_and_is_named_in_one_line(tmp_path: Path) -> None:
    torch.manual_seed(0)
    model = build_backbone("resnet18", 15)
    before = model.trunk.encoder.layer1[0].conv1.weight.detach().clone()
    state = _random_resnet18(seed=4)
    del state["layer3.1.bn2.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    state["layer1.0.conv1.weight"] = torch.zeros(64, 64, 1, 1)
    path = _torchvision_pth(state, tmp_path)
    with pytest.warns(UserWarning) as caught:
        get_method("imagenet")().pretrain(model, None, PretrainContext(weights=path, progress=False))
    (note,) = [str(w.message) for w in caught]
    assert "\n" not in note
    assert "loaded 93 of 95 resnet18 trunk tensors" in note
    assert "1 missing (layer3.1.bn2.weight), kept at random init" in note
    assert "1 unexpected (layer5.0.conv1.weight), not in timm's resnet18" in note
    assert "1 of another shape (layer1.0.conv1.weight), kept at random init" in note
    assert "conv1 (3 bands) and bn1: the band-shared stem and fusion replace" in note
    torch.testing.assert_close(model.trunk.encoder.layer1[0].conv1.weight, before)  # not loaded
    torch.testing.assert_close(model.trunk.encoder.layer4[1].conv2.weight, state["layer4.1.conv2.weight"])


def _multispectral_resnet18(bands: int, seed: int) -> dict[str, torch.Tensor]:
    """A torchgeo / SSL4EO-S12 style state dict: timm's resnet18 with a ``bands``-band conv1."""
    torch.manual_seed(seed)
    return timm.create_model("resnet18", in_chans=bands, num_classes=0).state_dict()


@pytest.mark.parametrize("bands", [13, 2, 3])
def test_a_multispectral_conv1_is_replaced_by_the_stem_and_the_rest_loads(bands: int, tmp_path: Path) -> None:
    state = _multispectral_resnet18(bands, seed=6)
    assert state["conv1.weight"].shape[1] == bands
    path = tmp_path / "ssl4eo.pth"
    torch.save(state, path)
    model = build_backbone("resnet18", 15)
    with pytest.warns(UserWarning, match=rf"loaded 95 of 95 .*conv1 \({bands} bands?\) and bn1"):
        get_method("imagenet")().pretrain(model, None, PretrainContext(weights=path, progress=False))
    torch.testing.assert_close(
        model.trunk.encoder.layer2[1].bn1.running_var, state["layer2.1.bn1.running_var"]
    )
    expected = stem_filters_from_rgb(state["conv1.weight"], model.spec.stem_width, 3)
    torch.testing.assert_close(model.stem.first_conv.weight, expected)


def test_a_moco_checkpoint_loads_its_query_encoder_without_heads(tmp_path: Path) -> None:
    """SSL4EO-S12's MoCo files: ``module.encoder_q.*`` and a key encoder, MLP heads under ``fc``."""
    query, key = _multispectral_resnet18(13, seed=7), _multispectral_resnet18(13, seed=8)
    wrapped = {f"module.encoder_q.{k}": v for k, v in query.items()}
    wrapped |= {f"module.encoder_k.{k}": v for k, v in key.items()}
    wrapped |= {"module.encoder_q.fc.0.weight": torch.zeros(512, 512), "module.queue": torch.zeros(128, 4)}
    path = tmp_path / "B13_rn18_moco_0099.pth"
    torch.save({"epoch": 99, "state_dict": wrapped}, path)
    model = build_backbone("resnet18", 15)
    with pytest.warns(
        UserWarning, match=r"under prefix 'module.encoder_q.': loaded 95 of 95.*fc: no classifier"
    ):
        get_method("imagenet")().pretrain(model, None, PretrainContext(weights=path, progress=False))
    torch.testing.assert_close(model.trunk.encoder.layer4[0].conv1.weight, query["layer4.0.conv1.weight"])


def test_imagenet_refuses_a_resnet50_file_for_resnet18(tmp_path: Path) -> None:
    path = tmp_path / "resnet50.pth"
    torch.save(timm.create_model("resnet50").state_dict(), path)
    with pytest.raises(
        BenchError, match=r"not a resnet18 checkpoint: only 72 of 95 trunk tensors map; tensors"
    ):
        get_method("imagenet")().pretrain(build_backbone("resnet18", 15), None, PretrainContext(weights=path))


def test_a_file_without_tensors_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.ckpt"
    torch.save({"epoch": 3, "state_dict": {}}, path)
    with pytest.raises(BenchError, match="holds no state dict"):
        get_method("imagenet")().pretrain(build_backbone("resnet18", 15), None, PretrainContext(weights=path))
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(BenchError, match=f"cannot read ImageNet weights {garbage}"):
        get_method("imagenet")().pretrain(
            build_backbone("resnet18", 15), None, PretrainContext(weights=garbage)
        )


def test_unavailable_reason_is_known_before_any_work(tmp_path: Path) -> None:
    imagenet = get_method("imagenet")
    assert "needs a timm trunk" in str(imagenet.unavailable_reason("tiny", None))
    assert "no ImageNet weights for resnet18" in str(imagenet.unavailable_reason("resnet18", None))
    assert "no such file" in str(imagenet.unavailable_reason("resnet18", tmp_path / "none.pth"))
    assert imagenet.unavailable_reason("resnet18", _timm_bin(_random_resnet18(seed=5), tmp_path)) is None
    assert get_method("random").unavailable_reason("tiny", None) is None


def test_doctor_line_says_where_weights_would_come_from(tmp_path: Path) -> None:
    assert weights_status("tiny").startswith("not a timm trunk")
    assert (
        weights_status("resnet18")
        == "timm resnet18: none (offline, not in the hub cache); use --weights FILE"
    )


@pytest.mark.usefixtures("mlflow_store")
def test_a_13_band_checkpoint_runs_end_to_end_as_a_labelled_row(
    tiny_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The field's commonest baseline (SSL4EO-S12 / torchgeo Sentinel-2 resnet18) as a row of its own."""
    from bench.cli import main
    from bench.report.aggregate import runs_from_mlflow

    path = tmp_path / "ssl4eo.pth"
    torch.save(_multispectral_resnet18(13, seed=9), path)
    argv = ["run", "--method", "imagenet", "--backbone", "resnet18", "--weights", str(path)]
    argv += ["--label", "SSL4EO", "--samples", "10", "--seeds", "1", "--data", str(tiny_data_root)]
    assert main([*argv, "--no-progress"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("== "))
    assert lines[title + 1].split() == ["SSL4EO"]  # the table's column
    (note,) = [line for line in lines if line.startswith("warning: --weights ssl4eo.pth")]
    assert "loaded 95 of 95 resnet18 trunk tensors" in note and "conv1 (13 bands) and bn1" in note
    runs = runs_from_mlflow()
    assert list(runs["method"]) == ["SSL4EO"]
    assert main([*argv[:-8], "--label", "ImageNet", *argv[-6:]]) == 2  # a registered label is refused
    assert "registered method's name or label" in capsys.readouterr().err


def test_sweep_labels_name_one_swept_method_each() -> None:
    from bench.cli.common import labels_for

    assert labels_for(["imagenet=SSL4EO"], ["random", "imagenet"]) == {"imagenet": "SSL4EO"}
    assert labels_for(["SSL4EO"], ["imagenet"]) == {"imagenet": "SSL4EO"}
    with pytest.raises(BenchError, match="say which method"):
        labels_for(["SSL4EO"], ["random", "imagenet"])
    with pytest.raises(BenchError, match="not among the swept methods"):
        labels_for(["simsiam=SSL4EO"], ["imagenet"])
    with pytest.raises(BenchError, match="registered method's name or label"):
        labels_for(["imagenet=baseline"], ["imagenet"])


def test_a_13_band_ssl4eo_conv1_is_evaluated_whole_on_the_standard_stem(tmp_path: Path) -> None:
    """On ``resnet18-stdstem`` a 13-band S2 conv1 (SSL4EO-S12 / torchgeo order) keeps its filters at
    B1..B12 by name, bn1 is the file's, S1 starts at zero: the network is the file's on its bands."""
    from datasets import BAND_NAMES

    torch.manual_seed(2)
    source = timm.create_model("resnet18", in_chans=13).eval()
    with torch.no_grad():
        source.bn1.running_mean.uniform_(-0.5, 0.5)
    path = tmp_path / "ssl4eo.pth"
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in source.state_dict().items()}}, path)
    model = build_backbone("resnet18-stdstem", len(BAND_NAMES)).eval()
    ctx = PretrainContext(weights=path, progress=False, band_names=BAND_NAMES)
    with pytest.warns(UserWarning, match=r"conv1 \(13 bands: B1..B12\) at those input bands; VV, VH start"):
        get_method("imagenet")().pretrain(model, None, ctx)
    conv = model.trunk.encoder.conv1.weight
    assert torch.equal(conv[:, 2:], source.conv1.weight) and not conv[:, :2].any()
    assert torch.equal(model.trunk.encoder.bn1.running_mean, source.bn1.running_mean)
    x = torch.rand(1, len(BAND_NAMES), 64, 64)
    with torch.no_grad():  # the S2 bands through the file's own network, conv1 included
        torch.testing.assert_close(model.trunk.encoder(x)[-1], source.forward_features(x[:, 2:]))


def test_rgb_weights_on_the_standard_stem_take_timms_in_chans_adaptation(tmp_path: Path) -> None:
    from timm.models import adapt_input_conv

    torch.manual_seed(3)
    source = timm.create_model("resnet18")
    path = tmp_path / "rgb.pth"
    torch.save(source.state_dict(), path)
    model = build_backbone("resnet18-stdstem", 15)
    with pytest.warns(UserWarning, match="adapted to 15 bands by timm's adapt_input_conv"):
        get_method("imagenet")().pretrain(model, None, PretrainContext(weights=path, progress=False))
    expected = adapt_input_conv(15, source.conv1.weight.detach())
    torch.testing.assert_close(model.trunk.encoder.conv1.weight, expected, rtol=0, atol=0)
    torch.testing.assert_close(model.trunk.encoder.layer2[0].conv1.weight, source.layer2[0].conv1.weight)


def test_a_conv1_of_another_band_count_on_the_standard_stem_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "seven.pth"
    torch.save(timm.create_model("resnet18", in_chans=7).state_dict(), path)
    model = build_backbone("resnet18-stdstem", 15)
    with pytest.raises(BenchError, match=r"conv1 has 7 input bands; .* takes 15, 3 \(RGB\), 13"):
        get_method("imagenet")().pretrain(model, None, PretrainContext(weights=path, progress=False))
