"""``python -m bench table``: the comparison tables, from the tracking store alone (no training),
or from a long-form CSV written earlier (``--from results/runs_long.csv``)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli.common import TABLE_FORMATS, add_protocol_arg, comma_list, output_file

if TYPE_CHECKING:
    import pandas as pd

    from bench.core.roles import MethodInfo

#: Suffix of the companion files written beside a long-form CSV (and read back by ``--from``).
PAIRED_SUFFIX, VARIANCE_SUFFIX, UNAVAILABLE_SUFFIX = "_paired", "_variance", "_unavailable"


def _budgets(text: str) -> list[int]:
    try:
        return [int(v) for v in comma_list(text)]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expects comma-separated integers (200,1000), got {text!r}"
        ) from None


def add_selection_args(parser: argparse.ArgumentParser) -> None:
    """Filters shared by ``table`` and ``plot``: which finished runs to read."""
    parser.add_argument(
        "--from",
        dest="from_csv",
        type=Path,
        metavar="LONG_CSV",
        help="read this long-form CSV (written by --long-csv) instead of the tracking store",
    )
    add_protocol_arg(parser, None, both=False)
    parser.add_argument(
        "--methods",
        type=comma_list,
        help="comma list of methods to show (default: all found); the Baseline is needed for paired rows",
    )
    parser.add_argument(
        "--samples",
        type=_budgets,
        help="comma list of label budgets to show (default: every budget found)",
    )
    parser.add_argument(
        "--pretrain-images",
        type=_budgets,
        metavar="N[,N...]",
        help="only these compute levels (images seen per pretraining; methods that train nothing join "
        "every level; default: every level found)",
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


def source_method_infos() -> list[MethodInfo] | None:
    """This repository's methods' labels, roles and baseline flag read from their source, in column
    order; None (ask the registry) when plugins are installed or a registration is not literal.

    ``@register_method("name")`` on a class whose only base is ``PretrainMethod`` with literal
    ``label``, ``role``, ``baseline`` and ``evaluated_by`` attributes; the registry's defaults
    otherwise (label: the name; role: :func:`bench.core.roles.default_role`). Reads the files
    ``bench list`` reads (:mod:`bench.cli.list`), with its helpers; tests/bench/test_table.py holds
    this reading equal to the registry's.
    """
    import ast

    from bench.cli.list import _decorator_args, _literal, _package_dir
    from bench.core import plugins
    from bench.core.roles import ROLES, MethodInfo, default_role, table_order

    if plugins.any_plugins():
        return None
    wanted = ("label", "role", "baseline", "evaluated_by")
    infos = []
    for path in sorted(_package_dir("methods").glob("*.py")):
        if path.stem == "registry" or path.stem.startswith("_"):
            continue
        source = path.read_text(encoding="utf-8")
        if "register_method" not in source:
            continue
        tree = ast.parse(source, filename=str(path))
        calls = sum(
            isinstance(n, ast.Call) and isinstance(n.func, ast.Name) and n.func.id == "register_method"
            for n in ast.walk(tree)
        )
        # every class of the module: its bases and its own literal attributes (None: not literal)
        own: dict[str, tuple[list[str], dict[str, object] | None]] = {}
        for node in ast.walk(tree):
            if not isinstance(node, ast.ClassDef):
                continue
            attrs: dict[str, object] | None = {}
            for stmt in node.body:
                target = stmt.targets[0] if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 else None
                target = stmt.target if isinstance(stmt, ast.AnnAssign) else target
                if isinstance(target, ast.Name) and target.id in wanted and attrs is not None:
                    value = getattr(stmt, "value", None)
                    attrs = {**attrs, target.id: value.value} if isinstance(value, ast.Constant) else None
            own[node.name] = ([b.id if isinstance(b, ast.Name) else "?" for b in node.bases], attrs)
        decorated = [
            (n, args)
            for n in ast.walk(tree)
            if isinstance(n, ast.ClassDef) and (args := _decorator_args(n, "register_method")) is not None
        ]
        if calls != len(decorated):
            return None
        for node, args in decorated:
            name = _literal(args[0]) if args else None
            bases, attrs = own[node.name]
            inherited: dict[str, object] = {}
            while bases != ["PretrainMethod"]:  # a base of this module: baseline, evaluated_by inherit
                if len(bases) != 1 or bases[0] not in own or own[bases[0]][1] is None:
                    return None
                bases, base_attrs = own[bases[0]]
                inherited = {**(base_attrs or {}), **inherited}
            if name is None or attrs is None:
                return None
            evaluated_by = attrs.get("evaluated_by", inherited.get("evaluated_by"))
            role = attrs.get("role", default_role(evaluated_by if isinstance(evaluated_by, str) else None))
            label = attrs.get("label", name)  # the registry sets label and role per class, never inherited
            baseline = attrs.get("baseline", inherited.get("baseline", False))
            if not isinstance(label, str) or role not in ROLES:
                return None
            infos.append(MethodInfo(name, label, str(role), bool(baseline)))
    return table_order(infos)


def selected_long_form(args: argparse.Namespace) -> pd.DataFrame:
    """The long form of the finished runs the arguments select; a clear error when there are none."""
    from bench.core.errors import BenchError
    from bench.report.aggregate import long_form, long_from_csv, runs_from_mlflow, select_for_tables

    if args.from_csv is not None:
        if not args.from_csv.is_file():
            raise BenchError(f"--from {args.from_csv}: no such file; write one with `bench table --long-csv`")
        frame = long_from_csv(args.from_csv)
        where = f"in {args.from_csv}"
    else:
        frame = runs_from_mlflow(args.experiment)
        where = "in the tracking store"
    rows = select_for_tables(
        frame, protocol=args.protocol, backbone=args.backbone, budget_unit=args.budget_unit
    )
    if args.dataset:
        rows = rows[rows["dataset"].astype(str).str.startswith(args.dataset)]
    if args.samples:
        rows = rows[rows["budget"].isin(args.samples)]
    if getattr(args, "pretrain_images", None):
        rows = rows[rows["pretrain_images"].isin(args.pretrain_images) | (rows["pretrain_images"] == 0)]
    if args.methods:
        unknown = sorted(set(args.methods) - set(frame["method"]))
        if unknown:
            found = ", ".join(sorted(set(frame["method"])))
            raise BenchError(f"--methods: no runs of {', '.join(unknown)} {where}; found: {found}")
        rows = rows[rows["method"].isin(args.methods)]
    if rows.empty:
        raise BenchError(
            f"no finished runs match {where}; run `python -m bench run` or `python -m bench sweep` first"
        )
    return rows if args.from_csv is not None else long_form(rows)


def unavailable_for(args: argparse.Namespace) -> dict[tuple[str, str], dict[str, str]]:
    """Methods that could not run: the tracking store's records, or ``<stem>_unavailable.csv``
    beside a ``--from`` CSV (columns dataset, backbone, method, reason); filtered by ``--methods``."""
    if args.from_csv is not None:
        import pandas as pd

        side = args.from_csv.with_name(f"{args.from_csv.stem}{UNAVAILABLE_SUFFIX}.csv")
        found: dict[tuple[str, str], dict[str, str]] = {}
        if side.is_file():
            for row in pd.read_csv(side, dtype=str, keep_default_na=False).itertuples(index=False):
                found.setdefault((row.dataset, row.backbone), {})[row.method] = row.reason
    else:
        from bench.harness.availability import recorded_unavailable

        found = recorded_unavailable(args.experiment)
    if args.methods:
        found = {k: {m: r for m, r in v.items() if m in args.methods} for k, v in found.items()}
    return found


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
    p = sub.add_parser(  # no abbreviations: `--data DIR` (the other commands' flag) is not `--dataset`
        "table",
        help="per-class accuracy tables (mean ± std, corrected paired tests) from finished runs",
        allow_abbrev=False,
    )
    add_selection_args(p)
    p.add_argument(
        "--format",
        choices=TABLE_FORMATS,
        default="md",
        help="md, latex (or tex): one table per (protocol, budget); csv: tidy, one row per (protocol, "
        "budget, method, metric, class), in percent, for pandas or R; summary: the README's AA by "
        "(protocol, budget) with paired intervals (default: md)",
    )
    p.add_argument(
        "--out",
        metavar="FILE|DIR/",
        help="write the tables here instead of printing them; a directory (existing, or ending in /) "
        "gets table.md, table.csv, table.tex or summary.md by --format",
    )
    p.add_argument(
        "--versus",
        metavar="METHOD",
        help="also every column minus METHOD (e.g. simsiam: SSCL - SimSiam), paired by label draw and "
        "training seed and Holm-corrected like the rows against the Baseline (md, csv, latex)",
    )
    p.add_argument(
        "--long-csv",
        type=Path,
        help="also write one row per run x score (method, budget, seed, protocol, class); beside it "
        f"<stem>{PAIRED_SUFFIX}.csv (paired tests against the Baseline), <stem>{VARIANCE_SUFFIX}.csv "
        f"(spread by source) and <stem>{UNAVAILABLE_SUFFIX}.csv (methods that could not run)",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Column labels and order come from the methods' source (:func:`source_method_infos`): reading
    a table imports no method (torch, lightly, timm)."""
    from bench.report.aggregate import using_method_infos

    with using_method_infos(source_method_infos()):
        return _run(args)


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from bench.core.atomic import atomic_write_text
    from bench.report.table import build_tables, default_name, paired_report, render, variance_report

    out = output_file(Path(args.out), args.out, default_name(args.format)) if args.out else None
    long = selected_long_form(args)
    versus = getattr(args, "versus", None)
    if versus is not None and versus not in set(long["method"]):
        from bench.core.errors import BenchError

        found = ", ".join(sorted(set(long["method"])))
        raise BenchError(f"--versus {versus}: no runs of it among the runs selected; found: {found}")
    companions = {}
    if args.long_csv:
        for suffix in (PAIRED_SUFFIX, VARIANCE_SUFFIX, UNAVAILABLE_SUFFIX):
            companions[suffix] = args.long_csv.with_name(f"{args.long_csv.stem}{suffix}.csv")
    refuse_untraceable(long, [out, args.long_csv, *companions.values()], args.allow_dirty)
    unavailable = unavailable_for(args)
    text = render(build_tables(long, unavailable=unavailable, versus=versus), args.format)
    if out is not None:
        atomic_write_text(out, text)
        print(f"wrote {out}")
    else:
        print(text, end="")
    if args.long_csv:
        atomic_write_text(args.long_csv, long.to_csv(index=False))
        print(f"wrote {args.long_csv} ({len(long)} rows)")
        paired = paired_report(long)
        atomic_write_text(companions[PAIRED_SUFFIX], paired.to_csv(index=False))
        print(f"wrote {companions[PAIRED_SUFFIX]} ({len(paired)} paired tests)")
        variance = variance_report(long)
        atomic_write_text(companions[VARIANCE_SUFFIX], variance.to_csv(index=False))
        print(f"wrote {companions[VARIANCE_SUFFIX]} ({len(variance)} rows)")
        records = [
            {"dataset": d, "backbone": b, "method": m, "reason": r}
            for (d, b), methods in unavailable.items()
            for m, r in methods.items()
        ]
        side = pd.DataFrame(records, columns=["dataset", "backbone", "method", "reason"])
        atomic_write_text(companions[UNAVAILABLE_SUFFIX], side.to_csv(index=False))
        print(f"wrote {companions[UNAVAILABLE_SUFFIX]} ({len(side)} methods that could not run)")
    return 0
