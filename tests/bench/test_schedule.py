"""The shared warm-up + cosine learning-rate schedule."""

from __future__ import annotations

import pytest

from bench.core.schedule import warmup_cosine


def test_warmup_then_cosine_to_zero() -> None:
    assert warmup_cosine(0, 10, 100) == pytest.approx(0.1)
    assert warmup_cosine(9, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(10, 10, 100) == pytest.approx(1.0)
    assert warmup_cosine(55, 10, 100) == pytest.approx(0.5)
    assert warmup_cosine(100, 10, 100) == pytest.approx(0.0, abs=1e-12)
