"""Methods that cannot run here: found before any work, reported once, kept visible in the tables.

A sweep that includes ``imagenet`` on the ``tiny`` backbone, or on a machine without ImageNet
weights, used to fail unit by unit (18 identical failures in a small sweep), and the table then
dropped the column, as if the method had never been asked for. Instead:

1. :func:`screen` asks every method of the grid :meth:`methods.registry.PretrainMethod.unavailable_reason`
   for the sweep's backbone and weights (cheap checks, before the dataset is even loaded), and
   returns the runnable units and one reason per method left out;
2. :func:`record_unavailable` writes one MLflow run per (method, backbone, dataset) that could not
   run (``bench.kind=unavailable``, the reason in ``bench.reason``), found-or-created like a cell's
   parent, so re-running the sweep adds nothing;
3. :func:`recorded_unavailable` reads them back for ``bench table``, which shows the method's
   column as ``n/a (reason)`` in every table of that dataset and backbone where it has no results.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from bench.core.provenance import stable_hash

if TYPE_CHECKING:
    from bench.harness.sweep import Unit

KIND = "unavailable"
_KEY_TAG = "bench.unavailable_key"


def unavailable_methods(methods: Sequence[str], backbone: str, weights: Path | None) -> dict[str, str]:
    """``{method: reason}`` for each of ``methods`` that cannot run with ``backbone`` and ``weights``.

    An unknown method name is not judged here: the grid reports it with the registry's message.
    """
    from methods import get_method

    reasons = {}
    for method in dict.fromkeys(methods):
        try:
            cls = get_method(method)
        except KeyError:
            continue
        reason = cls.unavailable_reason(backbone, weights)
        if reason:
            reasons[method] = reason
    return reasons


def screen(units: Sequence[Unit]) -> tuple[list[Unit], dict[str, str]]:
    """The units whose method can run, and ``{method: reason}`` for the methods left out."""
    reasons: dict[str, str] = {}
    for backbone, weights in dict.fromkeys((u.spec.backbone, u.spec.weights) for u in units):
        methods = [u.spec.method for u in units if (u.spec.backbone, u.spec.weights) == (backbone, weights)]
        reasons |= unavailable_methods(methods, backbone, weights)
    return [u for u in units if u.spec.method not in reasons], reasons


def record_unavailable(method: str, backbone: str, dataset_fingerprint: str, reason: str) -> str:
    """One finished MLflow run saying ``method`` could not run on ``backbone`` for this dataset."""
    from bench.harness import tracking

    key = stable_hash(
        {"method": method, "backbone": backbone, "dataset": dataset_fingerprint, "reason": reason}
    )
    tags = {
        "bench.method": method,
        "bench.backbone": backbone,
        "bench.dataset_fingerprint": dataset_fingerprint,
        "bench.reason": reason,
    }
    run_id = tracking.parent_run(KIND, _KEY_TAG, key, f"{method} unavailable on {backbone}", tags=tags)
    client, _ = tracking.setup_tracking()
    client.set_terminated(run_id, "FINISHED")
    return run_id


def recorded_unavailable(experiment: str | None = None) -> dict[tuple[str, str], dict[str, str]]:
    """``{(dataset fingerprint, backbone): {method: reason}}`` from the records, the latest reason
    winning when a method was recorded more than once."""
    import mlflow

    from bench.harness import tracking

    _, exp_id = tracking.setup_tracking(experiment)
    frame = mlflow.search_runs(
        [exp_id],
        filter_string=f"tags.`bench.kind` = '{KIND}'",
        output_format="pandas",
        order_by=["start_time ASC"],
    )
    found: dict[tuple[str, str], dict[str, str]] = {}
    for _, row in frame.iterrows():
        where = (str(row["tags.bench.dataset_fingerprint"]), str(row["tags.bench.backbone"]))
        found.setdefault(where, {})[str(row["tags.bench.method"])] = str(row["tags.bench.reason"])
    return found
