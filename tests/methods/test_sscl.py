"""UniFeat, CoRe and SSCL: pair sampling, degradations, what trains, and that the losses go down."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bench.models.backbones import build_backbone
from methods import PretrainContext, get_method
from methods.augment import SAR_BANDS
from methods.core import CoReConfig, degrade, train_core
from methods.monitors import COLLAPSED_BELOW_RANK, collapse_monitors, effective_rank
from methods.unifeat import (
    UniFeatConfig,
    UniFeatHeads,
    band_pair_views,
    branch_outputs,
    sample_band_pairs,
    train_unifeat,
)
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


def test_unifeat_branches_are_two_bands_of_the_same_image_at_the_same_pixels() -> None:
    """Images whose 15 bands are identical must give identical branch features, pixel by pixel.

    Each image has its own texture, so a pairing that compared image k with another image (as
    version 1 did: k with k + B/2) gives different features and fails here.
    """
    gen = torch.Generator().manual_seed(0)
    texture = torch.rand(8, 1, 24, 24, generator=gen)
    batch = texture.expand(8, 15, 24, 24).contiguous()
    pairs = sample_band_pairs(8, 15, 0.5, gen, torch.device("cpu"))
    views = band_pair_views(batch, pairs, crop=16, gen=gen, augment=True)
    assert views.shape == (2, 8, 1, 16, 16)
    torch.testing.assert_close(views[0], views[1], rtol=0, atol=0)  # same crop, same flips
    torch.manual_seed(0)
    stem = build_backbone("tiny", 15).stem
    heads = UniFeatHeads(stem_width=build_backbone("tiny", 15).spec.stem_width, proj_dim=16)
    z, p = branch_outputs(stem, heads, views)
    assert z.shape[:2] == (2, 8) and p.shape == z.shape
    torch.testing.assert_close(z[0], z[1], rtol=0, atol=0)
    torch.testing.assert_close(p[0], p[1], rtol=0, atol=0)
    assert (z[0, :4] - z[0, 4:]).abs().max() > 1e-3  # different images really differ


def test_unifeat_views_take_the_paired_bands_of_each_image() -> None:
    """Band i of image k holds the value 100k + i: the views must carry exactly the sampled pair."""
    b, c = 6, 15
    values = (100 * torch.arange(b).view(b, 1) + torch.arange(c).view(1, c)).float()
    batch = values.view(b, c, 1, 1).expand(b, c, 8, 8).contiguous()
    gen = torch.Generator().manual_seed(1)
    pairs = sample_band_pairs(b, c, 0.5, gen, torch.device("cpu"))
    views = band_pair_views(batch, pairs, crop=4, gen=gen, augment=True)
    for k in range(b):
        for branch in range(2):
            assert (views[branch, k] == values[k, pairs[k, branch]]).all()


def test_effective_rank_reports_a_rank_one_representation_as_collapsed() -> None:
    gen = torch.Generator().manual_seed(0)
    direction = torch.randn(1, 32, generator=gen)
    rank_one = torch.randn(500, 1, generator=gen) * direction  # spread along one direction
    monitors = collapse_monitors(rank_one)
    assert float(monitors["effective_rank"]()) == pytest.approx(1.0, abs=1e-3)
    assert float(monitors["collapsed"]()) == 1.0
    assert float(monitors["collapse_std"]()) > 0.1  # the std alone does not see this collapse
    healthy = collapse_monitors(torch.randn(500, 32, generator=gen))
    assert float(healthy["effective_rank"]()) > 20 > COLLAPSED_BELOW_RANK
    assert float(healthy["collapsed"]()) == 0.0
    assert float(effective_rank(torch.zeros(10, 4))) == 0.0


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
    logged = {k for _, m in ctx.logged for k in m}  # type: ignore[attr-defined]
    assert {"unifeat/collapse_std", "unifeat/effective_rank", "unifeat/collapsed"} <= logged


def test_core_degradations_do_what_they_claim() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(256, 15, 16, 16) + 0.1
    cfg = CoReConfig(p_band=0.2, p_modality=0.3, blur_p=0.0, cutout_boxes=1, cutout_max_frac=0.25)
    mean = x.mean(dim=(0, 2, 3))
    out = degrade(x, cfg, gen, mean)
    dropped = out.dropped[:, :, None, None].expand_as(x)
    band_mean = mean.view(1, -1, 1, 1).expand_as(x)
    assert torch.equal(out.x[dropped], band_mean[dropped])  # an in-range fill: the band's pool mean
    assert torch.equal(out.x[out.cut.expand_as(x)], band_mean[out.cut.expand_as(x)])
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


def test_core_restores_dropped_optical_bands_better_than_a_mean_fill(
    images: np.ndarray, ctx: PretrainContext
) -> None:
    """After a few hundred steps, held-out patches' dropped optical bands beat the pool-mean fill.

    The fixture's bands are mixtures of 3 shared latent fields, so a dropped band is predictable
    from the others; a CoRe that learned only SAR speckle, or nothing, scores <= 0.
    """
    torch.manual_seed(0)
    model = build_backbone("tiny", 15)
    cfg = CoReConfig(steps=200, batch_size=8, crop=16, log_every=50, holdout_fraction=0.25)
    train_core(model, images, ctx, cfg, "core")
    final = {k: v for _, m in ctx.logged for k, v in m.items()}  # type: ignore[attr-defined]
    assert final["core/recon_skill_optical"] > 0.3
    assert final["core/recon_skill"] > 0.3


def test_sscl_core_stage_trains_the_unifeat_stem_ten_times_slower() -> None:
    cls = get_method("sscl")
    assert cls().config.core.stem_lr_factor == 0.1
    assert get_method("core")().config.stem_lr_factor == 1.0
