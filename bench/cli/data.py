"""``bench data synth|check|cache``: make the synthetic set, validate a dataset, build the cache."""

from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

from bench.cli.common import add_data_args, add_pretrain_data_arg, shown_path

if TYPE_CHECKING:
    from datasets import CachedSplit, Dataset

#: Pixels per class the labelled pool must hold for ``--samples 800`` with room to spare.
MIN_CLASS_PIXELS = 2000
#: More patches than this in all looks like a full copy of a dataset (not a sample or a fixture),
#: so ``check`` compares its split sizes with the release's.
FULL_COPY_PATCHES = 1000
_LIST_LIMIT = 10


def _synth(args: argparse.Namespace) -> int:
    """Generate a synthetic set and show its class pixel counts (warning on classes too rare)."""
    from datasets import DEFAULT_CLASSES
    from datasets.synthetic import FULL_SIZE, MARKER, SynthConfig, default_workers, generate

    base = FULL_SIZE if args.full_size else SynthConfig()
    overrides = {
        "n_labelled": args.train,
        "n_test": args.test,
        "n_pretrain": args.pretrain,
        "size": args.size,
        "seed": args.seed,
    }
    config = dataclasses.replace(base, **{k: v for k, v in overrides.items() if v is not None})
    start = time.perf_counter()
    workers = args.workers or default_workers()
    out = generate(Path(args.out), config, progress=True, workers=workers)
    elapsed = time.perf_counter() - start
    print(
        f"wrote {config.n_labelled} labelled + {config.n_test} test + {config.n_pretrain} pool patches "
        f"of {config.size} px "
        f"to {out} in {elapsed:.1f} s (seed {config.seed}, {workers} worker(s))"
    )
    pixels = json.loads((out / MARKER).read_text())["dfc_pixels"]
    evaluated = set(DEFAULT_CLASSES.names)
    print(f"{'class':<16}{'labelled':>12}{'test':>12}")
    for name in pixels["labelled"]:
        note = "" if name in evaluated else "  (ignored)"
        print(f"{name:<16}{pixels['labelled'][name]:>12}{pixels['test'][name]:>12}{note}")
    rare = [n for n in DEFAULT_CLASSES.names if pixels["labelled"][n] < MIN_CLASS_PIXELS]
    if rare:
        print(f"warning: fewer than {MIN_CLASS_PIXELS} labelled pixels for {', '.join(rare)}")
    pool = json.loads((out / MARKER).read_text())["pretrain_pool"]
    if pool:
        seasons = ", ".join(f"{folder} {n}" for folder, n in pool["regions_per_season"].items())
        print(
            f"pretraining pool: {pool['patches']} unlabelled patches in the SEN12MS layout under "
            f"{out / pool['folder']} (s1, s2, MODIS-like lc at 500 m); scenes per season: {seasons}; "
            f"lc agrees with the fine labels at {100 * pool['lc_agreement']:.1f}% of pixels"
        )
    return 0


def _print_split(split: CachedSplit) -> None:
    n, _, h, w = split.images.shape
    print(f"\n{split.name}: {n} patches of {h}x{w} px  (cache {split.path})")
    if split.class_pixels:
        total = sum(split.class_pixels.values())
        for name, count in split.class_pixels.items():
            print(f"  {name:<16}{count:>12}  {100 * count / max(total, 1):5.1f}%")
    replaced = sum(split.nonfinite.values())
    print(f"  non-finite S1 pixels replaced: {replaced} in {len(split.nonfinite)} files")
    for path, count in list(split.nonfinite.items())[:_LIST_LIMIT]:
        print(f"    {count:>8}  {path}")
    if len(split.nonfinite) > _LIST_LIMIT:
        print(f"    ... and {len(split.nonfinite) - _LIST_LIMIT} more files")
    if split.skipped:
        print(f"  skipped {len(split.skipped)} bad files (see messages above)")


def _load(args: argparse.Namespace) -> Dataset:
    from datasets import load_dataset

    return load_dataset(args.data, skip_bad=args.skip_bad, progress=True, split_scheme=args.split_scheme)


def _print_split_sizes(ds: Dataset) -> None:
    """Patches per split under the scheme, and a warning when a full copy is not split as released.

    A copy split differently from the release (another scheme, a re-split archive, missing files)
    runs another experiment than the published table, which nothing else would reveal.
    """
    from datasets import DEFAULT_SPLIT_SCHEME, get_layout

    sizes = {"labelled": len(ds.labelled), "test": len(ds.test)}
    release = get_layout(ds.layout).release_patches
    shown = " / ".join(f"{n} {name}" for name, n in sizes.items())
    print(f"patches: {shown}")
    if release and sum(sizes.values()) > FULL_COPY_PATCHES and sizes != release:
        hint = (
            f"the {ds.split_scheme!r} split scheme is not the seed's protocol (--split-scheme seed)"
            if ds.split_scheme != DEFAULT_SPLIT_SCHEME
            else "missing or skipped files? results will not compare with the published table"
        )
        print(
            f"warning: {shown} patches, the DFC2020 release has {release['labelled']} labelled "
            f"(ROIs0000_validation) / {release['test']} test (ROIs0000_test); {hint}"
        )


def _check(args: argparse.Namespace) -> int:
    """Validate every file (via the cache build) and show counts; a broken file exits non-zero."""
    ds = _load(args)
    print(
        f"dataset {ds.root}  layout {ds.layout}  split scheme {ds.split_scheme}  fingerprint {ds.fingerprint}"
    )
    _print_split_sizes(ds)
    print(f"bands: {' '.join(ds.band_names)}")
    for split in (ds.labelled, ds.test):
        _print_split(split)
    if ds.pretrain_pool is not None:
        from datasets import load_pretrain_pool

        pool = load_pretrain_pool(ds.pretrain_pool, classes=ds.classes, skip_bad=args.skip_bad)
        print(f"\npretraining pool {ds.pretrain_pool} (SEN12MS layout; class pixels of its lc, coarse)")
        _print_split(pool)
    if args.preview is not None:
        from bench.report.plot import patches_figure, save_png

        assert ds.labelled.labels is not None  # the labelled pool always has labels
        splits = [("pool", ds.labelled.images, ds.labelled.labels)]
        if ds.test.labels is not None:
            splits.append(("test", ds.test.images, ds.test.labels))
        fig = patches_figure(splits, ds.classes.names, ds.band_names)
        print(f"wrote {save_png(fig, args.preview)}")
    return 0


def _cache(args: argparse.Namespace) -> int:
    """Decode the GeoTIFFs once into the memory-mapped cache (a no-op when it exists)."""
    start = time.perf_counter()
    ds = _load(args)
    print(f"cache ready in {time.perf_counter() - start:.1f} s, dataset fingerprint {ds.fingerprint}")
    for split in (ds.labelled, ds.test):
        print(f"  {split.name}: {len(split)} patches -> {split.path}")
    return 0


def _samples(text: str) -> tuple[int, ...]:
    """``200,1000`` -> (200, 1000); a one-line error for anything else."""
    try:
        values = tuple(int(v) for v in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"--samples wants positive integers like 200,1000, got {text!r}")
    return values


def _difficulty(args: argparse.Namespace) -> int:
    """Per-pixel logistic regression and random forest on the raw bands: how hard is this dataset?"""
    from bench.core.errors import BenchError
    from bench.harness.difficulty import CLASSIFIERS, format_difficulty, log_difficulty
    from bench.harness.difficulty import difficulty as measure

    unknown = sorted(set(args.classifiers) - set(CLASSIFIERS))
    if unknown:
        raise BenchError(f"--classifiers: unknown {', '.join(unknown)}; choose from {', '.join(CLASSIFIERS)}")

    ds = _load(args)
    if args.controls:  # the control's pool and its lc labels are checked before the long part
        from bench.harness.pretraining import pretraining_labels

        pretraining_labels(ds, args.pretrain_data, transductive=False)
    n_train = len(ds.labelled) - round(0.2 * len(ds.labelled))
    print(
        f"dataset {shown_path(ds.root)}  fingerprint {ds.fingerprint}\n"
        f"test: labelled pool ({len(ds.labelled)} patches) -> test split ({len(ds.test)} patches); "
        f"pool-val: pool-train ({n_train} patches) -> pool-val (the rest, split by patch)"
    )
    start = time.perf_counter()
    rows = measure(ds, samples=args.samples, seed=args.seed, classifiers=args.classifiers, progress=print)
    print(
        f"\nper-pixel classifiers on the {len(ds.band_names)} raw normalised bands, accuracy in % "
        f"(seed {args.seed}, {time.perf_counter() - start:.0f} s)"
    )
    print(format_difficulty(rows, ds.classes.names))
    controls = []
    if args.controls:
        from bench.core.device import resolve_device, use_thread_share
        from bench.harness.difficulty import control_differences, format_controls
        from bench.harness.tracking import setup_tracking

        use_thread_share()
        setup_tracking()
        start = time.perf_counter()
        print(
            f"\npositive control ({args.control_seeds} seeds, K={args.control_pretrain_seeds or 'n'} "
            f"pretraining seed(s), budgets {','.join(map(str, args.control_samples))} px/class)"
        )
        controls = control_differences(
            ds,
            resolve_device(args.device),
            samples=args.control_samples,
            seeds=args.control_seeds,
            pretrain_seeds=args.control_pretrain_seeds,
            pretrain_data=args.pretrain_data,
            progress=print,
        )
        print(f"\n{format_controls(controls)}\n({time.perf_counter() - start:.0f} s)")
    run_id = log_difficulty(rows, ds, args.seed, ds.classes.names, controls)
    print(f"logged to MLflow run {run_id} (tag bench.kind=difficulty)")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("data", help="make the synthetic set, validate a dataset, build the cache")
    actions = parser.add_subparsers(dest="data_command", required=True, metavar="ACTION")

    synth = actions.add_parser("synth", help="write a synthetic DFC2020-like set in the released layout")
    synth.add_argument("--out", type=Path, required=True, help="output folder")
    synth.add_argument("--train", type=int, default=None, help="labelled patches (default 160)")
    synth.add_argument("--test", type=int, default=None, help="test patches (default 160)")
    synth.add_argument(
        "--pretrain",
        type=int,
        default=None,
        help="unlabelled pretraining-pool patches, SEN12MS layout under sen12ms/ (default 640; 0: none)",
    )
    synth.add_argument("--size", type=int, default=None, help="patch size in px (default 64)")
    synth.add_argument("--seed", type=int, default=None, help="generator seed (default 0)")
    synth.add_argument(
        "--full-size",
        action="store_true",
        help="real DFC2020 sizes: 986 / 5128 patches of 256 px, a pool of 3944 (4x the labelled pool)",
    )
    synth.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker processes (default: every core); the output is identical for any number",
    )
    synth.set_defaults(func=_synth)

    check = actions.add_parser("check", help="validate a dataset; print patch, class and non-finite counts")
    add_data_args(check)
    check.add_argument(
        "--preview",
        type=Path,
        metavar="FILE.png",
        help="also draw sample patches (S2, S1, labels) of the pool and the test split to FILE.png",
    )
    check.set_defaults(func=_check)

    hard = actions.add_parser(
        "difficulty",
        help="per-pixel logistic regression and random forest on the raw bands (AA, OA per class)",
    )
    add_data_args(hard)
    hard.add_argument(
        "--samples",
        type=_samples,
        default=(200, 1000),
        help="pixels per class, comma-separated (default 200,1000)",
    )
    hard.add_argument("--seed", type=int, default=0, help="pixel draw and classifier seed (default 0)")
    hard.add_argument(
        "--classifiers",
        type=lambda text: tuple(text.split(",")),
        default=("logistic", "rf"),
        help="comma-separated subset of logistic,rf (default both; rf predicts slowly on a large test split)",
    )
    hard.add_argument(
        "--controls",
        action="store_true",
        help="also the positive control: supervised (pool lc labels) minus random, paired by seed, "
        "under both protocols (minutes on a CPU; the cells are cached and reused by sweeps)",
    )
    hard.add_argument(
        "--control-samples",
        type=_samples,
        default=(10, 200),
        help="budgets of the control, px per class (default 10,200: the scarcest and 200)",
    )
    hard.add_argument(
        "--control-seeds", type=int, default=5, help="evaluation seeds of the control (default 5)"
    )
    hard.add_argument(
        "--control-pretrain-seeds",
        type=int,
        default=None,
        help="pretraining seeds K of the control (seed s uses s mod K; default: one per seed, K = n)",
    )
    add_pretrain_data_arg(hard)
    hard.add_argument("--device", default="auto", help="auto (CUDA when present), cpu or cuda")
    hard.set_defaults(func=_difficulty)

    cache = actions.add_parser("cache", help="decode the dataset once into the memory-mapped cache")
    add_data_args(cache)
    cache.set_defaults(func=_cache)
