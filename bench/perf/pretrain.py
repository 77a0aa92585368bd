"""``bench perf --stage pretrain``: each pretraining method's step on the harness vs the bare model.

Harness: ``method.pretrain`` with its default config cut to a few steps, end to end (batch
sampling from the pool, augmentation or degradation on the device, heads, loss, AdamW, metric
checks). Bare: forward+backward of the part the method trains (the backbone; the stem and its
per-pixel heads for UniFeat) on a batch of the same shape already on the device. images/s
counts pool images per step (``batch_size``); ``sscl`` is ``unifeat`` followed by ``core``.
"""

from __future__ import annotations

import argparse
import functools
import math
import time
from collections.abc import Callable
from typing import Any

import torch

from bench.core.device import autocast, resolve_device, to_device
from bench.core.errors import BenchError
from bench.models.backbones import build_backbone
from bench.perf.stages import PerfRow, register_stage, stage_dataset
from methods import PretrainContext, get_method
from methods.registry import method_labels

_WARMUP, _STEPS = 2, 20


def _seconds(fn: Callable[[], object], device: torch.device) -> float:
    """Wall seconds of one call, CUDA-synchronised."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def _bare(forward: Callable[[], torch.Tensor], device: torch.device, n: int) -> Callable[[], None]:
    """``n`` forward+backward passes of a method's bare model (its ``bare_forward``)."""

    def steps() -> None:
        for _ in range(n):
            with autocast(device):
                out = forward()
            out.float().mean().backward()

    return steps


def _method_rows(
    name: str,
    ds: Any,
    device: torch.device,
    backbone_name: str,
    ctx: PretrainContext,
    shape: dict[str, int],
    n: int,
) -> list[PerfRow]:
    """One method's harness and bare images/s (none for a method that trains nothing)."""
    cls = get_method(name)
    torch.manual_seed(0)
    backbone = to_device(build_backbone(backbone_name, len(ds.band_names)), device).train()
    if cls().bare_forward(backbone, device) is None:  # nothing trained, or a composite (sscl)
        return []
    method = cls(cls.config_from_dict({"steps": n, **shape}))
    forward = method.bare_forward(backbone, device)  # the same batch and crop as the harness step
    assert forward is not None
    cls(cls.config_from_dict({"steps": _WARMUP, **shape})).pretrain(backbone, ds.labelled.images, ctx)
    cfg = method.config
    run = functools.partial(method.pretrain, backbone, ds.labelled.images, ctx)
    harness = n * cfg.batch_size / _seconds(run, device)
    bare_steps = _bare(forward, device, n)
    _seconds(bare_steps, device)  # warm-up
    bare = n * cfg.batch_size / _seconds(bare_steps, device)
    size = f"{cfg.batch_size}x{cfg.crop}x{cfg.crop}, {backbone_name}, {device.type}"
    return [
        PerfRow("pretrain", f"{name} harness step ({size})", harness, "images/s"),
        PerfRow("pretrain", f"{name} bare fwd+bwd ({size})", bare, "images/s"),
        PerfRow("pretrain", f"{name} harness / bare", harness / bare, "ratio"),
    ]


@register_stage("pretrain")
def pretrain_stage(args: argparse.Namespace) -> list[PerfRow]:
    """images/s of every trained method's step (default config) against its bare model; the
    methods contribute the bare model (``PretrainMethod.bare_forward``), none is named here."""
    ds = stage_dataset(args)
    device = resolve_device(getattr(args, "device", "auto"))
    backbone_name = getattr(args, "backbone", "tiny")
    ctx = PretrainContext(device=device, seed=0, progress=False)
    sizes = {"crop": getattr(args, "crop", None), "batch_size": getattr(args, "batch", None)}
    shape = {k: v for k, v in sizes.items() if v is not None}  # --crop/--batch; else each method's
    n = getattr(args, "steps", None) or _STEPS
    rows: list[PerfRow] = []
    for name in method_labels():
        try:
            rows += _method_rows(name, ds, device, backbone_name, ctx, shape, n)
        except BenchError as err:  # e.g. a method that needs data the stage does not give it
            reason = str(err).strip().splitlines()[0][:200]
            rows.append(PerfRow("pretrain", f"{name} not measured: {reason}", math.nan, "-"))
    return rows
