"""``python -m bench tune``: optuna search on the validation split; writes the best settings as JSON.

The JSON (``bench_home()/tuned/<method>-<protocol>-<budget><unit>-<backbone>-<dataset>.json``, one
per budget and dataset) is a settings file for ``--config``:
``python -m bench sweep --config FILE`` applies it to the cells of its method, and ``run`` takes the
same file (its settings become ``--set`` pairs, so an explicit ``--set`` still wins).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.cli.common import (
    add_data_args,
    add_evaluation_args,
    add_model_args,
    add_protocol_arg,
    add_set_arg,
    add_weights_arg,
    evaluation_overrides,
    prepare,
    preset_overrides,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "tune", help="optuna search of protocol (and pretraining) settings on the validation split"
    )
    p.add_argument("--method", required=True, help="pretraining method (see `bench list`)")
    p.add_argument("--trials", type=int, default=20, help="trials to run in this process (default 20)")
    p.add_argument(
        "--study-trials",
        type=int,
        help="stop once the study has this many completed trials, counting every worker's (shared "
        "storage); a killed run's trial is failed and asked again when the study is resumed",
    )
    add_protocol_arg(p, "linear", both=False)
    p.add_argument("--samples", type=int, default=800, help="label budget of every trial (default 800)")
    p.add_argument("--budget-unit", choices=("pixels", "images"), default="pixels", help="default: pixels")
    p.add_argument("--budget-seeds", type=int, default=1, help="budget draws averaged per trial (default 1)")
    p.add_argument(
        "--pretrain", action="store_true", help="also search the method's own settings (re-pretrains)"
    )
    p.add_argument(
        "--storage",
        help="optuna storage: an RDB URL (sqlite:///f.db, postgresql://...) or a journal file path "
        "(default: bench_home()/optuna/<study>.journal)",
    )
    p.add_argument("--study", help="study name; workers with the same name and storage share it")
    add_data_args(p, skip_bad=False)
    add_model_args(p)
    add_weights_arg(p)
    add_set_arg(p, "fixed settings, as for `run` (searched ones override them)")
    p.add_argument("--config", type=Path, help="start from a settings file (JSON from an earlier tune)")
    add_evaluation_args(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from bench.core.device import resolve_device
    from bench.core.errors import BenchError
    from bench.harness.runner import cell_spec, parse_overrides
    from bench.harness.tune import completed, default_study_name, load_config, trial_states, tune
    from datasets import load_dataset

    prepare(args)
    if args.study is not None:  # it names a journal file: refused before any work
        from bench.core.names import check_name

        check_name(args.study, "--study", any_case=True)
    pairs = list(args.overrides)
    if args.config:
        cfg = load_config(args.config)
        if not cfg.applies_to(args.method):
            raise BenchError(f"--config {args.config} is for method {cfg.method!r}, not {args.method!r}")
        pairs = cfg.set_pairs() + pairs
    pairs = preset_overrides(args, args.method) + pairs + evaluation_overrides(args)
    method_overrides, protocol_overrides = parse_overrides(pairs)
    spec = cell_spec(
        args.method,
        args.protocol,
        protocol_overrides,
        samples=args.samples,
        budget_unit=args.budget_unit,
        backbone=args.backbone,
        weights=args.weights,
        method_overrides=method_overrides,
        pretrain_seeds=args.pretrain_seeds,
    )
    spec.method_config()
    spec.protocol_config()
    ds = load_dataset(args.data, progress=False, split_scheme=args.split_scheme)
    study_name = args.study or default_study_name(spec, ds, args.pretrain)
    study, path = tune(
        spec,
        ds,
        resolve_device(args.device),
        trials=args.trials,
        study_trials=args.study_trials,
        study=study_name,
        storage=args.storage,
        pretrain=args.pretrain,
        budget_seeds=args.budget_seeds,
    )
    counts = ", ".join(
        f"{n} {state}" for state, n in sorted(trial_states(study).items()) if state != "complete"
    )
    print(
        f"study {study_name}: {completed(study)} completed trials"
        + (f" ({counts})" if counts else "")
        + f"; best validation AA {100 * study.best_value:.1f}%"
    )
    print(f"best settings: {study.best_params}")
    print(f"wrote {path}  (use: python -m bench sweep --config {path} ...)")
    return 0
