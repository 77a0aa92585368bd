"""List every pretraining run in the tracking store with its health gate's figures (DESIGN 4.1).

Issue 26 asks that every pretraining run behind the committed results pass its gate, and that the
figures be shown, not just the verdict: a run that passes by a hair reads differently from one that
passes by a mile. This prints one markdown table per method: pretraining seed, the
``bench.pretrain_health`` tag, each figure the method's gate judges (the last value the run
logged, as ``pretrain.<method>/<figure>``; thresholds in ``methods/<method>.py``), the usefulness
figure beside them (validation linear-probe AA of the weights and of the same seed's random init,
and the gain, in points; ``-`` for a method that trains nothing or a run recorded before it
existed: :mod:`bench.harness.usefulness`, no gate), the wall time, and the commit.

    MLFLOW_TRACKING_URI=sqlite:///mlflow.db .venv/bin/python scripts/pretrain_health.py [--code-version C]

Only FINISHED runs are listed (a run killed mid-way has no verdict), the latest per pretraining
key, so a retrained entry (``--force-pretrain``) shows once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import mlflow

from bench.harness import tracking
from bench.harness.pretraining import HEALTH_TAG
from bench.harness.usefulness import METRICS as USEFULNESS
from bench.report.table import md_escape
from methods import get_method


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--experiment", default=None, help="MLflow experiment (default: the harness's)")
    parser.add_argument("--code-version", default=None, help="only runs whose commit starts with this")
    args = parser.parse_args()
    _, experiment_id = tracking.setup_tracking(args.experiment)
    runs = mlflow.search_runs(
        experiment_ids=[experiment_id],
        filter_string="tags.`bench.kind` = 'pretrain' and attributes.status = 'FINISHED'",
        order_by=["attributes.start_time DESC"],
        output_format="list",
    )
    latest: dict[str, mlflow.entities.Run] = {}
    for run in runs:
        commit = run.data.tags.get("mlflow.source.git.commit", "")
        if args.code_version and not commit.startswith(args.code_version):
            continue
        latest.setdefault(run.data.tags.get("bench.pretrain_key", run.info.run_id), run)
    by_method: dict[str, list[mlflow.entities.Run]] = {}
    for run in latest.values():
        by_method.setdefault(run.data.tags.get("bench.method", "?"), []).append(run)
    if not by_method:
        print("no finished pretraining runs in the tracking store")
        return 1
    for method in sorted(by_method):
        try:
            figures = [c.figure for c in get_method(method).health]
        except KeyError:
            figures = []
        if not figures:  # an ungated method (the control): its own figures, loss and lr aside
            prefix = f"pretrain.{method}/"
            logged = {k for r in by_method[method] for k in r.data.metrics if k.startswith(prefix)}
            figures = sorted({k.split("/", 1)[1] for k in logged} - {"loss", "lr"})
        print(f"\n{method}\n")
        print(_row(["seed", "health", *figures, *USEFULNESS.values(), "seconds", "commit"]))
        print("|" + "---|" * (len(figures) + len(USEFULNESS) + 4))
        rows = sorted(by_method[method], key=lambda r: int(r.data.tags.get("bench.pretrain_seed", "0")))
        for run in rows:
            metrics = run.data.metrics
            keys = [f"pretrain.{method}/{f}" for f in figures]
            values = [f"{metrics[k]:.3g}" if k in metrics else "-" for k in keys]
            values += [_points(metrics, k) for k in USEFULNESS]
            cells = [
                run.data.tags.get("bench.pretrain_seed", "?"),
                run.data.tags.get(HEALTH_TAG, "not gated"),
                *values,
                f"{metrics.get('pretrain.seconds', float('nan')):.0f}",
                run.data.tags.get("mlflow.source.git.commit", "?")[:12],
            ]
            print(_row(cells))
    return 0


def _points(metrics: dict[str, float], key: str) -> str:
    """A usefulness figure in AA points (the gain signed), ``-`` when the run has none."""
    if key not in metrics:
        return "-"
    return f"{100 * metrics[key]:{'+' if key.endswith('gain') else ''}.1f}"


def _row(cells: list[str]) -> str:
    """One markdown table row, every cell escaped (a ``|`` in a failed gate's line would split it)."""
    return "| " + " | ".join(md_escape(c) for c in cells) + " |"


if __name__ == "__main__":
    raise SystemExit(main())
