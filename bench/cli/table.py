"""``python -m bench table``: the comparison tables, from the tracking store alone (no training)."""

from __future__ import annotations

import argparse
from pathlib import Path

import pandas as pd

from bench.core.atomic import atomic_write_text
from bench.core.errors import BenchError
from bench.report.aggregate import long_form, runs_from_mlflow, select
from bench.report.table import FORMATS, build_tables, render


def add_selection_args(parser: argparse.ArgumentParser) -> None:
    """Filters shared by ``table`` and ``plot``: which finished runs to read."""
    parser.add_argument(
        "--protocol", choices=("linear", "finetune"), help="only this protocol (default: all)"
    )
    parser.add_argument("--backbone", help="only runs of this backbone (default: all)")
    parser.add_argument(
        "--budget-unit", choices=("pixels", "images"), help="only this budget unit (default: all)"
    )
    parser.add_argument(
        "--dataset", help="only runs whose dataset fingerprint starts with this (see table titles)"
    )
    parser.add_argument("--experiment", help="MLflow experiment (default: $BENCH_EXPERIMENT or 'bench')")


def selected_long_form(args: argparse.Namespace, budget: int | None = None) -> pd.DataFrame:
    """The long form of the finished runs the arguments select; a clear error when there are none."""
    runs = select(
        runs_from_mlflow(args.experiment),
        protocol=args.protocol,
        backbone=args.backbone,
        budget_unit=args.budget_unit,
        budget=budget,
    )
    if args.dataset:
        runs = runs[runs["dataset"].astype(str).str.startswith(args.dataset)]
    if runs.empty:
        raise BenchError("no finished runs match; run `python -m bench run` or `python -m bench sweep` first")
    return long_form(runs)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="per-class accuracy table (mean ± std over seeds) from finished runs")
    add_selection_args(p)
    p.add_argument("--samples", type=int, help="only this label budget (default: one table per budget)")
    p.add_argument("--format", choices=FORMATS, default="md", help="output format (default: md)")
    p.add_argument("--out", type=Path, help="write the tables here instead of printing them")
    p.add_argument(
        "--long-csv", type=Path, help="also write one row per method x budget x seed x protocol x class"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    long = selected_long_form(args, budget=args.samples)
    text = render(build_tables(long), args.format)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    if args.long_csv:
        atomic_write_text(args.long_csv, long.to_csv(index=False))
        print(f"wrote {args.long_csv} ({len(long)} rows)")
    return 0
