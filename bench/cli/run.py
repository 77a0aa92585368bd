"""``python -m bench run``: one cell (method x budget) under one or both protocols, over N seeds.

Prints the DESIGN 7 table for the cell (mean ± sample std over seeds, in percent), the realised
label counts and the wall time; every seed is an MLflow run (``mlflow ui`` shows them).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli.common import (
    DEFAULT_SEEDS,
    add_data_args,
    add_evaluation_args,
    add_health_arg,
    add_label_arg,
    add_model_args,
    add_pretrain_data_arg,
    add_pretrain_images_arg,
    add_progress_arg,
    add_protocol_arg,
    add_set_arg,
    add_weights_arg,
    check_label,
    evaluation_overrides,
    prepare,
    preset_overrides,
    pretrain_image_levels,
    warnings_once,
)
from bench.core.errors import BenchError

if TYPE_CHECKING:
    from bench.harness.runner import CellResult, CellSpec


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("run", help="one cell: pretrain (cached) + evaluate over seeds, print its table")
    p.add_argument("--method", required=True, help="pretraining method (see `bench list`)")
    p.add_argument(
        "--samples", type=int, required=True, help="labelled pixels per class (or images, see unit)"
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=DEFAULT_SEEDS,
        help=f"evaluation seeds 0..N-1 (default {DEFAULT_SEEDS}: the fewest at which the tables' corrected "
        "paired test can mark a difference)",
    )
    add_protocol_arg(p, "linear", both=True)
    p.add_argument("--budget-unit", choices=("pixels", "images"), default="pixels", help="default: pixels")
    add_data_args(p)
    add_model_args(p)
    add_set_arg(
        p, "method setting (key or method.key) or protocol setting (linear.key, finetune.key); repeatable"
    )
    p.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="tuned settings (JSON from `bench tune`) for this method; an explicit --set still wins",
    )
    add_evaluation_args(p)
    add_pretrain_images_arg(p)
    p.add_argument("--force-pretrain", action="store_true", help="pretrain again and re-evaluate every seed")
    add_weights_arg(p)
    add_label_arg(p)
    add_pretrain_data_arg(p)
    p.add_argument(
        "--transductive", action="store_true", help="also pretrain on the test inputs (explicit opt-in)"
    )
    add_health_arg(p)
    add_progress_arg(p)
    p.set_defaults(func=run)


def realised_line(cell: CellResult, unit: str) -> str:
    """Labelled pixels per class as drawn, training + validation (a range when seeds differ)."""

    def span(values: set[int]) -> str:
        lo, hi = min(values), max(values)
        return f"{lo}" + (f"-{hi}" if hi != lo else "")

    parts = []
    for name in cell.seeds[0].realised:
        train = span({s.realised[name] for s in cell.seeds})
        val = span({s.realised_val.get(name, 0) for s in cell.seeds})
        parts.append(f"{name} {train}+{val}")
    what = "pixels per class" if unit == "pixels" else "pixels per class in the drawn images"
    return f"realised labelled {what} (training + validation): " + ", ".join(parts)


def report(cell: CellResult, class_names: tuple[str, ...]) -> str:
    """The cell's table plus its realised counts and timings."""
    from bench.harness.tracking import UNHEALTHY_MARK
    from bench.protocols.metrics import format_table
    from bench.report.aggregate import method_label

    spec = cell.spec
    unit = "labelled pixels per class" if spec.budget_unit == "pixels" else "labelled images"
    skipped = sum(s.skipped for s in cell.seeds)
    pre = cell.pretrain
    pretraining = (
        "not needed (all seeds done)" if pre is None else "cached" if pre.cached else f"{pre.seconds:.1f} s"
    )
    if pre is not None and pre.health != "passed":  # --allow-unhealthy: say so under the table
        pretraining += f"; UNHEALTHY, evaluated anyway and tagged ({pre.health})"
    from bench.harness.pretraining import recorded_usefulness
    from bench.report.table import BELOW_INIT_MARK

    useful = recorded_usefulness(Path(pre.path)) if pre is not None else None
    if useful is not None:  # beside the gate, never one (bench.harness.usefulness)
        pretraining += f"; usefulness: {useful.line}"
    from bench.harness.runner import capped_range

    capped = capped_range(spec.samples, spec.budget_unit, [(s.realised, s.realised_val) for s in cell.seeds])
    if capped:  # a budget above what a class has: say what was realised, not what was asked
        unit += f" (capped: {capped} realised)"
    # weights that failed their health gate (--allow-unhealthy): the column is marked, as in `bench table`
    bad = sorted({s.health for s in cell.seeds if s.health and s.health.startswith("failed:")})
    if pre is not None and pre.health != "passed":
        bad = sorted({*bad, str(pre.health)})
    column = (spec.label or method_label(spec.method)) + (f" {UNHEALTHY_MARK}" if bad else "")
    below = useful is not None and useful.below_init
    column += f" {BELOW_INIT_MARK}" if below else ""
    lines = [
        f"== {spec.protocol} | {spec.samples} {unit} | backbone {spec.backbone} | "
        f"seeds {', '.join(str(s.seed) for s in cell.seeds)}",
        format_table({column: cell.scores}, class_names),
        *(
            [f"{UNHEALTHY_MARK} evaluated on weights that failed their health gate ({'; '.join(bad)})"]
            if bad
            else []
        ),
        *(
            [f"{BELOW_INIT_MARK} its weights score below their own random init on validation pixels"]
            if below
            else []
        ),
        realised_line(cell, spec.budget_unit),
        f"pretraining: {pretraining}"
        f"; evaluation {sum(s.wall_time_s for s in cell.seeds if not s.skipped):.1f} s"
        + (f"; {skipped} seed(s) already complete in MLflow, reused" if skipped else ""),
    ]
    return "\n".join(lines)


def cell_specs(args: argparse.Namespace) -> list[CellSpec]:
    """The cells ``bench run`` evaluates for ``args`` (one per protocol; a reference row once):
    preset < tuned config < ``--set`` < flags, each spec's settings checked. ``bench verify``
    re-runs committed cells through this very function."""
    from bench.harness.runner import BOTH, cell_spec, parse_overrides

    overrides = args.overrides
    if args.config is not None:
        from bench.harness.tune import load_config

        tuned = load_config(args.config)
        if not tuned.applies_to(args.method):
            raise BenchError(
                f"--config {args.config}: settings are for method {tuned.method!r}, not {args.method!r}"
            )
        overrides = tuned.set_pairs() + overrides
    protocols = list(BOTH) if args.protocol == "both" else [args.protocol]
    levels = [  # one set of overrides per --pretrain-images level (the preset's number by default)
        parse_overrides(preset_overrides(args, args.method, images) + overrides + evaluation_overrides(args))
        for images in pretrain_image_levels(args)
    ]
    specs = [
        cell_spec(
            args.method,
            protocol,
            protocol_overrides,
            samples=args.samples,
            budget_unit=args.budget_unit,
            backbone=args.backbone,
            method_overrides=method_overrides,
            pretrain_seeds=args.pretrain_seeds,
            transductive=args.transductive,
            pretrain_data=args.pretrain_data,
            weights=args.weights,
            allow_unhealthy=args.allow_unhealthy,
            label=check_label(args.label) if args.label is not None else None,
        )
        for method_overrides, protocol_overrides in levels
        for protocol in protocols
    ]
    specs = list(dict.fromkeys(specs))  # a reference row is one cell whatever the protocols or levels
    for spec in specs:  # fail on a bad --set before any data is generated
        spec.method_config()
        spec.protocol_config()
    return specs


def run(args: argparse.Namespace) -> int:
    from bench.core.device import resolve_device
    from bench.harness.runner import run_cell
    from bench.harness.tracking import experiment_name, runs_url, setup_tracking, tracking_uri
    from datasets import load_dataset

    start = time.perf_counter()
    prepare(args)
    device = resolve_device(args.device)
    specs = cell_specs(args)
    from bench.harness.availability import unavailable_methods

    reason = unavailable_methods([args.method], args.backbone, args.weights).get(args.method)
    if reason:
        raise BenchError(f"--method {args.method} cannot run here: {reason}")
    ds = load_dataset(
        args.data, skip_bad=args.skip_bad, progress=args.progress, split_scheme=args.split_scheme
    )
    with warnings_once():
        cells = [
            run_cell(
                spec,
                range(args.seeds),
                ds,
                device,
                force_pretrain=args.force_pretrain,
                progress=args.progress,
            )
            for spec in specs
        ]
    for cell in cells:
        print(report(cell, ds.classes.names))
        print()
    uri = tracking_uri()
    url = runs_url(uri, setup_tracking()[1])
    server = uri.startswith(("http://", "https://"))
    see = f"open {url}" if server else f"mlflow ui --backend-store-uri {uri}, then open {url}"
    print(
        f"wall time {time.perf_counter() - start:.1f} s on {device}; "
        f"MLflow: {uri} experiment {experiment_name()!r} (to see the runs: {see})"
    )
    return 0
