"""Augmentations: shapes, exactness where promised, per-sample randomness, device-agnostic."""

from __future__ import annotations

import numpy as np
import torch

from methods.augment import (
    AugmentConfig,
    augment_view,
    band_gain_noise,
    cutout,
    gaussian_blur,
    random_crop,
    random_dihedral,
    random_resized_crop,
)
from methods.training import ImageBatches


def _gen() -> torch.Generator:
    return torch.Generator().manual_seed(0)


def _high_freq_energy(x: torch.Tensor) -> float:
    return float((x.diff(dim=-1) ** 2).mean() + (x.diff(dim=-2) ** 2).mean())


def test_random_crop_is_an_exact_window_per_sample() -> None:
    x = torch.arange(4 * 2 * 16 * 16, dtype=torch.float32).view(4, 2, 16, 16)
    out = random_crop(x, 8, _gen())
    assert out.shape == (4, 2, 8, 8)
    for i in range(4):  # each crop is a contiguous window of its own sample
        top, left = divmod(int(out[i, 0, 0, 0] - x[i, 0, 0, 0]), 16)
        torch.testing.assert_close(out[i], x[i, :, top : top + 8, left : left + 8])


def test_random_resized_crop_and_view_shapes() -> None:
    x = torch.rand(6, 15, 32, 32)
    assert random_resized_crop(x, 16, _gen()).shape == (6, 15, 16, 16)
    view = augment_view(x, 16, AugmentConfig(), _gen())
    assert view.shape == (6, 15, 16, 16) and torch.isfinite(view).all()


def test_dihedral_keeps_pixel_values_and_varies_per_sample() -> None:
    x = torch.rand(1, 3, 8, 8).expand(64, 3, 8, 8).contiguous()
    out = random_dihedral(x, _gen())
    torch.testing.assert_close(out.flatten(1).sort(dim=1).values, x.flatten(1).sort(dim=1).values)
    assert len({tuple(o.flatten().tolist()) for o in out}) > 4  # several group elements drawn


def test_blur_lowers_high_frequency_energy_and_sigma_zero_is_identity() -> None:
    x = torch.rand(4, 15, 32, 32)
    blurred = gaussian_blur(x, torch.tensor([0.0, 1.0, 1.0, 2.0]))
    torch.testing.assert_close(blurred[0], x[0])
    assert _high_freq_energy(blurred[1:]) < 0.5 * _high_freq_energy(x[1:])
    assert _high_freq_energy(blurred[3]) < _high_freq_energy(blurred[2])
    torch.testing.assert_close(blurred.mean(), x.mean(), atol=1e-2, rtol=0)


def test_gain_is_per_band_and_noise_is_additive() -> None:
    x = torch.ones(8, 15, 8, 8)
    gained = band_gain_noise(x, 0.1, 0.0, _gen())
    per_band = gained[:, :, 0, 0]
    torch.testing.assert_close(gained, per_band[:, :, None, None].expand_as(x))
    assert per_band.std() > 0.05
    noisy = band_gain_noise(x, 0.0, 0.05, _gen())
    assert 0.04 < float((noisy - x).std()) < 0.06


def test_cutout_zeroes_exactly_the_masked_pixels() -> None:
    x = torch.rand(8, 15, 32, 32) + 0.1
    out, mask = cutout(x, 2, 0.3, _gen())
    assert mask.shape == (8, 1, 32, 32) and mask.any(dim=(1, 2, 3)).all()
    assert (out[mask.expand_as(out)] == 0).all()
    torch.testing.assert_close(out[~mask.expand_as(out)], x[~mask.expand_as(x)])
    assert mask.float().mean() < 0.2


def test_batches_are_float32_draws_from_the_pool() -> None:
    pool = np.random.default_rng(0).random((10, 15, 8, 8)).astype(np.float16)
    batch = ImageBatches(pool, torch.device("cpu"), _gen()).draw(4)
    assert batch.dtype == torch.float32 and batch.shape == (4, 15, 8, 8)
    for sample in batch.numpy():
        assert any(np.array_equal(sample, p.astype(np.float32)) for p in pool)
