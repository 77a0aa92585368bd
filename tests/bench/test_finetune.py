"""Finetune: crops hold labels, augmentation keeps images and labels aligned, NaN writes nothing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.core.errors import NonFiniteLossError
from bench.core.loop import lr_factor
from bench.harness.runner import CellSpec, result_key, run_seed
from bench.harness.tracking import completed_runs, find_completed
from bench.models.backbones import build_backbone
from bench.protocols.budget import LabelBudget
from bench.protocols.finetune import IGNORE, FinetuneConfig, TrainingPatches, augment
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401


def budget(n_patches: int = 4, size: int = 32) -> LabelBudget:
    rng = np.random.default_rng(0)
    patch, row, col = rng.integers(0, n_patches, 12), rng.integers(0, size, 12), rng.integers(0, size, 12)
    none = np.array([], dtype=np.int64)
    return LabelBudget(
        key="k",
        unit="pixels",
        samples=3,
        seed=0,
        patch=patch,
        row=row,
        col=col,
        label=rng.integers(0, 3, 12),
        train_patches=np.arange(n_patches),
        val_patches=none,
        realised={},
        val_patch=none,
        val_row=none,
        val_col=none,
        val_label=none,
        realised_val={},
        path=None,  # type: ignore[arg-type]
    )


def test_crops_contain_labelled_pixels() -> None:
    images = np.random.default_rng(1).random((4, 15, 32, 32)).astype(np.float16)
    data = TrainingPatches.from_budget(images, budget(), torch.device("cpu"))
    x, y = data.batch(64, 8, torch.Generator().manual_seed(0))
    assert x.shape == (64, 15, 8, 8) and y.shape == (64, 8, 8)
    assert ((y != IGNORE).flatten(1).sum(1) >= 1).all()


def test_augment_keeps_images_and_labels_aligned() -> None:
    y = torch.randint(0, 5, (32, 8, 8))
    x = torch.stack([y.float(), -y.float()], 1)
    xa, ya = augment(x, y, torch.Generator().manual_seed(0))
    assert torch.equal(xa[:, 0], ya.float()) and not torch.equal(ya, y)


def test_schedule_warms_up_then_decays_to_zero() -> None:
    cfg = FinetuneConfig(steps=100, warmup=0.1)
    assert lr_factor(0, cfg) == pytest.approx(0.1) and lr_factor(10, cfg) == pytest.approx(1.0)
    assert lr_factor(99, cfg) < 0.01


@pytest.mark.usefixtures("mlflow_store")
def test_non_finite_loss_raises_and_writes_no_result(tiny_dataset) -> None:
    spec = CellSpec(
        "random",
        20,
        protocol="finetune",
        protocol_overrides={"steps": 12, "crop": 16, "batch_size": 2, "eval_every": 100},
    )
    backbone = build_backbone("tiny", len(tiny_dataset.band_names))
    with torch.no_grad():
        next(backbone.parameters()).fill_(float("nan"))
    with pytest.raises(NonFiniteLossError):
        run_seed(spec, 0, tiny_dataset, torch.device("cpu"), backbone=backbone, progress=False)
    assert find_completed(result_key(spec, 0, tiny_dataset)) is None
    assert completed_runs().empty


def test_probe_stage_fits_the_head_and_leaves_the_backbone_untouched() -> None:
    """LP-FT's first stage: the head learns, the backbone's weights and BN statistics stay as given."""
    from bench.protocols.finetune import Segmenter, probe_head

    torch.manual_seed(0)
    b = budget()
    images = np.random.default_rng(1).random((4, 15, 32, 32)).astype(np.float16)
    images[b.patch, b.label, b.row, b.col] += 3.0  # the label is readable from one band
    data = TrainingPatches.from_budget(images, b, torch.device("cpu"))
    model = Segmenter(build_backbone("tiny", 15), 3)
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    head_before = model.head.weight.detach().clone()

    def loss() -> float:
        x, y = data.batch(64, 8, torch.Generator().manual_seed(5))
        with torch.no_grad():
            model.eval()
            return float(torch.nn.functional.cross_entropy(model(x.float()), y.long(), ignore_index=IGNORE))

    start = loss()
    cfg = FinetuneConfig(probe_steps=60, steps=60, batch_size=8, crop=8)
    probe_head(model, data, cfg, torch.Generator().manual_seed(0), torch.device("cpu"), progress=False)
    after = model.backbone.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # BN running stats included
    assert all(p.requires_grad for p in model.backbone.parameters())
    assert not torch.equal(head_before, model.head.weight)
    assert loss() < start
