"""``python -m bench plot``: accuracy vs label budget and per-class heat maps, from finished runs."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.table import add_selection_args, refuse_untraceable, selected_long_form


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plot", help="AA/OA vs label budget (std bands) and per-class heat maps")
    add_selection_args(p)
    p.add_argument(
        "--out",
        type=Path,
        help="curves PNG (default: results/accuracy_vs_budget.png); heat maps beside it: <stem>_classes.png",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.core.paths import results_dir
    from bench.report.aggregate import summarise, with_references
    from bench.report.plot import class_heatmap_figure, curves_figure, save_png

    long = selected_long_form(args)
    out = args.out or results_dir() / "accuracy_vs_budget.png"
    heat = out.with_name(f"{out.stem}_classes{out.suffix or '.png'}")
    refuse_untraceable(long, [out, heat], args.allow_dirty)
    stats = summarise(with_references(long))
    for path in (save_png(curves_figure(stats), out), save_png(class_heatmap_figure(stats), heat)):
        print(f"wrote {path}")
    return 0
