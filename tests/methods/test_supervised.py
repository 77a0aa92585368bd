"""``supervised``, the positive control: it learns the pool's lc labels on the tiny fixture, the
harness hands it the pool's labels (never the labelled pool's), and it is a control, not a competitor."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core.errors import BenchError
from bench.harness.pretraining import pretrained_backbone
from bench.models.backbones import build_backbone
from datasets import Dataset, load_dataset, load_pretrain_pool
from methods import PretrainContext, get_method
from methods.registry import method_roles
from methods.supervised import LabelledImages, Supervised, SupervisedConfig
from tests.methods.conftest import decreased


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_learns_the_pool_labels_on_the_tiny_fixture(tiny_pool_data_root: Path, ctx: PretrainContext) -> None:
    ds = load_dataset(tiny_pool_data_root, progress=False)
    assert ds.pretrain_pool is not None
    pool = load_pretrain_pool(ds.pretrain_pool, progress=False)
    assert pool.labels is not None
    ctx.labels = np.asarray(pool.labels)
    torch.manual_seed(0)
    backbone = build_backbone("tiny", in_chans=15)
    before = [p.detach().clone() for p in backbone.parameters()]
    cfg = SupervisedConfig(steps=60, batch_size=8, crop=32, log_every=5, lr=3e-3)
    Supervised(cfg).pretrain(backbone, pool.images, ctx)
    logged = [m for _, m in ctx.logged]  # type: ignore[attr-defined]
    losses = [m["supervised/loss"] for m in logged]
    accuracy = [m["supervised/pixel_accuracy"] for m in logged]
    assert decreased(losses, k=3) and np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])
    assert np.mean(accuracy[-3:]) > 0.5  # 8 classes: chance is about 0.125
    assert any(not torch.equal(a, b) for a, b in zip(before, backbone.parameters(), strict=True))


def test_label_channel_travels_with_its_image() -> None:
    images = np.random.default_rng(0).random((4, 15, 8, 8)).astype(np.float16)
    labels = np.arange(4 * 64, dtype=np.uint8).reshape(4, 8, 8) % 7
    batch = LabelledImages(images, labels)[np.array([1, 3])]
    assert batch.shape == (2, 16, 8, 8)
    np.testing.assert_array_equal(batch[:, 15], labels[[1, 3]])
    np.testing.assert_array_equal(batch[:, :15], images[[1, 3]].astype(np.float32))
    with pytest.raises(BenchError, match="must match"):
        LabelledImages(images, labels[:3])


@pytest.mark.usefixtures("tracking")
def test_harness_hands_the_pool_labels_and_refuses_without_a_pool(
    tiny_pool_data_root: Path, tiny_dataset: Dataset
) -> None:
    kwargs = {"backbone": "tiny", "device": torch.device("cpu"), "progress": False}
    overrides = {"steps": 2, "batch_size": 2, "log_every": 1}
    ds = load_dataset(tiny_pool_data_root, progress=False)
    _, record = pretrained_backbone("supervised", ds=ds, method_overrides=overrides, **kwargs)
    assert record.data_fingerprint.startswith("sen12ms:")
    with pytest.raises(BenchError, match="SEN12MS pool's lc labels"):
        pretrained_backbone("supervised", ds=tiny_dataset, method_overrides=overrides, **kwargs)


def test_is_a_control_not_a_competitor() -> None:
    cls = get_method("supervised")
    assert cls.role == "control" and cls.needs_labels and not cls.baseline
    assert list(method_roles()).index("supervised") > list(method_roles()).index("sscl")
