"""``python -m bench sweep``: the whole grid, resumable; start it several times to add workers.

Completed units (by result key in the tracking store) are skipped, so re-running an interrupted
sweep does only what is missing. Workers started on the same sweep (same ``BENCH_HOME`` and
tracking store) share the grid through atomic claims; see :mod:`bench.harness.sweep` for several machines.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.common import (
    DEFAULT_SEEDS,
    add_data_args,
    add_evaluation_args,
    add_health_arg,
    add_label_arg,
    add_model_args,
    add_pretrain_data_arg,
    add_pretrain_images_arg,
    add_progress_arg,
    add_protocol_arg,
    add_set_arg,
    add_weights_arg,
    comma_list,
    evaluation_overrides,
    labels_for,
    prepare,
    preset_overrides,
    pretrain_image_levels,
    warnings_once,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "sweep", help="every method x budget x seed x protocol; resumable, shareable by workers"
    )
    p.add_argument(
        "--methods", type=comma_list, help="comma list (default: every registered method and reference row)"
    )
    p.add_argument(
        "--samples",
        type=lambda s: [int(v) for v in comma_list(s)],
        default=None,
        help="comma list of label budgets (default: the preset's; cpu: 10,25,50,200,600,1000 px per class, "
        "or 1,2,5,10,25,50 with --budget-unit images)",
    )
    p.add_argument(
        "--seeds",
        type=int,
        default=DEFAULT_SEEDS,
        help=f"evaluation seeds 0..N-1 per cell (default {DEFAULT_SEEDS}: the fewest at which the tables' "
        "corrected paired test can mark a difference)",
    )
    add_protocol_arg(p, "both", both=True)
    p.add_argument("--budget-unit", choices=("pixels", "images"), default="pixels", help="default: pixels")
    add_data_args(p)
    add_model_args(p)
    add_weights_arg(p)
    add_label_arg(p, per_method=True)
    add_pretrain_data_arg(p)
    add_set_arg(
        p,
        "setting: METHOD.key for one method, key for the methods that have it, linear.key / "
        "finetune.key for a protocol; repeatable",
    )
    p.add_argument(
        "--config",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="tuned settings (JSON from `bench tune`) for the cells of the method it names; repeatable",
    )
    p.add_argument("--worker-id", help="name of this worker in progress and logs (default host:pid)")
    p.add_argument(
        "--executor",
        choices=("local", "ray", "submitit"),
        default="local",
        help="local: this process shares the grid with others through claims (default); ray: one task "
        "per unit; submitit: SLURM job arrays (local processes where there is no SLURM)",
    )
    p.add_argument("--ray-address", help="existing Ray cluster (auto, host:6379); default: a local instance")
    p.add_argument("--slurm-partition", help="SLURM partition for --executor submitit")
    p.add_argument("--slurm-time", type=int, default=60, help="minutes per SLURM job (default 60)")
    p.add_argument(
        "--gpus-per-unit",
        type=float,
        help="GPUs per task/job (default: 1 on a Ray cluster with GPUs, else 0)",
    )
    add_evaluation_args(p)
    add_pretrain_images_arg(p)
    add_health_arg(p)
    add_progress_arg(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.core.device import resolve_device
    from bench.core.errors import BenchError
    from bench.core.paths import bench_home
    from bench.harness.claims import ClaimStore
    from bench.harness.presets import preset_budgets
    from bench.harness.runner import BOTH, parse_overrides, scope_overrides
    from bench.harness.sweep import Unit, grid, run_sweep
    from bench.harness.tune import load_config
    from datasets import load_dataset

    for option, given in (("--methods", args.methods), ("--samples", args.samples)):
        if given is not None and not given:  # "" would mean "every method" or "no cell" silently
            raise BenchError(f"{option} is empty; it expects a comma list (leave it out for the default)")
    prepare(args)
    protocols = list(BOTH) if args.protocol == "both" else [args.protocol]
    configs = [load_config(path) for path in args.config]
    units: list[Unit] = []
    from methods.registry import method_labels

    methods = args.methods or list(method_labels())
    labels = labels_for(args.labels, methods)
    for method, images in ((m, n) for m in methods for n in pretrain_image_levels(args)):
        pairs = preset_overrides(args, method, images)
        pairs += [p for cfg in configs if cfg.applies_to(method) for p in cfg.set_pairs()]
        pairs += scope_overrides(args.overrides, method, methods)
        method_overrides, protocol_overrides = parse_overrides(pairs + evaluation_overrides(args))
        units += grid(
            [method],
            args.samples or list(preset_budgets(args.preset, args.budget_unit)),
            range(args.seeds),
            protocols,
            budget_unit=args.budget_unit,
            backbone=args.backbone,
            weights=args.weights,
            pretrain_data=args.pretrain_data,
            method_overrides=method_overrides,
            protocol_overrides=protocol_overrides,
            pretrain_seeds=args.pretrain_seeds,
            allow_unhealthy=args.allow_unhealthy,
            label=labels.get(method),
        )
    from bench.harness.availability import record_unavailable, screen

    units = list(dict.fromkeys(units))  # a method that trains nothing is one set of cells at every level
    units, unavailable = screen(units)  # before any data is generated or loaded
    for method, reason in unavailable.items():
        print(f"skipping {method}: {reason}", flush=True)
    for spec in dict.fromkeys(unit.spec for unit in units):  # a bad --set fails before any work
        spec.method_config()
        spec.protocol_config()
    device = resolve_device(args.device)
    ds = load_dataset(
        args.data, skip_bad=args.skip_bad, progress=args.progress, split_scheme=args.split_scheme
    )
    for method, reason in unavailable.items():  # so that `bench table` shows the column as n/a
        record_unavailable(method, args.backbone, ds.fingerprint, reason)
    if args.executor == "local":
        with warnings_once():  # each distinct warning once, after the units, not once per seed
            report = run_sweep(
                units,
                ds,
                device,
                ClaimStore(bench_home() / "claims"),
                worker=args.worker_id,
                progress=args.progress,
            )
    else:
        from bench.harness.executors import RemoteContext, run_ray, run_submitit

        dataset_args = {"data": args.data, "skip_bad": args.skip_bad, "split_scheme": args.split_scheme}
        ctx = RemoteContext.of_driver(dataset_args, args.device)
        if args.executor == "ray":
            report = run_ray(units, ds, ctx, address=args.ray_address, gpus_per_unit=args.gpus_per_unit)
        else:
            gpus = int(args.gpus_per_unit or 0)
            report = run_submitit(
                units,
                ds,
                ctx,
                folder=bench_home() / "submitit",
                partition=args.slurm_partition,
                time_min=args.slurm_time,
                gpus_per_unit=gpus,
            )
    print(report.summary())
    if unavailable:
        print(f"not run (see the first lines): {', '.join(unavailable)}")
    if report.stopped:
        from bench.core.errors import BenchError

        raise BenchError(report.stopped)
    return 1 if report.failed else 0
