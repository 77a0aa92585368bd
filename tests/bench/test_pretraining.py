"""The pretrained-weights cache: pretrain once per key, reuse everywhere, rebuild on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import mlflow
import numpy as np
import pytest
import torch

from bench.cli import main
from bench.harness.pretraining import (
    HEALTH_TAG,
    PretrainSpec,
    UnhealthyPretraining,
    health_of,
    load_or_pretrain,
    pretrained_backbone,
    pretraining_images,
)
from bench.harness.tracking import completed_runs, setup_tracking
from bench.models.backbones import SegBackbone
from datasets import Dataset
from methods import PretrainContext, PretrainMethod, register_method
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401


@dataclass
class NudgeConfig:
    lr: float = 0.1


@register_method("test-nudge")
class Nudge(PretrainMethod):
    """A real (one-step) pretraining: pull the stem's mean response on the data towards zero."""

    description = "test method: one SGD step on the stem"
    Config = NudgeConfig
    calls: ClassVar[int] = 0

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        type(self).calls += 1
        batch = torch.tensor(np.asarray(images[:2]), dtype=torch.float32, device=ctx.device)
        opt = torch.optim.SGD(backbone.stem.parameters(), lr=self.config.lr)
        loss = backbone.band_features(batch).mean().pow(2)
        loss.backward()
        opt.step()
        ctx.log_metrics({"loss": loss.item()}, 0)


@pytest.fixture
def tracking(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def _stem_weight(model: SegBackbone) -> torch.Tensor:
    return model.stem.first_conv.weight.detach().clone()


@pytest.mark.usefixtures("tracking")
def test_second_call_loads_the_cache_without_pretraining(tiny_dataset: Dataset) -> None:
    Nudge.calls = 0
    kwargs = {"backbone": "tiny", "ds": tiny_dataset, "device": torch.device("cpu"), "progress": False}
    first, rec1 = pretrained_backbone("test-nudge", **kwargs)
    second, rec2 = pretrained_backbone("test-nudge", **kwargs)
    assert Nudge.calls == 1
    assert (rec1.cached, rec2.cached) == (False, True)
    assert rec1.key == rec2.key
    torch.testing.assert_close(_stem_weight(first), _stem_weight(second))

    _, rec3 = pretrained_backbone("test-nudge", force=True, **kwargs)
    assert Nudge.calls == 2 and not rec3.cached


@pytest.mark.usefixtures("tracking")
def test_key_changes_with_config_and_seed_only(tiny_dataset: Dataset) -> None:
    kwargs = {"backbone": "tiny", "ds": tiny_dataset, "device": torch.device("cpu"), "progress": False}
    base = pretrained_backbone("test-nudge", **kwargs)[1].key
    assert pretrained_backbone("test-nudge", method_overrides={"lr": 0.2}, **kwargs)[1].key != base
    assert pretrained_backbone("test-nudge", seed=1, **kwargs)[1].key != base
    with pytest.raises(ValueError, match="no setting"):
        pretrained_backbone("test-nudge", method_overrides={"lrr": 0.2}, **kwargs)


@pytest.mark.usefixtures("tracking")
def test_random_is_seeded_and_ignores_the_data(tiny_dataset: Dataset) -> None:
    kwargs = {"backbone": "tiny", "ds": tiny_dataset, "device": torch.device("cpu"), "progress": False}
    a, rec = pretrained_backbone("random", **kwargs)
    b, _ = pretrained_backbone("random", force=True, **kwargs)
    c, _ = pretrained_backbone("random", seed=1, **kwargs)
    assert rec.data_fingerprint == "none"
    torch.testing.assert_close(_stem_weight(a), _stem_weight(b))
    assert not torch.equal(_stem_weight(a), _stem_weight(c))


def test_test_inputs_join_the_pool_only_when_transductive(tiny_dataset: Dataset) -> None:
    images, fingerprint = pretraining_images(tiny_dataset, None, transductive=False)
    assert len(images) == len(tiny_dataset.labelled.images) and "test" not in fingerprint
    images, fingerprint = pretraining_images(tiny_dataset, None, transductive=True)
    assert len(images) == len(tiny_dataset.labelled.images) + len(tiny_dataset.test.images)
    assert "test:" in fingerprint


#: A constructed dead CoRe run: the real method, but nothing learns (lr 0), so its restoration is
#: the random decoder's, no better than the per-band mean fill: what the dead v2 runs scored.
DEAD_CORE = (("lr", 0.0), ("steps", 2), ("batch_size", 4), ("crop", 16), ("log_every", 1))


def _pretrain_runs() -> list[mlflow.entities.Run]:
    client, exp_id = setup_tracking()
    return client.search_runs([exp_id], "tags.`bench.kind` = 'pretrain'")


@pytest.mark.usefixtures("tracking")
def test_a_dead_run_is_stopped_by_the_gate_with_one_line_and_never_cached_as_good(
    tiny_dataset: Dataset, bench_home_dir
) -> None:
    spec = PretrainSpec("core", "tiny", seed=3, method_overrides=DEAD_CORE)
    with pytest.raises(UnhealthyPretraining) as stopped:
        load_or_pretrain(spec, tiny_dataset, torch.device("cpu"), progress=False)
    line = str(stopped.value)
    assert "\n" not in line and "pretraining core seed 3 failed its health gate: " in line
    assert "recon_skill" in line or "restored_std_ratio" in line  # names the figure
    (run,) = _pretrain_runs()
    assert run.info.status == "FAILED" and run.data.tags[HEALTH_TAG].startswith("failed: pretraining core")
    weights = sorted(p.name for p in (bench_home_dir / "weights").glob("*.pt"))
    assert len(weights) == 1 and weights[0].endswith(".unhealthy.pt")  # kept aside, never as good

    with pytest.raises(UnhealthyPretraining, match="core seed 3 failed"):  # at once, no retraining
        load_or_pretrain(spec, tiny_dataset, torch.device("cpu"), progress=False)
    assert len(_pretrain_runs()) == 1

    allowed = PretrainSpec("core", "tiny", seed=3, method_overrides=DEAD_CORE, allow_unhealthy=True)
    model, record = load_or_pretrain(allowed, tiny_dataset, torch.device("cpu"), progress=False)
    assert record.cached and record.health == run.data.tags[HEALTH_TAG] == health_of(model)
    assert len(_pretrain_runs()) == 1


@pytest.mark.usefixtures("tracking")
def test_a_pretraining_run_is_finished_only_once_its_weights_are_saved(
    tiny_dataset: Dataset, monkeypatch: pytest.MonkeyPatch, bench_home_dir
) -> None:
    def full_disk(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device")

    kwargs = {"backbone": "tiny", "ds": tiny_dataset, "device": torch.device("cpu"), "progress": False}
    with monkeypatch.context() as m:
        m.setattr(torch, "save", full_disk)
        with pytest.raises(OSError):
            pretrained_backbone("test-nudge", **kwargs)
    assert [r.info.status for r in _pretrain_runs()] == ["FAILED"]
    assert not list((bench_home_dir / "weights").glob("*.pt"))
    model, record = pretrained_backbone("test-nudge", **kwargs)
    statuses = sorted(r.info.status for r in _pretrain_runs())
    assert statuses == ["FAILED", "FINISHED"] and not record.cached and record.health == "passed"
    assert health_of(model) == "passed"  # no checks declared: nothing failed


@pytest.mark.usefixtures("mlflow_store")
def test_run_stops_on_a_dead_pretraining_and_allow_unhealthy_runs_it_tagged(
    tiny_data_root, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["run", "--method", "core", "--samples", "20", "--seeds", "2", "--data", str(tiny_data_root)]
    argv += ["--pretrain-seeds", "1"]  # both seeds on the one dead run (the default is one run per seed)
    argv += ["--no-progress", *(f"--set={k}={v}" for k, v in DEAD_CORE)]
    assert main(argv) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "pretraining core seed 0 failed its health gate: " in err[0]
    assert "recon_skill" in err[0] or "restored_std_ratio" in err[0]  # the figure that failed
    assert completed_runs().empty  # the cell stopped: no seed was evaluated

    assert main([*argv, "--allow-unhealthy"]) == 0
    assert "UNHEALTHY, evaluated anyway" in capsys.readouterr().out
    runs = completed_runs()
    assert (
        len(runs) == 2 and runs[f"tags.{HEALTH_TAG}"].str.startswith("failed: pretraining core seed 0").all()
    )

    assert main(argv) != 0  # the recorded seeds are not reused silently without the flag
    assert "core seed 0 failed its health gate" in capsys.readouterr().err


@pytest.mark.usefixtures("mlflow_store")
def test_a_sweep_goes_on_past_a_dead_pretraining_and_lists_its_cell(
    tiny_data_root, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["sweep", "--methods", "core,random", "--samples", "20", "--seeds", "2", "--protocol", "linear"]
    argv += ["--pretrain-seeds", "1"]  # both seeds on the one dead run (the default is one run per seed)
    argv += ["--data", str(tiny_data_root), "--no-progress", *(f"--set=core.{k}={v}" for k, v in DEAD_CORE)]
    assert main(argv) != 0
    out = capsys.readouterr().out
    assert "sweep: 2 done, 0 skipped (already complete), 2 failed" in out  # random's 2 seeds went on
    assert (
        "failed (2): core linear 20 pixels seed 0 ...: pretraining core seed 0 failed its health gate" in out
    )
    runs = completed_runs()
    assert set(runs["tags.bench.method"]) == {"random"} and (runs[f"tags.{HEALTH_TAG}"] == "passed").all()
