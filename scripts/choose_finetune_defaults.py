"""Choose the finetune protocol's defaults by one rule for every method (issue 21 item 4).

The rule, fixed before any test result is looked at: a small grid of finetune settings; each
setting fine-tunes every competitor available on the ``tiny`` backbone (the baseline ``random``,
``simsiam``, ``sscl``; ``imagenet`` needs a timm trunk) at the scarce and the usual budget, and is
scored by its AA at **the budget's validation pixels** (``bench.harness.tune.validation_aa``: never
dense validation labels, never the test split), mean over budget seeds. Within each (method,
budget) the settings are ranked (1 = best validation AA); the default is the setting with the
best **mean rank** over all (method, budget) columns, ties broken by the mean validation AA. So no
method's taste decides alone (the previous defaults were tuned on the baseline only), and a method
whose AA is higher everywhere does not outweigh the others. The controls (``supervised``) and the
ablations (``unifeat``, ``core``) are not in the vote: a control must not shape the protocol it
checks, and the ablations are parts of ``sscl``.

    .venv/bin/python scripts/choose_finetune_defaults.py --out docs/finetune-defaults.md

It prints each score as it goes and writes the trials, the command, the dataset fingerprint and
the winner into ``--out``; the winner is copied into ``bench.protocols.finetune.FinetuneConfig``
by hand (its docstring names this script).
"""

from __future__ import annotations

import argparse
import itertools
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.core.device import resolve_device, use_thread_share
from bench.harness import tracking
from bench.harness.runner import CellSpec
from bench.harness.tune import validation_aa
from bench.protocols.finetune import FinetuneConfig
from datasets import load_dataset

METHODS = ("random", "simsiam", "sscl")
#: Scarce, usual and the top of the budget grid: the schedule's length matters most where there
#: are the most labelled pixels to fit (at a fixed 500 steps the Baseline's AA stopped rising above
#: 200 px per class).
BUDGETS = (50, 200, 1000)
#: The grid: the end-to-end schedule's length, at the LP-FT head stage and backbone share the
#: previous run of this rule kept (``probe_steps`` 200, ``backbone_lr_factor`` 0.5, rows of
#: ``docs/finetune-defaults.md``'s history); lr and weight decay stay at the defaults.
GRID = {"steps": (500, 1000)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("docs/finetune-defaults.md"))
    parser.add_argument("--budget-seeds", type=int, default=2, help="budget seeds per cell (default 2)")
    parser.add_argument("--data", type=Path, default=None, help="dataset (default: the embedded default)")
    args = parser.parse_args()
    use_thread_share()
    tracking.setup_tracking()
    device = resolve_device("cpu")
    ds = load_dataset(args.data, progress=False)
    settings = [dict(zip(GRID, values, strict=True)) for values in itertools.product(*GRID.values())]
    columns = [(m, n) for m in METHODS for n in BUDGETS]
    aa = np.full((len(settings), len(columns)), np.nan)
    start = time.perf_counter()
    for j, (method, n) in enumerate(columns):
        for i, setting in enumerate(settings):
            spec = CellSpec(method, n, protocol="finetune", protocol_overrides=setting)
            aa[i, j] = validation_aa(spec, range(args.budget_seeds), ds, device)
            print(f"{method:<8} {n:>4}/class {setting}: validation AA {100 * aa[i, j]:.1f}", flush=True)
    ranks = np.argsort(np.argsort(-aa, axis=0, kind="stable"), axis=0, kind="stable") + 1.0
    mean_rank, mean_aa = ranks.mean(axis=1), aa.mean(axis=1)
    best = min(range(len(settings)), key=lambda i: (mean_rank[i], -mean_aa[i]))
    seconds = time.perf_counter() - start
    repo = Path(__file__).resolve().parent.parent
    git = ["git", "-C", str(repo), "describe", "--always", "--dirty", "--abbrev=12"]
    commit = subprocess.run(git, capture_output=True, text=True).stdout
    args.out.write_text(
        _report(settings, columns, aa, ranks, best, ds.fingerprint, args, seconds, commit.strip())
    )
    print(f"best: {settings[best]} (mean rank {mean_rank[best]:.2f}); wrote {args.out} ({seconds:.0f} s)")
    return 0


def _report(
    settings: list[dict[str, float]],
    columns: list[tuple[str, int]],
    aa: np.ndarray,
    ranks: np.ndarray,
    best: int,
    fingerprint: str,
    args: argparse.Namespace,
    seconds: float,
    commit: str,
) -> str:
    base = FinetuneConfig()
    fixed = ", ".join(f"{k} {getattr(base, k)}" for k in base.__dataclass_fields__ if k not in GRID)
    head = " | ".join(["setting", *(f"{m} {n}" for m, n in columns), "mean rank", "mean AA"])
    rows = []
    for i, s in enumerate(settings):
        cells = [f"{100 * aa[i, j]:.1f} ({ranks[i, j]:.0f})" for j in range(len(columns))]
        name = ", ".join(f"{k}={v}" for k, v in s.items())
        mark = "**" if i == best else ""
        rows.append(
            f"| {mark}{name}{mark} | "
            + " | ".join(cells)
            + f" | {ranks[i].mean():.2f} | {100 * aa[i].mean():.1f} |"
        )
    winner = ", ".join(f"`{k}={v}`" for k, v in settings[best].items())
    budgets = ", ".join(map(str, BUDGETS))
    val_sizes = ", ".join(f"{n // 5} (at {n})" for n in BUDGETS)
    seeds = "budget seed 0" if args.budget_seeds == 1 else f"budget seeds 0..{args.budget_seeds - 1}"
    return f"""# Fine-tuning defaults: one rule for every method

`FinetuneConfig`'s {" and ".join(f"`{k}`" for k in GRID)} were chosen by

```bash
.venv/bin/python scripts/choose_finetune_defaults.py --budget-seeds {args.budget_seeds}
```

on the embedded default (synthetic v3, dataset fingerprint `{fingerprint}`), `tiny` backbone, CPU
({platform.node()}, {os.cpu_count()} cores), commit `{commit}`, in {seconds:.0f} s.

**The rule** (fixed before any result was looked at): every setting of a small grid fine-tunes
each competitor available on `tiny` (Baseline `random`, `simsiam`, `sscl`) at {budgets} px per
class, {seeds}, and is scored by its AA at **the budget's
validation pixels** (20% of the budget, from held-out patches; never dense validation labels, never
test). Within each (method, budget) column the settings are ranked (1 = best); the default is the
setting with the best **mean rank** over the columns (ties: the higher mean validation AA). The
controls (`supervised`) and the ablations (`unifeat`, `core`) do not vote. Other settings stay
as they were: {fixed}.

Validation AA in % (rank in the column):

| {head} |
| {" | ".join(["---"] + ["---:"] * (len(columns) + 2))} |
{chr(10).join(rows)}

Kept: {winner}.

What it cannot say: {seeds} per cell and validation sets of {val_sizes} pixels per class:
differences of a few points between settings are within the noise; the rank rule keeps one
noisy column from deciding. Checkpoint selection scores the same validation pixels every
{base.eval_every} steps, so a longer schedule picks the best of more checkpoints and its score
is biased upward by that choice alone.
"""


if __name__ == "__main__":
    raise SystemExit(main())
