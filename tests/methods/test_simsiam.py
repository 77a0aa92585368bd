"""SimSiam through lightly: the loss goes down and the collapse monitor is logged."""

from __future__ import annotations

import numpy as np
import torch

from bench.models.backbones import build_backbone
from methods import PretrainContext, get_method
from tests.methods.conftest import decreased


def test_simsiam_loss_decreases_and_logs_collapse_monitor(images: np.ndarray, ctx: PretrainContext) -> None:
    cls = get_method("simsiam")
    method = cls(cls.config_from_dict({"steps": 30, "batch_size": 8, "crop": 16, "log_every": 1}))
    torch.manual_seed(0)
    model = build_backbone("tiny", 15)
    method.pretrain(model, images, ctx)
    losses = [m["simsiam/loss"] for _, m in ctx.logged]  # type: ignore[attr-defined]
    assert len(losses) == 30 and decreased(losses)
    stds = [m["simsiam/collapse_std"] for _, m in ctx.logged]  # type: ignore[attr-defined]
    assert 0 < stds[-1] <= 1.0
