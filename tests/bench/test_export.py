"""``bench export``: the trunk loads into timm and the whole backbone back into the harness with
identical outputs; the card says what the weights are; pretraining runs log the same files."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import timm
import torch
from safetensors.torch import load_file

from bench.cli import main
from bench.core.errors import BenchError
from bench.harness import export, tracking
from bench.models.backbones import build_backbone
from datasets import BAND_NAMES, DEFAULT_NORMALISATION
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

RECORD = {
    "key": "k0",
    "method": "random",
    "config": {},
    "backbone": "resnet18",
    "data_fingerprint": "none",
    "seed": 0,
}
DS = SimpleNamespace(band_names=BAND_NAMES, normalisation=DEFAULT_NORMALISATION, fingerprint="fp")


def test_resnet18_export_loads_into_timm_and_back_into_the_harness(tmp_path: Path) -> None:
    torch.manual_seed(5)
    model = build_backbone("resnet18", len(BAND_NAMES)).eval()
    with torch.no_grad():  # non-trivial BatchNorm statistics, so a running buffer that is not copied shows
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    card = export.make_card(model, RECORD, DS, version="1", health={"verdict": "passed", "last": {}})
    files = export.write_export(model, card, tmp_path, "random-resnet18-k0")

    # the trunk, through timm's own pretrained loading (strict: every key of the model is there)
    trunk = timm.create_model(
        "resnet18", pretrained=True, pretrained_cfg_overlay={"file": str(files["timm_trunk"])}
    ).eval()
    x = torch.randn(2, 64, 32, 32)  # what the fusion hands the trunk at half resolution
    with torch.no_grad():
        ours = model.trunk.encoder(x)
        theirs = trunk.maxpool(x)
        for i, layer in enumerate((trunk.layer1, trunk.layer2, trunk.layer3, trunk.layer4)):
            theirs = layer(theirs)
            torch.testing.assert_close(theirs, ours[i], rtol=0, atol=0)

    # the whole backbone, back into the harness
    again, read = export.load_export(files["backbone"])
    y = torch.rand(2, len(BAND_NAMES), 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(y), model(y), rtol=0, atol=0)

    saved = json.loads(files["card"].read_text())
    assert saved == read
    assert saved["bands"] == list(BAND_NAMES) and saved["normalisation"]["mode"] == "scaled"
    assert saved["backbone"]["name"] == "resnet18" and saved["health"]["verdict"] == "passed"
    first_stage = {
        f"bn1.{k}" for k in ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
    }
    assert set(saved["timm_trunk"]["not_trained"]) == {"conv1.weight", "fc.weight", "fc.bias", *first_stage}
    assert "layer1.0.conv1.weight" not in saved["timm_trunk"]["not_trained"]


def test_tiny_has_no_timm_trunk_and_an_exported_file_is_checked(tmp_path: Path) -> None:
    model = build_backbone("tiny", len(BAND_NAMES))
    card = export.make_card(model, {**RECORD, "backbone": "tiny"}, DS, version="1", health=None)
    files = export.write_export(model, card, tmp_path, "t")
    assert set(files) == {"backbone", "card"}
    assert "no timm trunk" in json.loads(files["card"].read_text())["timm_trunk"]["reason"]
    plain = tmp_path / "plain.safetensors"
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(plain))
    with pytest.raises(BenchError, match="no bench card"):
        export.load_export(plain)


@pytest.mark.usefixtures("mlflow_store")
def test_cli_exports_the_cached_weights_and_the_pretraining_run_logged_them(
    tiny_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    argv = ["export", "--method", "random", "--data", str(tiny_data_root), "--out", str(out), "--no-progress"]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "no timm trunk: backbone 'tiny'" in printed
    (weights,) = out.glob("random-tiny-*.safetensors")
    card = json.loads(weights.with_suffix(".json").read_text())
    assert card["method"] == "random" and card["health"]["verdict"] == "passed"
    assert card["dataset_fingerprint"] and card["code_version"] and card["bands"] == list(BAND_NAMES)

    # the same weights as the cache holds (what `bench run` evaluates)
    cached = Path(printed.split("weights: ")[1].split(" (")[0])
    state = torch.load(cached, weights_only=True)
    exported = load_file(str(weights))
    assert exported.keys() == state.keys()
    assert all(torch.equal(exported[k], state[k]) for k in state)

    # the pretraining run logged the export as artifacts
    client, exp_id = tracking.setup_tracking()
    (run,) = client.search_runs([exp_id], "tags.`bench.kind` = 'pretrain'")
    logged = {a.path for a in client.list_artifacts(run.info.run_id, export.ARTIFACT_DIR)}
    assert logged == {f"{export.ARTIFACT_DIR}/{weights.name}", f"{export.ARTIFACT_DIR}/{weights.stem}.json"}

    # --from the cache file: same export, found by its record
    again = tmp_path / "again"
    assert main(["export", "--from", str(cached), "--data", str(tiny_data_root), "--out", str(again)]) == 0
    assert load_file(str(again / weights.name)).keys() == exported.keys()
