"""``python -m bench <command>``: each command lives in ``bench/cli/<command>.py``.

A command module exposes ``register(subparsers) -> None``, which adds its parser and sets
``func`` (called with the parsed namespace, returns the exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

COMMANDS = ("run", "sweep", "table", "plot", "tune", "data", "list", "perf")


def build_parser() -> argparse.ArgumentParser:
    """The full parser, with every command module's subparser."""
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Compare pretraining strategies for S1+S2 land cover under one backbone and protocol.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"bench.cli.{name}").register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv`` and run the chosen command; a user error prints one line and exits 2."""
    from bench.core.errors import BenchError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BenchError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: completed work is kept; re-run the same command to resume", file=sys.stderr)
        return 130
