"""``python -m bench plot``: AA/OA vs label budget and per-class small multiples, from finished runs.

The format follows ``--out``'s suffix: ``.pdf`` and ``.svg`` are vector, ``.png`` is 300 dpi.
``--methods`` and ``--samples`` choose what is drawn (one stray budget need not squash the axis).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.common import output_file
from bench.cli.table import add_selection_args, refuse_untraceable, selected_long_form, source_method_infos

#: The curves figure's name: the default (results/, raster for the README) and inside ``--out DIR/``
#: (vector, for a paper).
CURVES_PNG, CURVES_PDF = "accuracy_vs_budget.png", "accuracy_vs_budget.pdf"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(  # no abbreviations: `--data DIR` is not `--dataset` (as for `bench table`)
        "plot", help="AA/OA vs label budget (std bands) and per-class accuracy panels", allow_abbrev=False
    )
    add_selection_args(p)
    p.add_argument(
        "--out",
        metavar="FILE|DIR/",
        help="curves figure, .pdf/.svg/.png (default: results/accuracy_vs_budget.png); a directory "
        "(existing, or ending in /) gets accuracy_vs_budget.pdf; the per-class figures beside it, "
        "one per protocol: <stem>_classes_<protocol><suffix>",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Labels and colours in the tables' column order, read from the methods' source (no torch)."""
    from bench.report.aggregate import using_method_infos

    with using_method_infos(source_method_infos()):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    from bench.core.errors import BenchError
    from bench.core.paths import results_dir
    from bench.report.aggregate import summarise, unhealthy_methods, with_references
    from bench.report.plot import FIGURE_FORMATS, class_figures, curves_figure, save_figure

    out = output_file(Path(args.out), args.out, CURVES_PDF) if args.out else results_dir() / CURVES_PNG
    if out.suffix.lower() not in FIGURE_FORMATS:
        raise BenchError(
            f"--out {out}: unknown figure format {out.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(FIGURE_FORMATS)}"
        )
    long = selected_long_form(args)
    stats = summarise(with_references(long))
    levels = sorted(set(stats["pretrain_images"]) - {0})
    if len(levels) > 1:  # one curve per method: two compute levels would share it
        raise BenchError(
            f"the runs hold {len(levels)} pretraining-image levels ({', '.join(map(str, levels))}); "
            "plot one at a time with --pretrain-images N"
        )
    unhealthy = unhealthy_methods(long)  # marked in every figure's legend, as in the tables
    classes = class_figures(stats, unhealthy)
    paths = {p: out.with_name(f"{out.stem}_classes_{p}{out.suffix}") for p in classes}
    refuse_untraceable(long, [out, *paths.values()], args.allow_dirty)
    print(f"wrote {save_figure(curves_figure(stats, unhealthy), out)}")
    for protocol, fig in classes.items():
        print(f"wrote {save_figure(fig, paths[protocol])}")
    return 0
