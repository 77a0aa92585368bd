"""The one optimisation loop of the harness: pretraining (``methods.training.fit``) and fine-tuning
(``bench.protocols.finetune``) both run their steps through :func:`run_steps`.

What it owns, so that every trained number comes out of the same machinery: AdamW over parameter
groups (each with its own learning rate), linear warm-up over a *fraction* of the steps then cosine
decay to zero (``bench.core.schedule``), a non-finite-loss guard that syncs with the device only
every ``check_every`` steps and names the first bad step, and progress. The caller supplies the
loss of a step and what to do at each check (log metrics, select a checkpoint).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import nn

from bench.core.errors import NonFiniteLossError
from bench.core.progress import progress_of
from bench.core.schedule import warmup_cosine


class Schedule(Protocol):
    """The schedule fields every trained config has (``TrainConfig``, ``FinetuneConfig``)."""

    @property
    def steps(self) -> int: ...
    @property
    def lr(self) -> float: ...
    @property
    def weight_decay(self) -> float: ...
    @property
    def warmup(self) -> float: ...  # fraction of ``steps``


def lr_factor(step: int, cfg: Schedule) -> float:
    """Linear warm-up over ``cfg.warmup`` of the steps, then cosine decay to zero at ``cfg.steps``."""
    return warmup_cosine(step, max(1, round(cfg.warmup * cfg.steps)), cfg.steps)


#: ``on_check(steps_done, losses_since_last_check, lr) -> note``: the note goes to the progress line.
OnCheck = Callable[[int, torch.Tensor, float], str | None]


def run_steps(
    label: str,
    params: Iterable[nn.Parameter] | Iterable[dict[str, Any]],
    cfg: Schedule,
    loss_at: Callable[[int], torch.Tensor],
    *,
    device: torch.device,
    check_every: int,
    on_check: OnCheck | None = None,
    after_backward: Callable[[list[nn.Parameter]], None] | None = None,
    reduce_losses: Callable[[torch.Tensor], None] | None = None,
    progress: bool = True,
) -> list[float]:
    """Run ``cfg.steps`` optimisation steps of ``loss_at(step)``; returns every step's loss.

    ``params``: parameters, or AdamW groups with their own ``lr`` (the schedule scales each alike).
    ``after_backward`` sees the trained parameters (e.g. to average gradients across processes);
    ``reduce_losses`` sees the losses since the last check on the device before they are checked.
    At every ``check_every`` steps and at the end, a non-finite loss raises
    :class:`NonFiniteLossError` naming ``label`` and the first bad step; then ``on_check`` runs.
    """
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    trained = [p for group in optimizer.param_groups for p in group["params"]]
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, cfg))
    history = torch.zeros(cfg.steps, device=device)
    checked = 0
    bar = progress_of(range(cfg.steps), desc=label, unit="step", enabled=progress)
    for step in bar:
        loss = loss_at(step)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if after_backward is not None:
            after_backward(trained)
        optimizer.step()
        scheduler.step()
        history[step] = loss.detach().float()
        if (step + 1) % check_every and step + 1 != cfg.steps:
            continue
        if reduce_losses is not None:
            reduce_losses(history[checked : step + 1])
        window = history[checked : step + 1].cpu()
        bad = (~torch.isfinite(window)).nonzero()
        if len(bad):
            first = checked + int(bad[0])
            raise NonFiniteLossError(
                f"{label}: non-finite loss ({float(history[first])}) at step {first}; no result written. "
                "Lower the learning rate or check the input data for NaN/inf"
            )
        note = on_check(step + 1, window, float(scheduler.get_last_lr()[-1])) if on_check else None
        if note:
            bar.note(note)
        checked = step + 1
    return history.cpu().tolist()
