"""Options several commands share, defined once so they read and default the same everywhere."""

from __future__ import annotations

import argparse
import contextlib
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

from bench.core.paths import bench_home

#: The built-in deep protocols (``bench.harness.runner.PROTOCOLS`` without plugins), for help texts:
#: ``--protocol`` takes any registered name, matched after parsing (``bench.cli.startup``).
PROTOCOL_NAMES: tuple[str, ...] = ("linear", "finetune", "knn")
#: What ``--protocol both`` runs (``bench.harness.runner.BOTH``): the paper's two protocols.
BOTH_NAMES: tuple[str, ...] = ("linear", "finetune")
#: The table formats (``bench.report.table.FORMATS``), here so that parsing imports no pandas.
TABLE_FORMATS: tuple[str, ...] = ("md", "csv", "latex", "tex", "summary")
#: Default ``--seeds`` of ``run`` and ``sweep``: the fewest paired seeds at which the tables'
#: corrected test can mark a cell (``bench.report.statistics``: exact two-sided sign-flip test,
#: Holm across the columns of a row). All n differences of one sign give the smallest p, 2 / 2^n;
#: after Holm across m comparisons, 2m / 2^n, which must be < 0.05. A typical table compares m = 8
#: columns with the Baseline (ImageNet, SimSiam, SSCL, UniFeat, CoRe, Raw bands, Random forest,
#: the supervised control): n = 8 gives 16 / 256 = 0.0625 (never significant), n = 9 gives
#: 16 / 512 = 0.031, and 9 serves up to m = 12 (24 / 512 = 0.047). Uncorrected, n >= 6 is needed
#: (2 / 64 = 0.031; 2 / 32 = 0.0625). ``statistics.min_seeds(8) == DEFAULT_SEEDS`` is tested.
#: The units are independent only with one pretraining run per seed (:data:`DEFAULT_PRETRAIN_SEEDS`,
#: K = n): with K < n the test runs over the K run means and needs 2m / 2^K < 0.05, so K = 3 can
#: never mark a cell (2 / 8 = 0.25 before any correction) and K = 9 is again the least for m = 8.
DEFAULT_SEEDS = 9
#: Default ``--pretrain-seeds``: None, one pretraining run per evaluation seed (K = n, the Baseline
#: its own initialisation per seed), so the seeds are the test's independent units. Cost: n
#: pretraining runs per trained method instead of one (the cpu main command ``bench run --method
#: sscl --samples 800`` pretrains SSCL 9 times).
DEFAULT_PRETRAIN_SEEDS: int | None = None
#: The presets (``bench.harness.presets.PRESETS``), here so that parsing imports no torch.
PRESET_NAMES: tuple[str, ...] = ("cpu", "paper")


def add_data_args(parser: argparse.ArgumentParser, skip_bad: bool = True) -> None:
    """``--data`` (default: the embedded synthetic set), ``--split-scheme`` and ``--skip-bad``.

    The scheme is checked by the layout (``datasets.layouts``), which knows which schemes it has.
    """
    parser.add_argument("--data", type=Path, help="DFC2020 folder (default: the embedded synthetic set)")
    parser.add_argument(
        "--split-scheme",
        default="seed",  # datasets.DEFAULT_SPLIT_SCHEME, written here so parsing imports no rasterio
        metavar="seed|csv",
        help="labelled/test split of a Copernicus-Bench copy: seed (default) assigns patches by file name "
        "(ROIs0000_validation_* labelled, ROIs0000_test_* test), the seed's protocol; csv follows the "
        "archive's dfc-{train,val,test}-new.csv (train+val labelled)",
    )
    if skip_bad:
        parser.add_argument("--skip-bad", action="store_true", help="report bad files and leave them out")


def add_protocol_arg(parser: argparse.ArgumentParser, default: str | None, *, both: bool) -> None:
    """``--protocol NAME``: any registered protocol (a plugin's too), checked after parsing against
    the registry (``bench.cli.startup.resolve_names``), so no torch is imported to parse."""
    names = " | ".join((*PROTOCOL_NAMES, "both") if both else PROTOCOL_NAMES)
    what = f"; both = {' and '.join(BOTH_NAMES)}" if both else ""
    shown = f"default: {default}" if default else "default: all"
    parser.add_argument(
        "--protocol",
        default=default,
        metavar="NAME",
        help=f"{names}, or a plugin's (`bench list`){what} ({shown})",
    )
    parser.set_defaults(protocol_from_registry=True)  # bench.cli.startup matches it to the registry


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--backbone`` and ``--device``."""
    parser.add_argument("--backbone", default="tiny", help="shared backbone (default: tiny)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (default: auto)")


def add_weights_arg(parser: argparse.ArgumentParser) -> None:
    """``--weights``: a local checkpoint for methods that load one."""
    parser.add_argument("--weights", type=Path, help="local checkpoint for methods that load one (imagenet)")


def add_label_arg(parser: argparse.ArgumentParser, *, per_method: bool = False) -> None:
    """``--label``: run weights as a row of their own under the user's name (``--method imagenet
    --weights ssl4eo.pth --label SSL4EO``); the label is the row's column in tables and part of its
    cell identity. ``per_method`` (sweep): repeatable ``METHOD=LABEL``, or ``LABEL`` for one method."""
    if per_method:
        parser.add_argument(
            "--label",
            dest="labels",
            action="append",
            default=[],
            metavar="[METHOD=]LABEL",
            help="a row of its own for METHOD under LABEL (e.g. imagenet=SSL4EO with --weights); repeatable",
        )
    else:
        parser.add_argument(
            "--label",
            help="a row of its own under this name in tables (e.g. --method imagenet --weights ssl4eo.pth "
            "--label SSL4EO); part of the cell's identity",
        )


def check_label(label: str) -> str:
    """A ``--label`` that names no registered method (its column would merge with that method's)."""
    from bench.core import names
    from bench.core.errors import BenchError
    from methods.registry import method_labels

    if not label.strip():
        raise BenchError("--label expects a non-empty name")
    label = names.check_label(label, "--label")  # no path separator: labels name files too
    if label.casefold() in {name.casefold() for pair in method_labels().items() for name in pair}:
        raise BenchError(
            f"--label {label!r} is a registered method's name or label: its rows would merge with that "
            f"method's; choose another name"
        )
    return label


def labels_for(values: list[str], methods: list[str]) -> dict[str, str]:
    """``--label`` values of a sweep -> {method: label}; a bare ``LABEL`` needs exactly one method."""
    from bench.core.errors import BenchError

    labels: dict[str, str] = {}
    for value in values:
        method, sep, label = value.partition("=")
        if not sep:
            if len(methods) != 1:
                raise BenchError(
                    f"--label {value}: say which method it names (METHOD=LABEL) in a sweep of several"
                )
            method, label = methods[0], value
        if method not in methods:
            raise BenchError(
                f"--label {value}: {method!r} is not among the swept methods ({', '.join(methods)})"
            )
        labels[method] = check_label(label)
    return labels


def add_pretrain_data_arg(parser: argparse.ArgumentParser) -> None:
    """``--pretrain-data``: an unlabelled SEN12MS pool instead of the labelled pool's inputs."""
    parser.add_argument(
        "--pretrain-data", type=Path, help="SEN12MS folder as the unlabelled pretraining pool"
    )


def add_health_arg(parser: argparse.ArgumentParser) -> None:
    """``--allow-unhealthy``: evaluate weights whose pretraining failed its health gate, marked."""
    parser.add_argument(
        "--allow-unhealthy",
        action="store_true",
        help="use pretrained weights that failed their method's health gate instead of stopping; every "
        "seed run on them is tagged bench.pretrain_health=failed: <reason> and tables mark it",
    )


def add_set_arg(parser: argparse.ArgumentParser, help: str) -> None:
    """Repeatable ``--set KEY=VALUE`` settings, collected in ``args.overrides``."""
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE", help=help
    )


def add_progress_arg(parser: argparse.ArgumentParser) -> None:
    """``--no-progress``: no progress output at all (``python -m bench --no-progress CMD`` does the same)."""
    parser.add_argument(
        "--no-progress", dest="progress", action="store_false", help="no progress bars or progress lines"
    )


def add_evaluation_args(parser: argparse.ArgumentParser) -> None:
    """``--pretrain-seeds K``, ``--no-selection`` (DESIGN 2.4) and ``--preset``: run, sweep and tune."""
    parser.add_argument(
        "--pretrain-seeds",
        type=int,
        default=DEFAULT_PRETRAIN_SEEDS,
        metavar="K",
        help="pretrain K times (each cached); evaluation seed s uses pretraining seed s mod K (default: "
        "one per evaluation seed, K = n, so the seeds are independent; with K < n the tables test over "
        "the K pretraining-run means)",
    )
    parser.add_argument(
        "--no-selection",
        action="store_true",
        help="finetune: train the fixed schedule and test its last step (no checkpoint selection)",
    )
    add_preset_arg(parser)


def add_preset_arg(parser: argparse.ArgumentParser) -> None:
    """``--preset cpu|paper``: default settings for where the benchmark runs (``bench.harness.presets``)."""
    parser.add_argument(
        "--preset",
        choices=PRESET_NAMES,
        default="cpu",
        help="default settings: cpu (default; 2 cores, embedded set) or paper (real DFC2020 on a GPU); "
        "--set still wins; presets are part of result keys",
    )


def _counts(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expects comma-separated integers, got {text!r}") from None


def add_pretrain_images_arg(parser: argparse.ArgumentParser) -> None:
    """``--pretrain-images N[,N...]``: the compute rule's number, swept like the label budget."""
    parser.add_argument(
        "--pretrain-images",
        type=_counts,
        metavar="N[,N...]",
        help="images every trained method's pretraining sees (steps x batch, stages summed; default: "
        "the preset's, cpu 4800); a comma list runs each level as its own cells and tables",
    )


def pretrain_image_levels(args: argparse.Namespace) -> list[int | None]:
    """The ``--pretrain-images`` levels to run (``[None]``: the preset's number)."""
    return list(getattr(args, "pretrain_images", None) or [None])


def preset_overrides(args: argparse.Namespace, method: str, images: int | None = None) -> list[str]:
    """``--set`` pairs of the chosen preset for ``method`` (put before the user's own, which win),
    under the compute rule's ``images`` (None: the preset's)."""
    from bench.harness.presets import preset_pairs

    return preset_pairs(getattr(args, "preset", "cpu"), method, images)


def evaluation_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` pairs implied by the evaluation flags (appended after the user's own)."""
    return ["finetune.selection=false"] if getattr(args, "no_selection", False) else []


def check_device(choice: str) -> None:
    """``--device`` must be one torch offers on this machine (``tpu`` or ``cuda:3`` of two: one line)."""
    import torch

    offered = ["auto", "cpu"]
    if torch.cuda.is_available():
        offered += ["cuda", *(f"cuda:{i}" for i in range(torch.cuda.device_count()))]
    if torch.backends.mps.is_available():
        offered += ["mps"]
    if choice not in offered:
        from bench.core.errors import BenchError

        raise BenchError(
            f"--device {choice!r} is not available here; this machine offers {', '.join(offered)}"
        )


def check_bench_home() -> Path:
    """``BENCH_HOME`` must be a folder (or creatable as one); a read-only one is fine until a write.

    A fully cached run reads only, so a read-only home is not refused here; the first write that
    fails is reported in one line by :func:`bench.cli.main`.
    """
    from bench.core.errors import BenchError
    from bench.core.paths import bench_home

    home = bench_home()
    existing = next(p for p in (home, *home.parents) if p.exists())
    if not existing.is_dir():
        where = "is a file" if existing == home else f"is under the file {existing}"
        raise BenchError(f"BENCH_HOME={home} {where}; it expects a folder (where caches are kept)")
    return home


def prepare(args: argparse.Namespace) -> None:
    """Check every shared setting before any work starts, then clear stale temporaries.

    Counts must be >= 1, ``--data``/``--pretrain-data`` folders, ``--device`` one torch offers and
    ``BENCH_HOME`` a folder; each problem is one line naming the option and what it expects.
    Temporaries left in ``BENCH_HOME`` by killed commands are removed (a read-only home is skipped).
    """
    from bench.core.errors import BenchError
    from bench.core.integrity import clean_stale_temporaries

    for key in (
        "seeds",
        "samples",
        "trials",
        "study_trials",
        "budget_seeds",
        "pretrain_seeds",
        "pretrain_images",
    ):
        value = getattr(args, key, None)
        for count in value if isinstance(value, list) else [value]:
            if count is not None and count < 1:
                option = "--" + key.replace("_", "-")
                raise BenchError(f"{option} expects an integer >= 1, got {count}")
    for key in ("data", "pretrain_data"):
        folder = getattr(args, key, None)
        if folder is not None and folder.exists() and not folder.is_dir():
            option = "--" + key.replace("_", "-")
            raise BenchError(f"{option} {folder} is a file; it expects a dataset folder")
    if getattr(args, "device", None) is not None:
        check_device(args.device)
    clean_stale_temporaries(check_bench_home())
    from bench.core.device import use_thread_share

    use_thread_share()  # this process's share of the cores when several workers run here


@contextlib.contextmanager
def warnings_once() -> Iterator[None]:
    """Collect the warnings raised while a command works; print each distinct one once at the end.

    Python repeats a warning per call site and prints it with its source line; a short-class budget
    warning would come once per seed and cell, though the user can do nothing about it per seed.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        try:
            yield
        finally:
            for message in dict.fromkeys(str(w.message) for w in caught):
                print(f"warning: {message}")


def shown_path(path: Path) -> str:
    """``path`` as printed in outputs that may be committed (``results/difficulty.txt``): under
    ``$BENCH_HOME`` as ``$BENCH_HOME/...``, under the working directory relative to it, else as is;
    so no committed file carries the machine's absolute paths."""
    path = Path(path).resolve()
    for root, shown in ((bench_home(), "$BENCH_HOME"), (Path.cwd().resolve(), ".")):
        if path.is_relative_to(root):
            return str(Path(shown) / path.relative_to(root))
    return str(path)


def output_file(out: Path, raw: str, default_name: str) -> Path:
    """``--out``: a file path as given, or, when it names a directory (an existing one, or a path
    ending in ``/``), ``default_name`` inside it (the writer creates a missing folder): ``--out
    paper/`` writes ``paper/table.tex`` instead of a file named ``paper``. ``raw`` is the argument
    as typed (a ``Path`` drops the trailing slash)."""
    if out.is_dir() or raw.endswith(("/", os.sep)):
        return out / default_name
    return out


def comma_list(text: str) -> list[str]:
    """``--methods a,b`` as a list (argparse ``type``), blanks dropped."""
    return [part.strip() for part in text.split(",") if part.strip()]
