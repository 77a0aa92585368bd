"""The shared loop: non-finite losses stop the run with the method and step named; metrics are logged."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from bench.core.errors import NonFiniteLossError
from methods import PretrainContext
from methods.training import StepOutput, TrainConfig, fit


def test_non_finite_loss_raises_naming_method_and_step(images: np.ndarray, ctx: PretrainContext) -> None:
    weight = nn.Parameter(torch.ones(1))
    calls = []

    def loss_fn(batch: torch.Tensor, gen: torch.Generator) -> StepOutput:
        calls.append(1)
        return weight * batch.mean() * (torch.inf if len(calls) == 8 else 1.0), {}

    with pytest.raises(NonFiniteLossError, match=r"mymethod: non-finite loss .* at step 7"):
        fit("mymethod", [nn.ParameterList([weight])], [weight], images, ctx, TrainConfig(steps=20), loss_fn)


def test_metrics_are_logged_under_the_label(images: np.ndarray, ctx: PretrainContext) -> None:
    weight = nn.Parameter(torch.ones(1))

    def loss_fn(batch: torch.Tensor, gen: torch.Generator) -> StepOutput:
        return (weight * batch.mean()) ** 2, {"monitor": weight.detach()}

    cfg = TrainConfig(steps=6, batch_size=2, log_every=3)
    losses = fit("x/stage", [nn.ParameterList([weight])], [weight], images, ctx, cfg, loss_fn)
    assert len(losses) == 6
    steps = [s for s, _ in ctx.logged]  # type: ignore[attr-defined]
    assert steps == [2, 5]
    assert set(ctx.logged[0][1]) == {"x/stage/loss", "x/stage/lr", "x/stage/monitor"}  # type: ignore[attr-defined]
