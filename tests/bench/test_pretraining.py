"""The pretrained-weights cache: pretrain once per key, reuse everywhere, rebuild on request."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pytest
import torch

from bench.harness.pretraining import pretrained_backbone, pretraining_images
from bench.models.backbones import SegBackbone
from datasets import Dataset
from methods import PretrainContext, PretrainMethod, register_method


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
