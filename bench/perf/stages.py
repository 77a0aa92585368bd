"""Throughput stages for ``bench perf``: each stage measures itself and returns table rows.

A stage is a function ``(args) -> list[PerfRow]`` registered with ``@register_stage("name")`` in
its own module; :mod:`bench.cli.perf` imports the stage modules and adds their options.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PerfRow:
    """One measured figure: ``value`` in ``unit`` (e.g. patches/s, or x for a ratio)."""

    stage: str
    measure: str
    value: float
    unit: str


Stage = Callable[[argparse.Namespace], list[PerfRow]]
_STAGES: dict[str, Stage] = {}


def register_stage(name: str) -> Callable[[Stage], Stage]:
    """Register a throughput stage under ``name`` (``bench perf --stage name``)."""

    def wrap(fn: Stage) -> Stage:
        if name in _STAGES:
            raise ValueError(f"perf stage {name!r} is already registered")
        _STAGES[name] = fn
        return fn

    return wrap


def list_stages() -> tuple[str, ...]:
    return tuple(_STAGES)


def run_stages(names: Sequence[str], args: argparse.Namespace) -> list[PerfRow]:
    """Run the named stages in order (all registered ones when ``names`` is empty)."""
    unknown = [n for n in names if n not in _STAGES]
    if unknown:
        raise KeyError(f"unknown perf stage(s) {unknown}; registered: {', '.join(_STAGES)}")
    rows: list[PerfRow] = []
    for name in names or list(_STAGES):
        rows += _STAGES[name](args)
    return rows


def _value(value: float) -> str:
    """One decimal, or n/a for a figure the device cannot give (NaN, e.g. CUDA peak memory on CPU)."""
    if math.isnan(value):
        return "n/a"
    return f"{value:,.2f}" if abs(value) < 10 else f"{value:,.1f}"


def format_rows(rows: Sequence[PerfRow]) -> str:
    """A plain-text table of the measured figures."""
    header = ("stage", "measure", "value", "unit")
    cells = [header, *((r.stage, r.measure, _value(r.value), r.unit) for r in rows)]
    widths = [max(len(c[i]) for c in cells) for i in range(4)]
    lines = [
        "  ".join(
            c.rjust(w) if i == 2 else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in cells
    ]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def stage_dataset(args: argparse.Namespace) -> Any:
    """The dataset ``--data``/``--skip-bad``/``--split-scheme`` name, opened quietly: every stage
    measures the same data, opened the same way (stages added by other tools may lack the options)."""
    from datasets import DEFAULT_SPLIT_SCHEME, load_dataset

    return load_dataset(
        args.data,
        skip_bad=getattr(args, "skip_bad", False),
        progress=False,
        split_scheme=getattr(args, "split_scheme", DEFAULT_SPLIT_SCHEME),
    )
