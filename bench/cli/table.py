"""``python -m bench table``: the comparison tables, from the tracking store alone (no training)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli.common import TABLE_FORMATS

if TYPE_CHECKING:
    import pandas as pd


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
    parser.add_argument(
        "--allow-dirty",
        action="store_true",
        help="write into results/ even when a run read has a +dirty code version (not traceable to a commit)",
    )


def selected_long_form(args: argparse.Namespace, budget: int | None = None) -> pd.DataFrame:
    """The long form of the finished runs the arguments select; a clear error when there are none."""
    from bench.core.errors import BenchError
    from bench.report.aggregate import long_form, runs_from_mlflow, select_for_tables

    runs = select_for_tables(
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


def refuse_untraceable(long: pd.DataFrame, outputs: list[Path | None], allow_dirty: bool) -> None:
    """Refuse to write into results/ from runs of uncommitted code: a committed number must be traceable."""
    from bench.core.errors import BenchError
    from bench.core.paths import results_dir
    from bench.report.aggregate import dirty_versions

    into_results = [p for p in outputs if p is not None and p.resolve().is_relative_to(results_dir())]
    dirty = dirty_versions(long)
    if into_results and dirty and not allow_dirty:
        runs = long.loc[long["code_version"].isin(dirty), "run_id"].nunique()
        raise BenchError(
            f"refusing to write {into_results[0]}: {runs} run(s) read come from uncommitted code "
            f"({', '.join(dirty)}); re-run them on a clean commit, or pass --allow-dirty"
        )


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("table", help="per-class accuracy table (mean ± std over seeds) from finished runs")
    add_selection_args(p)
    p.add_argument("--samples", type=int, help="only this label budget (default: one table per budget)")
    p.add_argument("--format", choices=TABLE_FORMATS, default="md", help="output format (default: md)")
    p.add_argument("--out", type=Path, help="write the tables here instead of printing them")
    p.add_argument(
        "--long-csv",
        type=Path,
        help="also write one row per run x score (method, budget, seed, protocol, class), and the paired "
        "differences against the Baseline beside it as <stem>_paired.csv",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.core.atomic import atomic_write_text
    from bench.harness.availability import recorded_unavailable
    from bench.report.table import build_tables, render

    long = selected_long_form(args, budget=args.samples)
    paired_csv = args.long_csv.with_name(f"{args.long_csv.stem}_paired.csv") if args.long_csv else None
    refuse_untraceable(long, [args.out, args.long_csv, paired_csv], args.allow_dirty)
    text = render(build_tables(long, unavailable=recorded_unavailable(args.experiment)), args.format)
    if args.out:
        atomic_write_text(args.out, text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    if args.long_csv and paired_csv:
        atomic_write_text(args.long_csv, long.to_csv(index=False))
        print(f"wrote {args.long_csv} ({len(long)} rows)")
        from bench.report.statistics import paired_report

        paired = paired_report(long)
        atomic_write_text(paired_csv, paired.to_csv(index=False))
        print(f"wrote {paired_csv} ({len(paired)} paired differences)")
    return 0
