"""Collapse monitors for joint-embedding methods (SimSiam, UniFeat), shared so both report alike.

A collapsed Siamese network gives every input the same output (complete collapse) or outputs on
a low-dimensional subspace (dimensional collapse). The loss cannot tell: a constant output
reaches the minimum of the negative-cosine objective. Two monitors, logged beside the loss:

- ``collapse_std``: std over samples of the L2-normalised outputs (SimSiam, Chen & He 2021,
  section 4.1: "the std ... is about 1/sqrt(d)" when healthy, 0 when collapsed). It misses
  dimensional collapse: outputs spread along a single direction keep a large std.
- ``effective_rank``: exp of the entropy of the normalised singular values of the output matrix
  (Roy & Vetterli 2007; RankMe, Garrido et al. 2023): 1 for a rank-1 representation, up to
  ``min(n, d)`` for a spread one. It sees dimensional collapse, which the std does not.

``collapsed`` is 1 when the effective rank is below :data:`COLLAPSED_BELOW_RANK`: essentially one
direction left. Monitors are returned as zero-argument callables so that the training loop
evaluates them only at logging points: an SVD per step would cost time and, on a GPU, a sync.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from lightly.utils.debug import std_of_l2_normalized

from methods.health import HealthCheck

#: A representation whose effective rank is below this has collapsed to (about) one direction.
COLLAPSED_BELOW_RANK = 2.0
#: Rows used for the SVD: enough for a stable estimate of a <= 512-d spectrum, cheap at any size.
MAX_ROWS = 4096


def effective_rank(z: torch.Tensor) -> torch.Tensor:
    """exp(entropy of the normalised singular values) of ``z`` (N, D); 1 for rank 1, 0 for all-zero."""
    with torch.autocast(z.device.type, enabled=False):
        s = torch.linalg.svdvals(z.detach().float())
    total = s.sum()
    if float(total) <= 0:
        return total
    p = s / total
    p = p[p > 0]
    return torch.exp(-(p * p.log()).sum())


def collapse_monitors(z: torch.Tensor) -> dict[str, torch.Tensor | Callable[[], torch.Tensor]]:
    """Lazy monitors of the outputs ``z`` (N, D): samples in rows (pixels or images)."""
    rows = z.detach()
    if len(rows) > MAX_ROWS:  # evenly spaced rows: deterministic, no generator needed
        rows = rows[torch.linspace(0, len(rows) - 1, MAX_ROWS, device=rows.device).long()]

    def rank() -> torch.Tensor:
        return effective_rank(rows)

    return {
        "collapse_std": lambda: std_of_l2_normalized(rows.float()),
        "effective_rank": rank,
        "collapsed": lambda: (rank() < COLLAPSED_BELOW_RANK).float(),
    }


def collapse_checks(
    what: str, dim_field: str, min_rank: float, why_rank: str
) -> tuple[HealthCheck, HealthCheck]:
    """The health gate of a joint-embedding method (``methods.health``) on the monitors above:
    effective rank at least ``min_rank`` (``why_rank``: why there, for the method's reason) and
    std of the normalised outputs at least a quarter of the healthy 1/sqrt(d), with d the config's
    ``dim_field`` (the projection width)."""
    return (
        HealthCheck(
            "effective_rank",
            f"the {what} must span more than a few directions: below {COLLAPSED_BELOW_RANK:g} they "
            f"have collapsed to about one, a handful is dimensional collapse; the floor {min_rank:g} "
            f"{why_rank}",
            minimum=min_rank,
        ),
        HealthCheck(
            "collapse_std",
            f"the std of the L2-normalised {what} is about 1/sqrt(d) when healthy and 0 when every "
            f"input gets the same output (SimSiam, section 4.1); the floor, a quarter of 1/sqrt(d) "
            f"(d = {dim_field}), is far from both",
            minimum=lambda cfg: 0.25 / math.sqrt(getattr(cfg, dim_field)),
        ),
    )


def pixels_as_rows(z: torch.Tensor) -> torch.Tensor:
    """(B, D, H, W) per-pixel outputs -> (B*H*W, D): every pixel is a sample."""
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])
