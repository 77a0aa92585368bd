"""GPU acceptance (DESIGN 8): the report's shape, its smoke run, and the tests marked ``cuda``.

The ``cuda`` tests are the ones the acceptance run executes on the GPU (``pytest -m cuda``); they
skip without a CUDA device. They exercise what only runs there: every trained method's step, both
protocols end to end and the perf backbone stage's peak-memory counter, all on the device with
bf16 autocast and channels_last (``bench.core.device``).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from bench.perf.acceptance import SLACK_ENV, cuda_test_files, junit_cases
from bench.perf.acceptance_report import (
    BACKBONES,
    GOALS,
    SECTIONS,
    build_markdown,
    finish,
    grid_estimate,
    lean_stem_note,
    report_json,
)

REPO = Path(__file__).resolve().parents[2]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _row(measure: str, value: float, unit: str = "ratio", stage: str = "x") -> dict[str, object]:
    return {"stage": stage, "measure": measure, "value": value, "unit": unit}


def _cell(method: str, pretrain_s: float | None, protocols: dict[str, tuple[float, float]], **steps: int):
    cell: dict[str, object] = {
        "method": method,
        "protocols": [
            {"protocol": p, "fit_s": f, "stream_s": s, "AA": 0.5} for p, (f, s) in protocols.items()
        ],
        **steps,
    }
    if pretrain_s is not None:
        cell["pretrain_s"] = pretrain_s
    return cell


def _results() -> dict[str, object]:
    """A partial run: one backbone measured, one step timed out, cells for the grid's methods."""
    both = {"linear": (1.0, 0.5), "finetune": (2.0, 0.5)}
    return {
        "mode": "gpu",
        "wall_s": 400.0,
        "environment": {"gpu": "NVIDIA H200", "torch": "2.11.0"},
        "steps": [
            {"name": "perf-backbone-resnet18", "status": "ok", "seconds": 20.0, "limit_s": 90.0},
            {
                "name": "perf-backbone-tiny",
                "status": "timeout",
                "seconds": 90.0,
                "limit_s": 90.0,
                "error": "ran past 90 s",
            },
        ],
        "perf": {
            "backbone": {"resnet18": [_row("project / standard throughput (goal >= 0.5)", 0.7)]},
            "pretrain": {
                "resnet18": [_row("simsiam harness / bare", 0.95), _row("core harness / bare", 0.8)]
            },
            "train": {},
        },
        "tests": {"cuda": [{"nodeid": "tests/a.py::t", "outcome": "passed", "seconds": 1.0}]},
        "cells": {
            "subset": {"labelled": 256, "test": 256, "size": 256},
            "preset_keys_differ": True,
            "cells": [
                _cell("random", 0.5, both, finetune_run=250, finetune_full=1000),
                _cell(
                    "simsiam",
                    10.0,
                    both,
                    pretrain_run=300,
                    pretrain_full=3000,
                    finetune_run=250,
                    finetune_full=1000,
                ),
                _cell(
                    "sscl",
                    6.0,
                    both,
                    pretrain_run=300,
                    pretrain_full=3000,
                    finetune_run=250,
                    finetune_full=1000,
                ),
                _cell("raw", None, {"raw": (0.2, 0.1)}),
                _cell("rf", None, {"rf": (3.0, 1.0)}),
            ],
        },
    }


def test_report_has_every_section_and_every_goal_line_whatever_ran() -> None:
    results = finish(_results())
    md = build_markdown(results)
    for _, title in SECTIONS:
        assert f"\n## {title}\n" in md
    for backbone in BACKBONES:  # per-backbone tables, measured or not
        assert f"### {backbone}" in md
    assert "step perf-backbone-tiny: timeout (ran past 90 s)" in md  # why a table is empty
    goal_table = md.split("## DESIGN 8 goals")[1]
    for goal in GOALS:
        assert f"| {goal.text.replace('|', chr(92) + '|')} |" in goal_table
    verdicts = {g["key"]: g["met"] for g in results["goals"]}
    assert verdicts["harness-pretrain"] is False  # core 0.8 < 0.9
    assert verdicts["backbone-throughput"] is None  # tiny and resnet50 not measured: no verdict
    assert verdicts["presets"] is True and verdicts["cuda-tests"] is True
    data = json.loads(report_json(results))  # strict JSON (no NaN)
    assert [g["key"] for g in data["goals"]] == [g.key for g in GOALS]


def test_lean_stem_note_says_when_the_plain_stem_would_do() -> None:
    rows = [
        _row("standard resnet18 (trunk + FPN-lite) peak memory", 2.0, "GiB"),
        _row("project resnet18, plain stem (lean_stem=False) peak memory", 6.0, "GiB"),
        _row("lean / plain stem throughput", 0.9),
        _row("lean / plain stem peak memory", 0.6),
    ]
    assert "lean_stem = False" in lean_stem_note(rows)  # plain: 3x <= 4x, and 10% faster
    rows[1]["value"] = 10.0  # plain: 5x, over the goal: keep the lean stem
    assert "lean_stem = False" not in lean_stem_note(rows) and "5.00 x" in lean_stem_note(rows)


def test_empty_results_still_give_the_whole_report() -> None:
    md = build_markdown(finish({"mode": "smoke"}))
    assert all(f"## {title}" in md for _, title in SECTIONS)
    assert md.count("| n/a |") >= len(GOALS) - 1  # every goal unmeasured (the wall time is n/a too)


def test_grid_estimate_shows_its_arithmetic() -> None:
    est = grid_estimate(_results())
    # pretraining: simsiam 10 s x 3000/300 x 3 seeds, sscl 6 s x 10 x 3, random 0.5 x 3, imagenet as random
    pretraining = 10 * 10 * 3 + 6 * 10 * 3 + 0.5 * 3 * 2
    scale = 5128 / 256
    deep = 4 * 25 * ((1.0 + 0.5 * scale) + (2.0 * 1000 / 250 + 0.5 * scale))
    refs = 25 * ((0.2 + 0.1 * scale) + (3.0 + 1.0 * scale))
    assert math.isclose(est["total_s"], pretraining + deep + refs, rel_tol=1e-9)
    assert any("imagenet linear (from random" in line for line in est["lines"])
    assert any("x 3000/300 steps" in line for line in est["lines"])
    assert est["lines"][-1].startswith("total:")


def test_grid_estimate_without_a_method_is_incomplete_not_low() -> None:
    results = _results()
    results["cells"]["cells"] = [c for c in results["cells"]["cells"] if c["method"] != "sscl"]
    est = grid_estimate(results)
    assert math.isnan(est["total_s"]) and est["missing"] == ["sscl"]
    goal = next(g for g in finish(results)["goals"] if g["key"] == "grid-hour")
    assert goal["met"] is None and "missing sscl" in goal["measured"]


def test_junit_cases_read_outcomes_and_times(tmp_path: Path) -> None:
    xml = tmp_path / "j.xml"
    xml.write_text(
        '<testsuites><testsuite><testcase classname="tests.bench.test_x" name="test_a" time="1.5"/>'
        '<testcase classname="tests.bench.test_x" name="test_b" time="0.1"><failure message="x"/></testcase>'
        '<testcase classname="tests.bench.test_x" name="test_c" time="0"><skipped/></testcase>'
        "</testsuite></testsuites>"
    )
    cases = junit_cases(xml)
    assert [(c["nodeid"], c["outcome"]) for c in cases] == [
        ("tests/bench/test_x.py::test_a", "passed"),
        ("tests/bench/test_x.py::test_b", "failed"),
        ("tests/bench/test_x.py::test_c", "skipped"),
    ]
    assert cases[0]["seconds"] == 1.5


def test_cuda_tests_are_collected_from_the_files_that_mark_them() -> None:
    files = cuda_test_files(REPO / "tests")
    assert str(Path(__file__)) in files and str(REPO / "tests" / "bench" / "test_backbones.py") in files
    assert all("mark.cuda" in Path(f).read_text() for f in files)


@pytest.mark.slow
def test_smoke_run_writes_the_whole_report(tmp_path: Path) -> None:
    """``scripts/gpu_acceptance.sh --smoke`` runs every step on the CPU (about 1 minute on 2 quiet
    cores; 3 minutes at load 10): every step ends ok, and the report has every section and goal.
    Its limits are stretched (``BENCH_ACCEPTANCE_SLACK``) so that a loaded machine checks the
    same thing; the wall time is printed, not asserted."""
    out = tmp_path / "out"
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "gpu_acceptance.sh"), "--smoke", str(out)],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "PYTHON": sys.executable, SLACK_ENV: "3"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    md = (out / "report.md").read_text()
    data = json.loads((out / "report.json").read_text())
    assert all(f"## {title}" in md for _, title in SECTIONS)
    assert [g["key"] for g in data["goals"]] == [g.key for g in GOALS]
    steps = {s["name"]: s["status"] for s in data["steps"]}
    not_ok = {k: v for k, v in steps.items() if not v.startswith("ok")}
    assert not not_ok, not_ok
    assert data["perf"]["backbone"].keys() == set(BACKBONES)
    timed = {c["method"] for c in data["cells"]["cells"] if c.get("protocols")}
    assert {"random", "simsiam", "sscl", "raw", "rf"} <= timed
    print(f"smoke run: {data['wall_s']:.0f} s")


# --------------------------------------------------------------------------------------------
# Tests marked cuda: run by the acceptance script on the GPU, skipped elsewhere.


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("method", ["simsiam", "unifeat", "core", "sscl"])
def test_every_trained_method_steps_on_cuda(method: str, tiny_dataset) -> None:
    from bench.core.device import to_device
    from bench.models.backbones import build_backbone
    from methods import PretrainContext, get_method

    device = torch.device("cuda")
    cls = get_method(method)
    small = {"steps": 3, "batch_size": 4, "crop": 16}
    overrides = {f"{stage}.{k}": v for stage in ("unifeat", "core") for k, v in small.items()}
    cfg = cls.config_from_dict(overrides if method == "sscl" else small)
    torch.manual_seed(0)
    backbone = to_device(build_backbone("tiny", 15), device)
    before = {k: v.detach().clone() for k, v in backbone.state_dict().items()}
    logged: list[dict[str, float]] = []
    ctx = PretrainContext(device=device, seed=0, progress=False, log_metrics=lambda m, s: logged.append(m))
    cls(cfg).pretrain(backbone, tiny_dataset.labelled.images, ctx)
    changed = [k for k, v in backbone.state_dict().items() if not torch.equal(v, before[k])]
    assert changed, "no parameter moved"
    assert all(p.device.type == "cuda" for p in backbone.parameters())
    assert all(math.isfinite(v) for m in logged for v in m.values() if isinstance(v, float))


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("protocol", ["linear", "finetune"])
def test_protocols_score_every_test_pixel_on_cuda(protocol: str, tiny_dataset) -> None:
    from bench.models.backbones import build_backbone
    from bench.protocols.budget import draw_budget
    from bench.protocols.registry import get_protocol

    ds = tiny_dataset
    budget = draw_budget(
        ds.labelled.labels, fingerprint=ds.fingerprint, class_names=ds.classes.names, samples=10
    )
    proto = get_protocol(protocol)
    cfg = (
        proto.Config()
        if protocol == "linear"
        else proto.Config(steps=20, batch_size=4, crop=16, eval_every=10)
    )
    torch.manual_seed(0)
    cm = proto.evaluate(build_backbone("tiny", 15), ds, budget, cfg, seed=0, device=torch.device("cuda"),
                        progress=False)  # fmt: skip
    valid = np.isin(np.asarray(ds.test.labels), np.arange(ds.classes.num_classes)).sum()
    assert cm.sum() == valid


@pytest.mark.cuda
@needs_cuda
def test_perf_backbone_stage_counts_peak_memory_on_cuda() -> None:
    from bench.perf.backbone import backbone_stage

    rows = backbone_stage(SimpleNamespace(device="cuda", backbone="tiny", crop=64, batch=4, steps=2))
    peaks = [r.value for r in rows if r.unit == "GiB"]
    assert len(peaks) == 4 and all(v > 0 for v in peaks)  # project, standard, trunk, plain stem
    ratio = next(r.value for r in rows if r.measure.startswith("project / standard peak memory"))
    assert math.isfinite(ratio)
