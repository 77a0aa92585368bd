"""``bench list``: registered methods, backbones and datasets, one line each."""

from __future__ import annotations

import argparse


def _section(title: str, entries: dict[str, str]) -> str:
    width = max(map(len, entries), default=0)
    return "\n".join([f"{title}:", *(f"  {name:<{width}}  {desc}" for name, desc in entries.items())])


def run_list(args: argparse.Namespace) -> int:
    """Print what ``--method``, ``--backbone`` and ``--data`` accept."""
    from bench.models.backbones import list_backbones
    from datasets import list_layouts
    from methods import list_methods

    sections = [
        _section("methods", list_methods()),
        _section("backbones", list_backbones()),
        _section("datasets", list_layouts()),
    ]
    print("\n\n".join(sections))
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    parser = sub.add_parser("list", help="registered methods, backbones and datasets")
    parser.set_defaults(func=run_list)
