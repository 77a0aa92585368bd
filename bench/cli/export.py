"""``python -m bench export``: pretrained weights as safetensors + a JSON card + a standalone loader
(+ the trunk in timm's names).

The weights are found as ``bench run`` finds them (method, backbone, pretraining seed, settings,
preset and pretraining data make the cache key; not cached yet: pretrained first, as ``run``
would), or taken from a cache file with ``--from FILE.pt``. What is written and how each file
loads: :mod:`bench.harness.export`.
"""

from __future__ import annotations

import argparse
import errno
import os
from pathlib import Path

from bench.cli.common import (
    add_data_args,
    add_model_args,
    add_preset_arg,
    add_pretrain_data_arg,
    add_progress_arg,
    add_set_arg,
    add_weights_arg,
    prepare,
    preset_overrides,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="write pretrained weights: safetensors, JSON card, load_backbone.py (+ timm's trunk names)",
    )
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--method", help="the method whose weights to export (see `bench list`)")
    which.add_argument(
        "--from",
        dest="source",
        type=Path,
        metavar="FILE.pt",
        help="a weights cache file (BENCH_HOME/weights)",
    )
    p.add_argument("--out", type=Path, default=Path("export"), help="output folder (default: ./export)")
    p.add_argument("--pretrain-seed", type=int, default=0, help="pretraining seed (default 0)")
    p.add_argument(
        "--transductive", action="store_true", help="the weights pretrained on the test inputs too"
    )
    add_data_args(p)
    add_model_args(p)
    add_weights_arg(p)
    add_pretrain_data_arg(p)
    add_set_arg(p, "method setting, as given to `bench run` (key or method.key); repeatable")
    add_preset_arg(p)
    add_progress_arg(p)
    p.set_defaults(func=run)


#: Errors of a write the folder refused (permissions, a read-only file system).
_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def check_out(out: Path) -> None:
    """``--out`` must be a folder this process can write (or create), checked before any work: a
    one-line error naming it and what to do (not a traceback, not a line blaming ``BENCH_HOME``)."""
    from bench.core.errors import BenchError

    existing = next(p for p in (out, *out.absolute().parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == out else f"is under the file {existing}"
        raise BenchError(
            f"--out {out} {where}; it expects a folder (where the export is written): "
            "pass another --out or move the file away"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise BenchError(_unwritable(out, existing, os.strerror(errno.EACCES)))


def _unwritable(out: Path, folder: Path, why: str) -> str:
    return (
        f"--out {out}: the folder {folder} refuses writes ({why}); make it writable or pass --out a "
        "folder you can write"
    )


def _refused_out(out: Path, err: OSError) -> str | None:
    """The one line for a write into (or the creation of) ``out`` that the folder refused, else None."""
    if err.errno not in _DENIED or not err.filename:
        return None
    where, folder = Path(os.fsdecode(err.filename)).absolute(), out.absolute()
    if where == folder or folder in where.parents or where in folder.parents:
        return _unwritable(out, where.parent, err.strerror or os.strerror(err.errno))  # the folder said no
    return None


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from bench.core.device import resolve_device
    from bench.core.errors import BenchError
    from bench.harness import export
    from bench.harness.runner import CellSpec, parse_overrides, pretrain
    from datasets import load_dataset

    prepare(args)
    check_out(args.out)
    if args.source is not None:
        import sys

        from bench.harness.pretraining import checked_cache_file

        export.cached_record(args.source)  # its one-line errors for a file with no record
        record = checked_cache_file(args.source)  # digest (record included) and verdict vs MLflow
        if record.get("health", "passed") != "passed":
            print(
                f"warning: --from {args.source}: UNHEALTHY weights, exported marked as such in the card "
                f"({str(record['health'])[:160]})",
                file=sys.stderr,
            )
        ds = load_dataset(
            args.data, skip_bad=args.skip_bad, progress=args.progress, split_scheme=args.split_scheme
        )
        model = export.load_cached_file(args.source, record, len(ds.band_names))
    else:
        pairs = preset_overrides(args, args.method) + args.overrides
        method_overrides, _ = parse_overrides(pairs)
        spec = CellSpec(
            method=args.method,
            samples=0,  # no budget: weights only
            backbone=args.backbone,
            method_overrides=method_overrides,
            pretrain_seed=args.pretrain_seed,
            transductive=args.transductive,
            pretrain_data=args.pretrain_data,
            weights=args.weights,
        )
        spec.method_config()  # a bad --set fails before any data is generated
        ds = load_dataset(
            args.data, skip_bad=args.skip_bad, progress=args.progress, split_scheme=args.split_scheme
        )
        model, pre = pretrain(spec, ds, resolve_device(args.device), progress=args.progress)
        record = dataclasses.asdict(pre)
        print(f"weights: {pre.path} ({'cached' if pre.cached else f'pretrained in {pre.seconds:.0f} s'})")
    try:
        files = export.export_weights(model.cpu(), record, ds, args.out)
    except OSError as err:  # refused although check_out saw it writable (changed since, ACLs)
        line = _refused_out(args.out, err)
        if line is None:
            raise
        raise BenchError(line) from err
    for role, path in files.items():
        print(f"{role}: {path}")
    card = export.read_card(files["backbone"])
    if "loader" in files:
        print(f"without the harness (torch + timm): {card['loader']['use']}")
    print(
        f"as --weights: bench run --method imagenet --backbone {model.spec.name} "
        f"--weights {files['backbone']} --label NAME"
    )
    if "timm_trunk" in files:
        print(f"timm: {card['timm_trunk']['load']}; {card['timm_trunk']['holds']}")
    else:
        print(export.NO_TIMM_TRUNK.format(name=model.spec.name))
    return 0
