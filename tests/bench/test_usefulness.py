"""The usefulness figure beside the health gate (issue 32, item 6): every pretraining run of a trained
method records its validation linear-probe AA against its own random init, on the run, in the weights
record and on the seed runs of its weights; tables mark a method whose weights scored below their
init, and keep it."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest
import torch

from bench.cli.run import report
from bench.harness.pretraining import USEFULNESS_TAG, PretrainSpec, load_or_pretrain, usefulness_of
from bench.harness.runner import CellResult, CellSpec, run_seed
from bench.harness.tracking import setup_tracking
from bench.harness.usefulness import DRAW_SEED, SAMPLES, VAL_FRACTION, usefulness_draw, validation_aa
from bench.models.backbones import build_backbone
from bench.protocols.budget import draw_budget
from bench.report.aggregate import long_form, long_from_csv
from bench.report.table import build_tables, render
from datasets import Dataset
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401
from tests.bench.test_aggregate import make_runs
from tests.bench.test_pretraining import Nudge  # noqa: F401 (registers test-nudge)
from tests.bench.test_table import _row, assert_rectangular

CPU = torch.device("cpu")
REPO = Path(__file__).resolve().parents[2]


def _script(name: str) -> ModuleType:
    """A script of ``scripts/`` imported as a module (they are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _pretrain_run(method: str):
    client, exp_id = setup_tracking()
    (run,) = client.search_runs(
        [exp_id], f"tags.`bench.kind` = 'pretrain' and tags.`bench.method` = '{method}'"
    )
    return run


@pytest.mark.usefixtures("mlflow_store")
def test_a_trained_run_records_its_usefulness_against_its_own_init_and_random_none(
    tiny_dataset: Dataset, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    spec = PretrainSpec("test-nudge", "tiny", seed=4, method_overrides=(("lr", 5.0),))
    model, record = load_or_pretrain(spec, tiny_dataset, CPU, progress=False)
    metrics = _pretrain_run("test-nudge").data.metrics
    val, init, gain = (metrics[f"usefulness.{k}"] for k in ("val_AA", "init_val_AA", "gain"))
    assert 0 <= val <= 1 and 0 <= init <= 1 and gain == pytest.approx(val - init)
    assert model.training  # measuring left the backbone's mode alone

    # the figures are the probe's on the fixed draw: the trained weights, and the same seed's init
    budget = usefulness_draw(tiny_dataset)
    assert budget.val_label.size and set(budget.val_patch) <= set(budget.val_patches)  # validation only
    evaluation = draw_budget(
        tiny_dataset.labelled.labels,
        fingerprint=tiny_dataset.fingerprint,
        class_names=tiny_dataset.classes.names,
        samples=SAMPLES,
        seed=DRAW_SEED,
    )
    assert budget.key != evaluation.key  # no evaluation budget is this draw (its own validation share)
    assert validation_aa(model, tiny_dataset, budget, CPU) == pytest.approx(val, abs=1e-6)
    torch.manual_seed(4)
    fresh = build_backbone("tiny", in_chans=len(tiny_dataset.band_names))
    assert validation_aa(fresh, tiny_dataset, budget, CPU) == pytest.approx(init, abs=1e-6)
    assert val != init  # lr 5 moved the stem: the two backbones differ on these pixels

    # in the weights record (inside its digest) and on the seed runs' tag, read back from the cache
    sidecar = json.loads(Path(record.path).with_suffix(".json").read_text())
    assert sidecar["usefulness"]["val_AA"] == val and sidecar["usefulness"]["init_val_AA"] == init
    assert f"validation fraction {VAL_FRACTION}" in sidecar["usefulness"]["draw"]
    tag = usefulness_of(model)
    assert tag is not None and tag.startswith("below init:" if gain < 0 else "not below init:")
    assert f"pretraining test-nudge seed 4 validation linear AA {100 * val:.1f} vs {100 * init:.1f}" in tag
    cached, again = load_or_pretrain(spec, tiny_dataset, CPU, progress=False)
    assert again.cached and usefulness_of(cached) == tag

    baseline, _ = load_or_pretrain(PretrainSpec("random", "tiny", seed=4), tiny_dataset, CPU, progress=False)
    assert usefulness_of(baseline) is None
    assert not [k for k in _pretrain_run("random").data.metrics if k.startswith("usefulness.")]

    # scripts/pretrain_health.py lists the figure beside the gate's, "-" where there is none
    monkeypatch.setattr(sys, "argv", ["pretrain_health.py"])
    assert _script("pretrain_health").main() == 0
    lines = capsys.readouterr().out.splitlines()
    assert "| seed | health | val AA | init val AA | gain | seconds | commit |" in lines
    trained = lines[lines.index("test-nudge") + 4]
    assert trained.startswith(f"| 4 | passed | {100 * val:.1f} | {100 * init:.1f} | {100 * gain:+.1f} |")
    assert lines[lines.index("random") + 4].startswith("| 4 | passed | - | - | - |")


@pytest.mark.usefixtures("mlflow_store")
def test_seed_runs_carry_the_figure_of_their_weights(tiny_dataset: Dataset) -> None:
    done = {}
    for method in ("test-nudge", "random"):
        spec = CellSpec(method, 20, protocol_overrides={"max_iter": 5})
        done[method] = (spec, run_seed(spec, 0, tiny_dataset, CPU, progress=False))
    client, exp_id = setup_tracking()
    seeds = {
        run.data.tags["bench.method"]: run.data.tags
        for run in client.search_runs([exp_id], "tags.`bench.kind` = 'seed'")
    }
    metrics = _pretrain_run("test-nudge").data.metrics
    assert f"AA {100 * metrics['usefulness.val_AA']:.1f} vs" in seeds["test-nudge"][USEFULNESS_TAG]
    assert USEFULNESS_TAG not in seeds["random"]

    # `bench run` prints the figure under its table, and marks the column when below the init
    spec, seed = done["test-nudge"]
    _, record = load_or_pretrain(spec.for_seed(0).pretrain_spec(), tiny_dataset, CPU, progress=False)
    cell = CellResult(spec, "key", "parent", [seed], record)
    printed = report(cell, tuple(tiny_dataset.classes.names))
    val, init = 100 * metrics["usefulness.val_AA"], 100 * metrics["usefulness.init_val_AA"]
    assert f"usefulness: validation linear AA {val:.1f} vs {init:.1f} for its own random init" in printed
    assert ("†" in printed) == (val < init)


FIGURES = "validation linear AA {} for its own random init ({} points)"
BELOW = "below init: pretraining simsiam seed 1 " + FIGURES.format("29.3 vs 38.6", "-9.3")
ABOVE = "not below init: pretraining simsiam seed 0 " + FIGURES.format("41.0 vs 38.1", "+2.9")


def _runs() -> pd.DataFrame:
    """SimSiam and the Baseline, 3 seeds on 2 pretraining runs (seed mod 2): run 1 scored below its init."""
    runs = make_runs(methods=("random", "simsiam"), budgets=(200,))
    simsiam = runs["method"] == "simsiam"
    runs.loc[simsiam, "pretrain_usefulness"] = ABOVE
    runs.loc[simsiam & (runs["pretrain_seed"] == 1), "pretrain_usefulness"] = BELOW
    return runs


def test_a_table_marks_a_method_whose_weights_scored_below_their_init(tmp_path: Path) -> None:
    long = long_form(_runs())
    text = render(build_tables(long), "md")
    assert_rectangular(text)
    aa = _row(text, "AA")
    assert aa[2].endswith("†") and not aa[1].endswith("†")  # SimSiam marked, the Baseline not
    assert aa[2].removesuffix("†").strip()  # ... and its scores are still shown: kept, not dropped
    note = (
        "† SimSiam: 1 of 3 seed runs use weights from a pretraining that scores below its own random "
        "init on validation pixels (pretraining simsiam seed 1 validation linear AA 29.3 vs 38.6"
    )
    assert text.count(note) == 1 and "not a gate" in text and "seed 0 validation" not in text
    assert r"$^\dagger$" in render(build_tables(long), "latex")
    assert "†" in render(build_tables(long), "summary")
    tidy = pd.read_csv(io.StringIO(render(build_tables(long), "csv")), keep_default_na=False)
    assert set(tidy.loc[tidy["method"] == "simsiam", "usefulness"]) == {
        "1 of 3 seed runs: pretraining simsiam seed 1 validation linear AA 29.3 vs 38.6 for its own "
        "random init (-9.3 points)"
    }
    assert set(tidy.loc[tidy["method"] == "random", "usefulness"]) == {""}

    path = tmp_path / "long.csv"  # the long CSV keeps the figure: `bench table --from` marks the same
    long.to_csv(path, index=False)
    assert render(build_tables(long_from_csv(path)), "md") == text

    above = _runs().replace({"pretrain_usefulness": {BELOW: ABOVE}})
    assert "†" not in render(build_tables(long_form(above)), "md")  # at or above its init: no mark
