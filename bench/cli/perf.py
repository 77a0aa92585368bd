"""``bench perf [--stage NAME ...] [--data DIR]``: measured throughput of the harness's stages."""

from __future__ import annotations

import argparse
import importlib
from pathlib import Path

from bench.cli.common import add_data_args, add_model_args

#: Modules that register perf stages on import; a new stage adds its module here.
STAGE_MODULES: tuple[str, ...] = (
    "bench.perf.data",
    "bench.perf.pretrain",
    "bench.perf.train",
    "bench.perf.backbone",
    "bench.perf.workers",
    "bench.perf.cli",
)


def _load_stages() -> None:
    for module in STAGE_MODULES:
        importlib.import_module(module)


def run_perf(args: argparse.Namespace) -> int:
    """Run the chosen stages (all by default) and print one table."""
    from bench.core.device import use_thread_share
    from bench.core.errors import BenchError
    from bench.perf.stages import format_rows, run_stages

    use_thread_share()
    _load_stages()
    try:
        rows = run_stages(args.stage or [], args)
    except KeyError as err:
        raise BenchError(err.args[0]) from err
    print(format_rows(rows))
    if args.json is not None:
        import dataclasses
        import json

        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in rows], indent=1))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("perf", help="throughput of each stage (data cache, pretraining, training)")
    parser.add_argument(
        "--stage", action="append", default=None, help="stage to measure (repeatable; default: all)"
    )
    add_data_args(parser)
    add_model_args(parser)
    parser.add_argument(
        "--crop",
        type=int,
        help="crop size in px for the backbone, pretrain and train stages (default: each stage's)",
    )
    parser.add_argument("--batch", type=int, help="batch size for the same stages (default: each stage's)")
    parser.add_argument(
        "--steps",
        type=int,
        help="timed steps of the backbone, pretrain and train stages (default: each stage's)",
    )
    parser.add_argument(
        "--json", type=Path, help="also write the rows to this JSON file (NaN for figures the device lacks)"
    )
    parser.set_defaults(func=run_perf)
