"""Fixtures for method tests: small structured images and a quiet, seeded context."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from methods import PretrainContext


@pytest.fixture
def images() -> np.ndarray:
    """(16, 15, 32, 32) float16 in [0, 1]: 15 bands mixed from 3 smooth latent fields plus noise.

    Bands share spatial structure (as S1 and S2 of one scene do), so cross-band and
    reconstruction objectives have something to learn.
    """
    gen = torch.Generator().manual_seed(0)
    latent = F.interpolate(torch.rand(16, 3, 4, 4, generator=gen), size=(32, 32), mode="bilinear")
    mixing = torch.rand(15, 3, generator=gen)
    bands = torch.einsum("cl,blhw->bchw", mixing / mixing.sum(1, keepdim=True), latent)
    bands = bands + 0.02 * torch.randn(bands.shape, generator=gen)
    return bands.clamp(0, 1).numpy().astype(np.float16)


@pytest.fixture
def ctx() -> PretrainContext:
    """CPU, seed 0, no progress bar; metrics kept in ``ctx.logged`` for inspection."""
    logged: list[tuple[int, dict[str, float]]] = []
    context = PretrainContext(
        device=torch.device("cpu"), seed=0, progress=False, log_metrics=lambda m, s: logged.append((s, m))
    )
    context.logged = logged  # type: ignore[attr-defined]
    return context


def decreased(losses: list[float], k: int = 5) -> bool:
    """Mean of the last ``k`` steps below the mean of the first ``k``."""
    return float(np.mean(losses[-k:])) < float(np.mean(losses[:k]))
