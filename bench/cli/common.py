"""Options several commands share, defined once so they read and default the same everywhere."""

from __future__ import annotations

import argparse
from pathlib import Path

#: The protocol names (``bench.harness.runner.PROTOCOLS``), here so that parsing imports no torch.
PROTOCOL_NAMES: tuple[str, ...] = ("linear", "finetune")
#: The table formats (``bench.report.table.FORMATS``), here so that parsing imports no pandas.
TABLE_FORMATS: tuple[str, ...] = ("md", "csv", "latex")


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


def add_model_args(parser: argparse.ArgumentParser) -> None:
    """``--backbone`` and ``--device``."""
    parser.add_argument("--backbone", default="tiny", help="shared backbone (default: tiny)")
    parser.add_argument("--device", default="auto", help="auto | cpu | cuda[:i] (default: auto)")


def add_weights_arg(parser: argparse.ArgumentParser) -> None:
    """``--weights``: a local checkpoint for methods that load one."""
    parser.add_argument("--weights", type=Path, help="local checkpoint for methods that load one (imagenet)")


def add_pretrain_data_arg(parser: argparse.ArgumentParser) -> None:
    """``--pretrain-data``: an unlabelled SEN12MS pool instead of the labelled pool's inputs."""
    parser.add_argument(
        "--pretrain-data", type=Path, help="SEN12MS folder as the unlabelled pretraining pool"
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
    """``--pretrain-seeds K`` and ``--no-selection`` (DESIGN 2.4), shared by run, sweep and tune."""
    parser.add_argument(
        "--pretrain-seeds",
        type=int,
        default=1,
        metavar="K",
        help="pretrain K times (each cached); evaluation seed s uses pretraining seed s mod K (default 1)",
    )
    parser.add_argument(
        "--no-selection",
        action="store_true",
        help="finetune: train the fixed schedule and test its last step (no checkpoint selection)",
    )


def evaluation_overrides(args: argparse.Namespace) -> list[str]:
    """``--set`` pairs implied by the evaluation flags (appended after the user's own)."""
    return ["finetune.selection=false"] if getattr(args, "no_selection", False) else []
