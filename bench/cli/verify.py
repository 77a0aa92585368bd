"""``python -m bench verify``: re-run sampled seeds of the committed results here and compare.

The check a reader runs on a fresh clone (``scripts/regenerate_results.sh --check N`` calls it):
``N`` seed runs drawn from ``results/runs_long.csv`` are evaluated again exactly as ``bench run``
evaluates them (the same :func:`bench.cli.run.cell_specs`), into a temporary MLflow store so the
user's store is untouched, and every committed score is compared with the new one. Exit 0 when all
agree within ``--tolerance`` points, 1 when one differs, 2 when the check cannot run (the CSV was
made on another dataset than this one, for example).
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

from bench.cli.common import add_data_args, add_preset_arg, add_progress_arg, comma_list
from bench.core.errors import BenchError

DEFAULT_CSV = Path("results/runs_long.csv")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="re-run sampled committed seed runs here and compare their scores")
    p.add_argument(
        "--from", dest="source", type=Path, default=DEFAULT_CSV, help=f"long-form CSV (default {DEFAULT_CSV})"
    )
    p.add_argument("--cells", type=int, default=4, help="seed runs to re-run (default 4)")
    p.add_argument("--sample-seed", type=int, default=0, help="which seed runs are drawn (default 0)")
    p.add_argument("--methods", type=comma_list, help="only these methods (comma-separated)")
    p.add_argument("--protocol", help="only this protocol (linear, finetune, reference)")
    p.add_argument(
        "--tolerance", type=float, default=None, help="largest allowed difference in points (default 1.0)"
    )
    add_preset_arg(p)  # the preset the results were made with (cpu)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (default: auto)")
    add_data_args(p)
    add_progress_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from bench.cli import build_parser
    from bench.cli.run import cell_specs
    from bench.core.device import resolve_device
    from bench.harness import tracking
    from bench.harness.runner import run_cell
    from bench.report.aggregate import long_from_csv
    from bench.report.verify import (
        DEFAULT_TOLERANCE,
        committed_scores,
        compare,
        format_checks,
        sample_units,
        scores_percent,
    )
    from datasets import load_dataset

    if args.cells < 1:
        raise BenchError(f"--cells {args.cells}: expects at least 1")
    tolerance = DEFAULT_TOLERANCE if args.tolerance is None else args.tolerance
    if tolerance < 0:
        raise BenchError(f"--tolerance {tolerance}: expects a difference in points >= 0")
    if not args.source.is_file():
        raise BenchError(
            f"--from {args.source}: no such file (the committed results are results/runs_long.csv)"
        )
    long = long_from_csv(args.source)
    units = sample_units(
        long, args.cells, args.sample_seed, args.methods, [args.protocol] if args.protocol else None
    )
    device = resolve_device(args.device)
    ds = load_dataset(
        args.data, skip_bad=args.skip_bad, progress=args.progress, split_scheme=args.split_scheme
    )
    made_on = sorted(set(long["dataset"].astype(str)))
    if ds.fingerprint not in made_on:
        raise BenchError(
            f"--from {args.source}: made on dataset {', '.join(made_on)}, but this dataset is "
            f"{ds.fingerprint}; the results must be regenerated (scripts/regenerate_results.sh) first"
        )
    parser = build_parser()
    checks = []
    threads = torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="bench-verify-") as store:
        before = os.environ.get("MLFLOW_TRACKING_URI")
        os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{Path(store) / 'verify.db'}"
        try:
            tracking.setup_tracking()
            for unit in units:
                torch.set_num_threads(unit.threads or threads)  # as it was computed, where recorded
                argv = ["run", "--method", unit.method, "--samples", str(unit.budget)]
                argv += ["--protocol", unit.protocol if unit.protocol != "reference" else "linear"]
                argv += ["--budget-unit", unit.budget_unit, "--backbone", unit.backbone]
                argv += ["--pretrain-seeds", str(unit.pretrain_seeds), "--preset", args.preset]
                (spec,) = cell_specs(parser.parse_args(argv))
                cell = run_cell(spec, [unit.seed], ds, device, progress=args.progress)
                now = scores_percent(cell.scores[0], ds.classes.names)
                checks.append(compare(unit, committed_scores(long, unit), now, tolerance))
                print(format_checks(checks[-1:]).splitlines()[1], flush=True)
        finally:
            torch.set_num_threads(threads)
            if before is None:
                os.environ.pop("MLFLOW_TRACKING_URI", None)
            else:
                os.environ["MLFLOW_TRACKING_URI"] = before
    print(format_checks(checks))
    return 0 if all(c.ok for c in checks) else 1
