"""UniFeat, CoRe and SSCL: pair sampling, degradations, what trains, and that the losses go down."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.backbones import build_backbone
from methods import PretrainContext, get_method
from methods.augment import SAR_BANDS
from methods.core import CoReConfig, degrade, train_core
from methods.unifeat import UniFeatConfig, sample_band_pairs, train_unifeat
from tests.methods.conftest import decreased

QUICK = {"steps": 30, "batch_size": 8, "crop": 16, "log_every": 5}


def _is_cross(pairs: torch.Tensor) -> torch.Tensor:
    return (pairs < SAR_BANDS).sum(dim=1) == 1


@pytest.mark.parametrize("p_cross", [0.0, 0.5, 1.0])
def test_unifeat_pairs_are_distinct_and_cross_modal_at_the_configured_rate(p_cross: float) -> None:
    pairs = sample_band_pairs(20_000, 15, p_cross, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert pairs.shape == (20_000, 2) and (pairs[:, 0] != pairs[:, 1]).all()
    assert pairs.min() >= 0 and pairs.max() < 15
    expected = p_cross + (1 - p_cross) * (2 * SAR_BANDS * (15 - SAR_BANDS)) / (15 * 14)
    assert abs(float(_is_cross(pairs).float().mean()) - expected) < 0.015


def test_unifeat_trains_only_the_stem_and_loss_decreases(images: np.ndarray, ctx: PretrainContext) -> None:
    torch.manual_seed(0)
    model = build_backbone("tiny", 15)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    losses = train_unifeat(model, images, ctx, UniFeatConfig(**QUICK), "unifeat")
    assert decreased(losses)
    after = model.state_dict()
    assert not torch.equal(before["stem.layers.0.0.weight"], after["stem.layers.0.0.weight"])
    for key in before:
        if not key.startswith("stem."):
            torch.testing.assert_close(before[key], after[key], msg=key)
    assert any("unifeat/collapse_std" in m for _, m in ctx.logged)  # type: ignore[attr-defined]


def test_core_degradations_do_what_they_claim() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(256, 15, 16, 16) + 0.1
    cfg = CoReConfig(p_band=0.2, p_modality=0.3, blur_p=0.0, cutout_boxes=1, cutout_max_frac=0.25)
    out = degrade(x, cfg, gen)
    dropped = out.dropped[:, :, None, None].expand_as(x)
    assert (out.x[dropped] == 0).all()
    assert (out.x[out.cut.expand_as(x)] == 0).all()
    kept = ~dropped & ~out.cut.expand_as(x)
    torch.testing.assert_close(out.x[kept], x[kept])
    assert (~out.dropped).any(dim=1).all()  # some band always survives
    sar_gone = out.dropped[:, :SAR_BANDS].all(dim=1)
    s2_gone = out.dropped[:, SAR_BANDS:].all(dim=1)
    assert 0.1 < float((sar_gone | s2_gone).float().mean()) < 0.5  # ~p_modality plus chance SAR drops
    assert bool(s2_gone.any())
    band_rate = float(out.dropped[~(sar_gone | s2_gone)].float().mean())
    assert 0.15 < band_rate < 0.25
    blurred = degrade(x, CoReConfig(p_band=0.0, p_modality=0.0, cutout_boxes=0, blur_p=1.0), gen)
    assert blurred.blurred.all()
    assert float((blurred.x.diff(dim=-1) ** 2).mean()) < 0.5 * float((x.diff(dim=-1) ** 2).mean())


@pytest.mark.parametrize("all_pixels", [True, False])
def test_core_loss_decreases(images: np.ndarray, ctx: PretrainContext, all_pixels: bool) -> None:
    torch.manual_seed(0)
    model = build_backbone("tiny", 15)
    losses = train_core(model, images, ctx, CoReConfig(**QUICK, loss_all_pixels=all_pixels), "core")
    assert decreased(losses)


def test_sscl_runs_both_stages_with_nested_config(images: np.ndarray, ctx: PretrainContext) -> None:
    cls = get_method("sscl")
    quick = {"steps": 4, "batch_size": 4, "crop": 16, "log_every": 2}
    method = cls(cls.config_from_dict({"unifeat": quick, "core": quick, "core.p_band": 0.3}))
    assert method.config.core.p_band == 0.3
    torch.manual_seed(0)
    model = build_backbone("tiny", 15)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    method.pretrain(model, images, ctx)
    keys = {k for _, m in ctx.logged for k in m}  # type: ignore[attr-defined]
    assert {"sscl/unifeat/loss", "sscl/core/loss"} <= keys
    assert not torch.equal(before["trunk.dec.0.weight"], model.state_dict()["trunk.dec.0.weight"])
