"""``python -m bench export``: pretrained weights as safetensors + a JSON card + a standalone loader
(+ the trunk in timm's names).

The weights are found as ``bench run`` finds them (method, backbone, pretraining seed, settings,
preset and pretraining data make the cache key; not cached yet: pretrained first, as ``run``
would), or taken from a cache file with ``--from FILE.pt``. What is written and how each file
loads: :mod:`bench.harness.export`.
"""

from __future__ import annotations

import argparse
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


def run(args: argparse.Namespace) -> int:
    import dataclasses

    from bench.core.device import resolve_device
    from bench.harness import export
    from bench.harness.runner import CellSpec, parse_overrides, pretrain
    from datasets import load_dataset

    prepare(args)
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
    files = export.export_weights(model.cpu(), record, ds, args.out)
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
