"""``bench export``: the trunk loads into timm and the whole backbone back into the harness with
identical outputs; the card says what the weights are; pretraining runs log the same files."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import timm
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from bench.cli import main
from bench.core.errors import BenchError
from bench.harness import export, tracking
from bench.models.backbones import build_backbone
from bench.models.exported import is_export, load_export_into
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

    # the timm file says itself what it holds: conv1/bn1 are timm's init, not trained weights
    with safe_open(str(files["timm_trunk"]), framework="pt") as handle:
        meta = handle.metadata()
    assert meta["bench.role"] == "timm_trunk" and "conv1.weight" in meta["bench.not_trained"].split(",")
    assert "conv1.weight" in meta["bench.holds"] and "NOT trained" in meta["bench.holds"]
    assert not is_export(files["timm_trunk"]) and is_export(files["backbone"])
    with pytest.raises(BenchError, match="not the whole-backbone file"):
        load_export_into(build_backbone("resnet18", len(BAND_NAMES)), files["timm_trunk"])


def test_tiny_has_no_timm_trunk_and_an_exported_file_is_checked(tmp_path: Path) -> None:
    model = build_backbone("tiny", len(BAND_NAMES))
    card = export.make_card(model, {**RECORD, "backbone": "tiny"}, DS, version="1", health=None)
    files = export.write_export(model, card, tmp_path, "t")
    assert set(files) == {"backbone", "card", "loader"}
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

    # `random` trains nothing: its pretraining run logs no weights artifact (its weights are a seed)
    client, exp_id = tracking.setup_tracking()
    (run,) = client.search_runs([exp_id], "tags.`bench.kind` = 'pretrain'")
    assert client.list_artifacts(run.info.run_id) == []

    # --from the cache file: same export, found by its record
    again = tmp_path / "again"
    assert main(["export", "--from", str(cached), "--data", str(tiny_data_root), "--out", str(again)]) == 0
    assert load_file(str(again / weights.name)).keys() == exported.keys()


def _perturbed(name: str) -> torch.nn.Module:
    """Backbone ``name`` (15 bands, eval) with non-trivial BatchNorm statistics."""
    torch.manual_seed(3)
    model = build_backbone(name, len(BAND_NAMES)).eval()
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 1.5)
    return model


#: Run in a fresh interpreter where the harness cannot be imported at all.
_STANDALONE = """
import importlib.util, sys
from pathlib import Path
import torch
for blocked in ("bench", "methods", "datasets"):
    sys.modules[blocked] = None  # any import of the harness fails
for folder in map(Path, sys.argv[1:]):
    spec = importlib.util.spec_from_file_location("load_backbone", folder / "load_backbone.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    model = mod.load_backbone(folder / "w.safetensors")
    io = torch.load(folder / "io.pt")
    with torch.no_grad():
        torch.testing.assert_close(model(io["x"]), io["y"], rtol=0, atol=0)
    raw = io["raw"]
    again = mod.normalise(raw["s1"], raw["s2"], model.card)
    torch.testing.assert_close(again, io["normalised"], rtol=0, atol=0)
    print("same", folder.name)
"""


def test_load_backbone_py_rebuilds_every_builtin_backbone_without_the_harness(tmp_path: Path) -> None:
    """The loader an export ships needs torch + timm only and gives the harness's outputs exactly
    (every built-in family: band-shared tiny and resnet18, standard-stem resnet18), and its
    ``normalise`` is the harness's normalisation (DESIGN 2.3) on raw S1 dB / S2 DN."""
    rng = np.random.default_rng(0)
    s1 = rng.uniform(-35, 5, (2, 2, 32, 32)).astype(np.float32)
    s1[0, 0, :3, :3], s1[1, 1, 0, 0] = np.nan, -np.inf
    s2 = rng.uniform(0, 12000, (2, 13, 32, 32)).astype(np.float32)
    normalised = torch.from_numpy(
        np.stack([DEFAULT_NORMALISATION.apply(a, b)[0] for a, b in zip(s1, s2, strict=True)])
    )
    folders = []
    for name in ("tiny", "resnet18", "resnet18-stdstem"):
        model = _perturbed(name)
        card = export.make_card(model, {**RECORD, "backbone": name}, DS, version="1", health=None)
        files = export.write_export(model, card, tmp_path / name, "w", timm=False)
        assert set(files) == {"backbone", "card", "loader"}
        with torch.no_grad():
            y = model(normalised)
        raw = {"s1": torch.from_numpy(s1), "s2": torch.from_numpy(s2)}
        torch.save({"x": normalised, "y": y, "raw": raw, "normalised": normalised}, tmp_path / name / "io.pt")
        folders.append(str(tmp_path / name))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", _STANDALONE, *folders], capture_output=True, text=True, env=env, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["same", "tiny", "same", "resnet18", "same", "resnet18-stdstem"]


def test_the_card_states_units_formula_and_a_timm_pretrained_cfg(tmp_path: Path) -> None:
    model = _perturbed("resnet18")
    card = json.loads(
        export.write_export(
            model, export.make_card(model, RECORD, DS, version="1", health=None), tmp_path, "c"
        )["card"].read_text()
    )
    assert card["bands"] == list(BAND_NAMES)
    assert "dB" in card["units"]["VV"] and "reflectance x 10000" in card["units"]["B12"]
    norm = card["normalisation"]
    assert "x / 25 + 1" in norm["formula"] and "x / 10000" in norm["formula"]
    vv, b2 = norm["per_band"][0], norm["per_band"][3]
    assert (vv["band"], vv["fill"], vv["clip"], vv["subtract"], vv["divide"]) == (
        "VV",
        -25.0,
        [-25.0, 0.0],
        -25.0,
        25.0,
    )
    assert (b2["band"], b2["clip"], b2["subtract"], b2["divide"]) == ("B2", [0.0, 10000.0], 0.0, 10000.0)
    cfg = card["pretrained_cfg"]
    assert cfg["architecture"] == "resnet18" and cfg["input_size"][0] == len(BAND_NAMES)
    assert cfg["mean"][:3] == [-25.0, -25.0, 0.0] and cfg["std"][:3] == [25.0, 25.0, 10000.0]
    assert card["stem"].startswith("band-shared") and card["loader"]["file"] == "load_backbone.py"


def test_a_standard_stem_export_gives_timm_the_trained_conv1(tmp_path: Path) -> None:
    """The timm file of ``resnet18-stdstem`` is everything trained, conv1 on all 15 bands included;
    it loads through timm's own pretrained loading with the card's ``pretrained_cfg``."""
    model = _perturbed("resnet18-stdstem")
    card = export.make_card(model, {**RECORD, "backbone": "resnet18-stdstem"}, DS, version="1", health=None)
    files = export.write_export(model, card, tmp_path, "s")
    saved = json.loads(files["card"].read_text())
    assert saved["timm_trunk"]["not_trained"] == ["fc.bias", "fc.weight"]
    assert saved["pretrained_cfg"]["file"] == files["timm_trunk"].name
    overlay = {**saved["pretrained_cfg"], "file": str(files["timm_trunk"])}
    theirs = timm.create_model(
        "resnet18", pretrained=True, in_chans=15, pretrained_cfg_overlay=overlay
    ).eval()
    x = torch.rand(1, 15, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(theirs.forward_features(x), model.trunk.encoder(x)[-1], rtol=0, atol=0)
    with safe_open(str(files["timm_trunk"]), framework="pt") as handle:
        holds = handle.metadata()["bench.holds"]
    assert "except fc.bias, fc.weight" in holds and "conv1" not in holds


def _aa(method: str, label: str | None = None) -> tuple[float, float]:
    runs = tracking.completed_runs()
    runs = runs[runs["tags.bench.method"] == method]
    if label is not None:
        runs = runs[runs["tags.bench.label"] == label]
    (aa,), (oa,) = runs["metrics.AA"].tolist(), runs["metrics.OA"].tolist()
    return float(aa), float(oa)


@pytest.mark.usefixtures("mlflow_store")
def test_weights_of_an_export_give_the_cached_weights_linear_aa(
    tiny_pool_data_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Trained weights (the supervised control, 3 steps, tiny): ``bench run`` on the cached weights,
    then ``bench export`` and ``bench run --method imagenet --weights <export>``: the same linear
    AA and OA to the last digit. Its pretraining run logged exactly one file, the backbone."""
    data = ["--data", str(tiny_pool_data_root), "--no-progress"]
    cell = ["--samples", "20", "--seeds", "1", "--protocol", "linear", *data]
    train = ["--method", "supervised", "--set", "steps=3", "--set", "batch_size=4"]
    assert main(["run", *train, *cell]) == 0
    out = tmp_path / "export"
    assert main(["export", *train, *data, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "cached" in printed  # the weights `run` trained, not trained again
    (weights,) = out.glob("supervised-tiny-*[!m].safetensors")
    assert main(["run", "--method", "imagenet", "--weights", str(weights), "--label", "Exported", *cell]) == 0
    assert _aa("imagenet", "Exported") == _aa("supervised")

    client, exp_id = tracking.setup_tracking()
    (trained,) = client.search_runs(
        [exp_id], "tags.`bench.kind` = 'pretrain' and tags.`bench.method` = 'supervised'"
    )
    (folder,) = client.list_artifacts(trained.info.run_id)
    (artifact,) = client.list_artifacts(trained.info.run_id, folder.path)
    assert artifact.path == f"{export.ARTIFACT_DIR}/{weights.name}" and not artifact.is_dir
    (loaded,) = client.search_runs(
        [exp_id], "tags.`bench.kind` = 'pretrain' and tags.`bench.method` = 'imagenet'"
    )
    assert client.list_artifacts(loaded.info.run_id) == []  # nothing trained: no weights artifact
    assert Path(trained.info.artifact_uri.removeprefix("file://")).is_relative_to(
        Path(tracking.tracking_uri().removeprefix("sqlite:///")).parent
    )


def _random_export(data_root: Path, out: Path) -> list[str]:
    return ["export", "--method", "random", "--data", str(data_root), "--out", str(out), "--no-progress"]


@pytest.mark.usefixtures("mlflow_store")
def test_a_full_disk_while_writing_the_card_leaves_no_half_export(
    tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The card is written last; the disk filling up then leaves no ``.safetensors`` without its
    ``.json`` (nor the loader), so the one line's "nothing half-written was left" is true."""
    out = tmp_path / "out"
    write_text, refused = Path.write_text, []

    def full_disk_on_the_card(self: Path, *args: object, **kwargs: object) -> int:
        if self.parent == out and ".json." in self.name:  # the card's temporary, not the cache's
            refused.append(self.name)
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(self, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(Path, "write_text", full_disk_on_the_card)
        assert main(_random_export(tiny_data_root, out)) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no space left on the device holding" in err and str(out) in err
    assert refused and refused[0].startswith(f".{export.TEMP_TAG}")  # the name the cleaner knows
    assert sorted(p.name for p in out.iterdir()) == []  # no weights, no loader, no temporary
    assert main(_random_export(tiny_data_root, out)) == 0  # room again: the whole export
    assert {p.suffix for p in out.iterdir()} == {".safetensors", ".json", ".py"}


@pytest.mark.usefixtures("mlflow_store")
def test_an_out_that_is_a_file_or_refuses_writes_is_named_in_one_line(
    tiny_data_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--out`` a file, under a file, or a folder that refuses writes: one line naming ``--out``
    (not a traceback, not ``BENCH_HOME``); the first three before any pretraining."""
    afile = tmp_path / "notes.txt"
    afile.write_text("mine\n")
    for out, says in ((afile, "is a file"), (afile / "sub", f"is under the file {afile}")):
        assert main(_random_export(tiny_data_root, out)) == 2
        captured = capsys.readouterr()
        assert captured.err.strip() == (
            f"error: --out {out} {says}; it expects a folder (where the export is written): "
            "pass another --out or move the file away"
        )
        assert "weights:" not in captured.out and afile.read_text() == "mine\n"

    locked = tmp_path / "locked"
    locked.mkdir()
    access = os.access  # what a read-only folder looks like to a user who is not root
    with monkeypatch.context() as m:
        m.setattr(os, "access", lambda p, mode, **kw: Path(p) != locked and access(p, mode, **kw))
        assert main(_random_export(tiny_data_root, locked / "export")) == 2
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        f"error: --out {locked / 'export'}: the folder {locked} refuses writes (Permission denied); make "
        "it writable or pass --out a folder you can write"
    )
    assert "weights:" not in captured.out and "BENCH_HOME" not in captured.err

    opened = os.open  # a folder that refuses the write itself (os.access said yes)

    def refuse(path: object, *args: object, **kwargs: object) -> int:
        if str(path).startswith(str(locked)):
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(path))
        return opened(path, *args, **kwargs)  # type: ignore[arg-type]

    with monkeypatch.context() as m:
        m.setattr(os, "open", refuse)
        assert main(_random_export(tiny_data_root, locked)) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: --out {locked}: the folder {locked} refuses writes (Permission denied); make it "
        "writable or pass --out a folder you can write"
    )
    assert "BENCH_HOME" not in err and list(locked.iterdir()) == []


def test_an_export_removes_the_stale_temporaries_a_killed_export_left(tmp_path: Path) -> None:
    """Only an export's own (``.bench-export.*.tmp``), only stale ones, only directly in the folder:
    ``--out`` may be a folder the user keeps other things in."""
    from bench.core.integrity import STALE_AFTER_S

    ours = tmp_path / f".{export.TEMP_TAG}t.safetensors.k1ll3d.tmp"
    fresh = tmp_path / f".{export.TEMP_TAG}u.json.wr1t1ng.tmp"  # another export writing right now
    theirs = tmp_path / ".notes.txt.x1.tmp"  # another program's
    deeper = tmp_path / "sub" / f".{export.TEMP_TAG}v.json.x2.tmp"
    deeper.parent.mkdir()
    old = time.time() - 2 * STALE_AFTER_S
    for path in (ours, fresh, theirs, deeper):
        path.write_bytes(b"0" * 10)
        if path is not fresh:
            os.utime(path, (old, old))
    model = build_backbone("tiny", len(BAND_NAMES))
    card = export.make_card(model, {**RECORD, "backbone": "tiny"}, DS, version="1", health=None)
    files = export.write_export(model, card, tmp_path, "t")
    assert not ours.exists() and fresh.exists() and theirs.exists() and deeper.exists()
    assert all(path.is_file() for path in files.values())
    assert sorted(p.name for p in tmp_path.glob(f".{export.TEMP_TAG}*")) == [fresh.name]
