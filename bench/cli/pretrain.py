"""``python -m bench pretrain``: pretrain one method and cache its weights, nothing else.

The cache (``BENCH_HOME/weights``) is what ``run``, ``sweep`` and ``tune`` read, so pretraining a
large pool (SEN12MS, ``--pretrain-data``) once on a multi-GPU machine makes every later command a
cache hit. Under ``torchrun --nproc-per-node N -m bench pretrain ...`` the N processes train one
model data-parallel (each takes its share of every global batch, gradients are averaged; see
:mod:`bench.core.distributed`); rank 0 alone writes the cache file and the MLflow pretraining run,
and the others wait for it. The same command without ``torchrun`` trains in one process.

``--preset`` takes the method settings of the same preset ``run``, ``sweep`` and ``tune`` take
(protocol settings do not touch weights), so ``bench pretrain --preset paper`` caches exactly the
weights a later ``bench run --preset paper`` reads.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.common import (
    add_data_args,
    add_health_arg,
    add_model_args,
    add_preset_arg,
    add_pretrain_data_arg,
    add_progress_arg,
    add_set_arg,
    add_weights_arg,
    preset_overrides,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "pretrain", help="pretrain one method and cache its weights (runs under torchrun for several GPUs)"
    )
    p.add_argument("--method", required=True, help="pretraining method (see `bench list`)")
    p.add_argument("--pretrain-seed", type=int, default=0, help="pretraining seed (default 0)")
    p.add_argument(
        "--transductive", action="store_true", help="also pretrain on the test inputs (never the labels)"
    )
    p.add_argument("--force", action="store_true", help="train again even when the weights are cached")
    add_data_args(p)
    add_model_args(p)
    add_weights_arg(p)
    add_pretrain_data_arg(p)
    add_set_arg(p, "method setting (e.g. steps=500, batch_size=256); repeatable")
    add_preset_arg(p)
    add_health_arg(p)
    add_progress_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.core import distributed
    from bench.harness import runner, tracking
    from bench.harness.pretraining import recorded_usefulness
    from bench.harness.runner import CellSpec, parse_overrides
    from datasets import load_dataset

    method_overrides, _ = parse_overrides(preset_overrides(args, args.method) + args.overrides)
    spec = CellSpec(
        method=args.method,
        samples=0,  # no budget: pretraining only
        backbone=args.backbone,
        method_overrides=method_overrides,
        pretrain_seed=args.pretrain_seed,
        transductive=args.transductive,
        pretrain_data=args.pretrain_data,
        weights=args.weights,
        allow_unhealthy=args.allow_unhealthy,
    )
    spec.method_config()  # settings checked before any process group or data
    device = distributed.init_from_env(args.device)
    rank, ranks = distributed.world()
    try:
        if rank == 0:  # decodes the data into the cache once; the other ranks then only open it
            ds = load_dataset(
                args.data, skip_bad=args.skip_bad, progress=args.progress, split_scheme=args.split_scheme
            )
            tracking.setup_tracking()
        distributed.barrier()
        if rank != 0:
            ds = load_dataset(
                args.data, skip_bad=args.skip_bad, progress=False, split_scheme=args.split_scheme
            )
        _, record = runner.pretrain(spec, ds, device, force=args.force, progress=args.progress and rank == 0)
    finally:
        distributed.shutdown()
    if rank == 0:
        how = (
            "cached already" if record.cached else f"trained in {record.seconds:.0f} s on {ranks} process(es)"
        )
        useful = recorded_usefulness(Path(record.path))  # beside the gate (bench.harness.usefulness)
        figure = f"; usefulness: {useful.line}" if useful is not None else ""
        print(
            f"{args.method}: weights {record.path} ({how}); key {record.key}; health {record.health}{figure}"
        )
    return 0
