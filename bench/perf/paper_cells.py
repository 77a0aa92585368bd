"""One ``--preset paper`` cell per method and protocol, timed by part: pretraining, fit, test stream.

``python -m bench.perf.paper_cells --data SUBSET --out cells.json`` is what the GPU acceptance run
(:mod:`bench.perf.acceptance`) calls on a real-size synthetic subset. Each registered method gets
one cell (one seed, one budget) under each deep protocol (a reference row: its one protocol),
through the harness's own pieces: the preset's ``--set`` pairs, :func:`bench.harness.runner.pretrain`
(MLflow run and weights cache included) and the protocol's ``fit``, then
:func:`bench.protocols.validation.confusion_on_split` over the test split. The three parts are timed
apart (CUDA-synchronised) because they scale differently to the DESIGN 8 grid: pretraining with
its steps, fitting with the protocol's steps, streaming with the test split's size.

``--fraction F`` runs F of every ``*.steps`` setting of the preset (pretraining stages and the
finetune schedule alike) and records the full and the run step counts, so the caller scales the
measured seconds by full/run: an upper bound, since fixed costs (moving the pool to the device,
the first cuDNN calls, the weights cache) are scaled with the steps. One untimed warm-up run
(the first method at a few steps) takes the process's one-off CUDA start-up out of the first cell.
``--cap-crop``/``--cap-batch`` shrink crops and batches (the CPU smoke run only).

The JSON file is rewritten after every cell, so a run stopped at its time limit keeps the cells
it finished.
"""

from __future__ import annotations

import argparse
import json
import math
import time
import traceback
from pathlib import Path
from typing import Any

import torch

from bench.perf.acceptance_report import GRID_METHODS, GRID_REFERENCES

#: The budget of every timed cell: DESIGN 1's largest (labelled pixels per class), the costliest
#: for the linear probe's feature pass and the random forest; finetune does not depend on it.
SAMPLES = 1000


def scaled_pairs(
    pairs: list[str], fraction: float, cap_crop: int | None = None, cap_batch: int | None = None
) -> tuple[list[str], int, int]:
    """The preset's pairs with every ``*.steps`` cut to ``fraction`` (at least 1) and crops and
    batches capped; also the full and the run step totals of the pairs that were cut."""
    out: list[str] = []
    full = run = 0
    for pair in pairs:
        key, _, raw = pair.partition("=")
        leaf = key.rsplit(".", 1)[-1]
        try:
            value = json.loads(raw)
        except ValueError:
            out.append(pair)
            continue
        if leaf == "steps" and isinstance(value, int):
            cut = max(1, math.ceil(value * fraction))
            full, run = full + value, run + cut
            value = cut
        elif leaf == "crop" and cap_crop is not None and isinstance(value, int):
            value = min(value, cap_crop)
        elif leaf == "batch_size" and cap_batch is not None and isinstance(value, int):
            value = min(value, cap_batch)
        out.append(f"{key}={json.dumps(value)}")
    return out, full, run


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Any, device: torch.device) -> tuple[Any, float]:
    _sync(device)
    start = time.perf_counter()
    value = fn()
    _sync(device)
    return value, time.perf_counter() - start


def _one_line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0][:300] if lines else ''}"


def _specs(method: str, args: argparse.Namespace, fraction: float) -> tuple[list[Any], dict[str, int]]:
    """The method's cells (both deep protocols, or its one reference protocol) under the preset."""
    from bench.harness.presets import preset_pairs
    from bench.harness.runner import BOTH, cell_spec, parse_overrides

    pairs = preset_pairs(args.preset, method)
    method_pairs = [p for p in pairs if p.startswith("method.")]
    protocol_pairs = [p for p in pairs if not p.startswith("method.")]
    method_pairs += _unset_steps(method, method_pairs)
    method_pairs, m_full, m_run = scaled_pairs(method_pairs, fraction, args.cap_crop, args.cap_batch)
    protocol_pairs, f_full, f_run = scaled_pairs(
        protocol_pairs, args.finetune_fraction, args.cap_crop, args.cap_batch
    )
    method_overrides, protocol_overrides = parse_overrides(method_pairs + protocol_pairs)
    # A few steps of a schedule need not pass the method's health gate: time them all the same.
    unhealthy = {"allow_unhealthy": True} if "allow_unhealthy" in _spec_fields() else {}
    specs = [
        cell_spec(
            method,
            protocol,
            protocol_overrides,
            samples=args.samples,
            backbone=args.backbone,
            method_overrides=method_overrides,
            **unhealthy,
        )
        for protocol in BOTH
    ]
    steps = {"pretrain_full": m_full, "pretrain_run": m_run, "finetune_full": f_full, "finetune_run": f_run}
    return list(dict.fromkeys(specs)), steps


def _unset_steps(method: str, method_pairs: list[str]) -> list[str]:
    """``method.<stage>steps=N`` pairs for the schedules the preset leaves at the method's default,
    so that ``--fraction`` cuts every schedule (and records it), not only the preset's."""
    import dataclasses

    from bench.harness.runner import parse_overrides
    from methods import get_method

    if get_method_is_reference(method):
        return []
    cls = get_method(method)
    config = dataclasses.asdict(cls.config_from_dict(parse_overrides(method_pairs)[0]))
    given = {p.partition("=")[0] for p in method_pairs}
    found: list[str] = []

    def walk(node: dict[str, Any], prefix: str) -> None:
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            elif key == "steps" and isinstance(value, int) and f"method.{prefix}steps" not in given:
                found.append(f"method.{prefix}steps={value}")

    walk(config, "")
    return found


def _spec_fields() -> set[str]:
    import dataclasses

    from bench.harness.runner import CellSpec

    return {f.name for f in dataclasses.fields(CellSpec)}


def time_cells(args: argparse.Namespace) -> dict[str, Any]:
    """Run and time every method's cells; write ``args.out`` after each one."""
    from bench.core.device import resolve_device, use_thread_share
    from bench.harness import tracking
    from bench.harness.availability import unavailable_methods
    from bench.harness.runner import budget_for, pretrain, result_key
    from bench.protocols.registry import FitJob, get_protocol
    from bench.protocols.validation import confusion_on_split
    from datasets import load_dataset
    from methods.registry import method_labels

    use_thread_share()
    device = resolve_device(args.device)
    tracking.setup_tracking("gpu-acceptance")
    ds = load_dataset(args.data, progress=False)
    n_test, _, h, _ = ds.test.images.shape
    test_labels = ds.test.labels
    assert test_labels is not None  # the test split always has labels
    out: dict[str, Any] = {
        "device": str(device),
        "backbone": args.backbone,
        "preset": args.preset,
        "samples": args.samples,
        "fraction": args.fraction,
        "finetune_fraction": args.finetune_fraction,
        "subset": {"labelled": len(ds.labelled), "test": int(n_test), "size": int(h)},
        "cells": [],
    }
    if args.methods:
        methods = args.methods.split(",")
    else:  # the grid's methods first: a run stopped at its limit still has what the estimate needs
        grid = [m for m in (*GRID_METHODS, *GRID_REFERENCES) if m in method_labels()]
        methods = grid + [m for m in method_labels() if m not in grid]
    out["methods"] = methods

    def save() -> None:
        Path(args.out).write_text(json.dumps(out, indent=1))

    # Presets are hashed into result keys (DESIGN 8): the same cell under cpu and paper differs.
    cpu_args = argparse.Namespace(**{**vars(args), "preset": "cpu"})
    keys = [result_key(_specs(methods[0], a, 1.0)[0][0], 0, ds) for a in (cpu_args, args)]
    out["preset_keys_differ"] = keys[0] != keys[1]
    save()

    if args.warmup:
        trained = [
            m for m in methods if not get_method_is_reference(m) and _specs(m, args, 0.0)[1]["pretrain_full"]
        ]
        warm_method = next(iter(trained), None)  # a method with steps: CUDA, cuBLAS and cuDNN warm up
        if warm_method is not None:
            specs, _ = _specs(warm_method, args, 0.0)  # 1 step per stage
            try:
                _timed(lambda: pretrain(specs[0], ds, device, force=True, progress=False), device)
            except Exception as err:  # a failing method is reported by its own cell below
                out["warmup_error"] = _one_line(err)

    for method in methods:
        reason = unavailable_methods([method], args.backbone, None).get(method)
        specs, steps = _specs(method, args, args.fraction)
        cell: dict[str, Any] = {"method": method, **steps, "protocols": []}
        out["cells"].append(cell)
        if reason:
            cell["unavailable"] = reason
            save()
            continue
        try:
            backbone = None
            if not specs[0].is_reference:
                (backbone, record), seconds = _timed(
                    lambda s=specs[0]: pretrain(s, ds, device, force=True, progress=False), device
                )
                cell["pretrain_s"] = seconds
                cell["health"] = str(getattr(record, "health", "n/a"))
            for spec in specs:
                budget = budget_for(spec, 0, ds)
                protocol = get_protocol(spec.evaluator)
                job = FitJob(backbone, ds, budget, spec.protocol_config(), 0, device, False)
                predict, fit_s = _timed(lambda p=protocol, j=job: p.fit(j), device)
                cm, stream_s = _timed(
                    lambda pr=predict: confusion_on_split(
                        pr, ds.test.images, test_labels, ds.classes.num_classes, device
                    ),
                    device,
                )
                recall = cm.diagonal() / cm.sum(1).clip(min=1)
                cell["protocols"].append(
                    {
                        "protocol": spec.evaluator,
                        "fit_s": fit_s,
                        "stream_s": stream_s,
                        "stream_patches": int(n_test),
                        "AA": float(recall[cm.sum(1) > 0].mean()),
                    }
                )
                save()
        except Exception as err:
            cell["error"] = _one_line(err)
            cell["traceback"] = traceback.format_exc()[-2000:]
        save()
    return out


def get_method_is_reference(method: str) -> bool:
    from methods import get_method

    try:
        return get_method(method).evaluated_by is not None
    except KeyError:
        return True


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.perf.paper_cells", description=__doc__.split("\n")[0])
    p.add_argument("--data", type=Path, required=True, help="the real-size synthetic subset")
    p.add_argument("--out", type=Path, required=True, help="JSON file written after every cell")
    p.add_argument("--backbone", default="resnet18")
    p.add_argument("--device", default="auto")
    p.add_argument("--preset", default="paper")
    p.add_argument("--samples", type=int, default=SAMPLES)
    p.add_argument("--methods", help="comma-separated (default: every registered method)")
    p.add_argument("--fraction", type=float, default=0.1, help="share of every pretraining stage's steps")
    p.add_argument("--finetune-fraction", type=float, default=0.25, help="share of the finetune steps")
    p.add_argument("--cap-crop", type=int, help="largest crop of any stage (smoke runs)")
    p.add_argument("--cap-batch", type=int, help="largest batch of any stage (smoke runs)")
    p.add_argument("--no-warmup", dest="warmup", action="store_false")
    time_cells(p.parse_args(argv))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
