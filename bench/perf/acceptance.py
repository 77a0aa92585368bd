"""GPU acceptance (DESIGN 8): every check of a GPU in one prepared run, one report at the end.

``scripts/gpu_acceptance.sh OUTDIR`` (after installing the carried wheels) runs
``python -m bench.perf.acceptance OUTDIR``; ``--smoke`` runs the same steps on the CPU at tiny
sizes. Why one run: a GPU is lent here now and then for about 15 minutes, so the whole check must
be ready to go and finish in under 8 minutes, and whatever fails must still leave a report.

Each step is a subprocess with its own time limit (a CUDA error, a hang or an out-of-memory in
one step costs that step only), run in order of importance under one overall deadline: a step
that would start too late is recorded as skipped. What the steps write (JSON perf rows, junit XML,
the timed cells) is collected into one dict, and :mod:`bench.perf.acceptance_report` turns it into
``OUTDIR/report.md`` and ``OUTDIR/report.json``, rewritten after every step. ``OUTDIR/steps.log``
holds each step's command and output tail. Scratch data (the synthetic subset, caches, the MLflow
store) goes to a temporary folder outside OUTDIR (``--work`` to choose it), since the device tool
brings back at most 8 files.

GPU sizes: ``bench perf`` at 256 px, batch 64 (bf16 autocast and channels_last are what
``--device cuda`` does) for tiny, resnet18 and resnet50; a synthetic subset of
:data:`GPU.labelled` + :data:`GPU.test` patches of 256 px generated on every core (the labelled
pool feeds pretraining and the budgets, the test split the streamed evaluation, scaled to
DFC2020's 5128 test patches in the grid estimate); one cell per method and protocol under
``--preset paper`` (:mod:`bench.perf.paper_cells`).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.perf.acceptance_report import BACKBONES, build_markdown, finish, report_json

#: The project's stack, as the environment section lists it (distribution names).
STACK = (
    "torch",
    "torchvision",
    "timm",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "matplotlib",
    "lightly",
    "rasterio",
    "mlflow",
    "mlflow-skinny",
    "optuna",
    "sqlalchemy",
    "alembic",
    "filelock",
    "tqdm",
)

#: Modules the harness imports from the carried wheels (and timm from the image), checked first.
IMPORTS = ("lightly.loss", "lightly.models.modules", "rasterio", "mlflow", "optuna", "sqlalchemy", "timm")

#: Multiplies the overall deadline and every step's limit (default 1): for a loaded machine.
SLACK_ENV = "BENCH_ACCEPTANCE_SLACK"

#: Tests that ran past 90 s on a GPU machine before (issue 12): timed on their own every run.
WATCHED_TESTS = (
    "tests/methods/test_simsiam.py::test_simsiam_loss_decreases_and_logs_collapse_monitor",
    "tests/methods/test_sscl.py::test_unifeat_trains_only_the_stem_and_loss_decreases",
)


@dataclass(frozen=True)
class Plan:
    """Sizes and limits of one mode."""

    device: str
    deadline_s: float  # for all steps together (the report is written after each)
    crop: int  # bench perf --crop for every backbone stage
    batch: int
    stage_crop: int  # bench perf --crop/--batch for the pretrain and train stages
    stage_batch: int
    labelled: int  # the synthetic subset
    test: int
    pool: int  # its unlabelled SEN12MS-layout pretraining pool (the default pretraining data)
    size: int
    seed: int
    cell_samples: int
    cell_fraction: float
    cell_finetune_fraction: float
    cell_caps: tuple[int, int] | None  # (crop, batch) caps for the cells (smoke)
    perf_steps: int | None  # bench perf --steps (None: each stage's default, 20 on CUDA)
    limits: dict[str, float] = field(default_factory=dict)


GPU = Plan(
    device="cuda",
    deadline_s=450.0,
    crop=256,
    batch=64,
    stage_crop=256,
    stage_batch=64,
    labelled=256,
    test=128,
    pool=256,
    size=256,
    seed=0,
    cell_samples=1000,
    cell_fraction=0.1,
    cell_finetune_fraction=0.25,
    cell_caps=None,
    perf_steps=None,
    limits={"env": 30, "synth": 120, "backbone": 90, "pretrain": 90, "train": 75, "data": 60,
            "tests-cuda": 120, "tests-watch": 90, "paper-cells": 200},
)  # fmt: skip

SMOKE = Plan(
    device="cpu",
    deadline_s=170.0,
    crop=32,
    batch=2,
    stage_crop=16,
    stage_batch=4,
    labelled=12,
    test=8,
    pool=12,
    size=32,
    seed=19,  # tests/conftest.py's tiny set: both splits hold all 8 evaluated classes
    cell_samples=20,
    cell_fraction=0.001,
    cell_finetune_fraction=0.002,
    cell_caps=(16, 4),
    perf_steps=2,
    limits={"env": 30, "synth": 40, "backbone": 40, "pretrain": 40, "train": 40, "data": 30,
            "tests-cuda": 60, "tests-watch": 60, "paper-cells": 90},
)  # fmt: skip


def _tail(text: str, n: int = 3000) -> str:
    return text[-n:]


def _last_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:300] if lines else ""


class Acceptance:
    """Runs the steps, collects the results, rewrites the report after every step."""

    def __init__(self, out: Path, work: Path, plan: Plan, smoke: bool) -> None:
        self.out, self.work, self.plan, self.smoke = out, work, plan, smoke
        self.start = time.perf_counter()
        self.results: dict[str, Any] = {
            "mode": "smoke" if smoke else "gpu",
            "started": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "command": " ".join(["scripts/gpu_acceptance.sh", *(["--smoke"] if smoke else []), str(out)]),
            "plan": {k: v for k, v in vars(plan).items() if k != "limits"},
            "steps": [],
            "perf": {"backbone": {}, "pretrain": {}, "train": {}},
            "tests": {},
        }
        self.subset = work / "subset"
        self.env = {
            **os.environ,
            "BENCH_HOME": str(work / "home"),
            "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
            "PYTHONUNBUFFERED": "1",
        }
        self.log = (out / "steps.log").open("w")

    # -- plumbing -------------------------------------------------------------------------------

    def remaining(self) -> float:
        return self.plan.deadline_s - (time.perf_counter() - self.start)

    def run(self, name: str, kind: str | float, argv: list[str]) -> subprocess.CompletedProcess[str] | None:
        """Run one step under min(its limit, what the deadline leaves); record its status."""
        limit = min(self.plan.limits[kind] if isinstance(kind, str) else kind, self.remaining() - 2)
        step: dict[str, Any] = {"name": name, "status": "skipped", "seconds": 0.0, "limit_s": limit}
        self.results["steps"].append(step)
        if limit < 5:
            step["error"] = "out of time (overall deadline)"
            self.write()
            return None
        self.log.write(f"\n=== {name} (limit {limit:.0f} s)\n$ {shlex.join(argv)}\n")
        self.log.flush()
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                argv, env=self.env, capture_output=True, text=True, timeout=limit, cwd=Path.cwd()
            )
        except subprocess.TimeoutExpired as err:
            step.update(status="timeout", seconds=time.perf_counter() - started)
            step["error"] = f"ran past {limit:.0f} s"
            output = (err.stdout or b"").decode() if isinstance(err.stdout, bytes) else (err.stdout or "")
            self.log.write(_tail(output) + "\n[timed out]\n")
            self.write()
            return None
        step["seconds"] = time.perf_counter() - started
        output = proc.stdout + proc.stderr
        self.log.write(_tail(output) + f"\n[exit {proc.returncode}]\n")
        self.log.flush()
        if proc.returncode == 0:
            step["status"] = "ok"
        else:
            step["status"] = "failed"
            step["error"] = _last_line(proc.stderr) or _last_line(proc.stdout) or f"exit {proc.returncode}"
        return proc

    def write(self) -> None:
        """Rewrite report.md and report.json from what is collected so far."""
        self.results["wall_s"] = time.perf_counter() - self.start + self.results.get("wheels_s", 0.0)
        done = finish(self.results)
        (self.out / "report.json").write_text(report_json(done) + "\n")
        (self.out / "report.md").write_text(build_markdown(done))

    # -- steps ----------------------------------------------------------------------------------

    def environment(self) -> None:
        path = self.work / "env.json"
        self.run("env", "env", [sys.executable, "-m", "bench.perf.acceptance", "--env-json", str(path)])
        env = json.loads(path.read_text()) if path.exists() else {}
        wheels = self.out / "wheels.status"
        if wheels.exists():  # written by scripts/gpu_acceptance.sh: "<rc> <seconds> <count>"
            rc, seconds, count = [*wheels.read_text().split(), "?", "0", "?"][:3]
            env["carried wheels"] = f"{count} installed with --no-index (exit {rc}, {float(seconds):.0f} s)"
            self.results["wheels_s"] = float(seconds)
        self.results["environment"] = env
        self.write()

    def synth(self) -> None:
        p = self.plan
        workers = 1 if self.smoke else os.cpu_count() or 1
        started = time.perf_counter()
        proc = self.run(
            "synth",
            "synth",
            [sys.executable, "-m", "bench", "data", "synth", "--out", str(self.subset),
             "--train", str(p.labelled), "--test", str(p.test), "--pretrain", str(p.pool),
             "--size", str(p.size), "--seed", str(p.seed), "--workers", str(workers)],
        )  # fmt: skip
        if proc is not None and proc.returncode == 0:
            # decode once into the cache here, so that no later step's time includes it
            self.run(
                "cache", "synth", [sys.executable, "-m", "bench", "data", "cache", "--data", str(self.subset)]
            )
        self.results["subset"] = {
            "labelled": p.labelled,
            "test": p.test,
            "pool": p.pool,
            "size": p.size,
            "workers": workers,
            "seconds": time.perf_counter() - started,
        }
        self.write()

    def perf(self, *jobs: tuple[str, str | None]) -> None:
        """``bench perf`` stages ((stage, backbone) each) in one worker process (:func:`perf_jobs`):
        the GPU run gives each its own process and limit, the smoke run batches them to save
        interpreter start-ups. One step line per job, whatever happened to the process."""
        p = self.plan
        specs: list[dict[str, Any]] = []
        for stage, backbone in jobs:
            name = f"perf-{stage}" + (f"-{backbone}" if backbone else "")
            crop, batch = (p.crop, p.batch) if stage == "backbone" else (p.stage_crop, p.stage_batch)
            specs.append(
                {
                    "name": name,
                    "stage": stage,
                    "backbone": backbone or "tiny",
                    "device": p.device,
                    "crop": None if stage == "data" else crop,
                    "batch": None if stage == "data" else batch,
                    "steps": p.perf_steps,
                    "data": None if stage == "backbone" else str(self.subset),
                    "json": str(self.work / f"{name}.json"),
                }
            )
        path = self.work / f"jobs-{specs[0]['name']}.json"
        path.write_text(json.dumps(specs))
        limit = sum(p.limits[stage] for stage, _ in jobs)
        label = str(specs[0]["name"]) if len(specs) == 1 else f"worker: {len(specs)} perf jobs in one process"
        argv = [sys.executable, "-m", "bench.perf.acceptance", "--perf-jobs", str(path)]
        self.run(label, limit, argv)
        for spec, (stage, backbone) in zip(specs, jobs, strict=True):
            out = Path(spec["json"])
            done = json.loads(out.read_text()) if out.exists() else None
            if len(specs) == 1:
                step = self.results["steps"][-1]
            else:
                step = {"name": spec["name"], "status": "skipped", "seconds": 0.0, "limit_s": p.limits[stage]}
                self.results["steps"].append(step)
            if done is None:  # one job: its process's status stands (timeout, failed, skipped)
                if len(specs) > 1 or step["status"] == "ok":
                    step.update(status="not reached", error="the worker stopped before this job")
                continue
            step["seconds"] = done["seconds"]
            if done.get("error"):
                step.update(status="failed", error=done["error"])
                continue
            step.update(status="ok")
            step.pop("error", None)
            if backbone:
                self.results["perf"][stage][backbone] = done["rows"]
            else:
                self.results["perf"][stage] = done["rows"]
        self.write()

    def tests(self, group: str) -> None:
        xml = self.work / f"junit-{group}.xml"
        selection = ["-m", "cuda", *cuda_test_files()] if group == "cuda" else list(WATCHED_TESTS)
        argv = [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--junitxml={xml}",
            *selection,
        ]
        proc = self.run(f"tests-{group}", f"tests-{group}", argv)
        if proc is not None and proc.returncode == 5:  # pytest: no tests collected
            self.results["steps"][-1].update(status="ok", error="no tests collected")
        elif proc is not None and proc.returncode == 1:  # tests failed: the table says which
            self.results["steps"][-1]["status"] = "ok (tests failed)"
        self.results["tests"][group] = junit_cases(xml) if xml.exists() else []
        self.write()

    def cells(self) -> None:
        p = self.plan
        path = self.work / "cells.json"
        argv = [
            sys.executable, "-m", "bench.perf.paper_cells", "--data", str(self.subset), "--out", str(path),
            "--device", p.device, "--backbone", "tiny" if self.smoke else "resnet18",
            "--samples", str(p.cell_samples), "--fraction", str(p.cell_fraction),
            "--finetune-fraction", str(p.cell_finetune_fraction),
        ]  # fmt: skip
        if p.cell_caps:
            argv += ["--cap-crop", str(p.cell_caps[0]), "--cap-batch", str(p.cell_caps[1])]
        self.run("paper-cells", "paper-cells", argv)
        if path.exists():  # partial results survive a timeout
            self.results["cells"] = json.loads(path.read_text())
        self.write()

    def all(self) -> dict[str, Any]:
        """Every step, most important first (the deadline skips the tail, not the head)."""
        others = [b for b in BACKBONES if b != "resnet18"]
        first = [("backbone", "resnet18")]
        then: list[tuple[str, str | None]] = [("pretrain", "resnet18"), ("train", "resnet18")]
        rest: list[tuple[str, str | None]] = [("data", None), *(("backbone", b) for b in others)]
        rest += [(stage, b) for b in others for stage in ("pretrain", "train")]
        self.environment()
        self.synth()
        if self.smoke:  # one worker process for the other perf jobs: start-ups dominate at tiny
            self.perf(*first)  # sizes; the first one alone, as the GPU run runs every job
            self.perf(*then, *rest)
            self.cells()
            self.tests("cuda")
        else:
            self.perf(*first)
            self.cells()
            for job in then:
                self.perf(job)
            self.tests("cuda")
            for job in rest:
                self.perf(job)
        self.tests("watch")
        self.write()
        self.log.close()
        return finish(self.results)


def perf_jobs(path: Path) -> None:
    """Run the ``bench perf`` stages that ``path`` lists, each into its JSON file (rows and seconds,
    or a one-line error): the same stage functions ``python -m bench perf`` runs."""
    from bench.core.device import use_thread_share
    from bench.perf.stages import run_stages

    use_thread_share()
    for job in json.loads(path.read_text()):
        importlib.import_module(f"bench.perf.{job['stage']}")  # registers the stage
        args = argparse.Namespace(
            data=Path(job["data"]) if job["data"] else None,
            skip_bad=False,
            split_scheme="seed",
            **{k: job[k] for k in ("device", "backbone", "crop", "batch", "steps")},
        )
        started = time.perf_counter()
        done: dict[str, Any] = {}
        try:
            done["rows"] = [vars(r) for r in run_stages([job["stage"]], args)]
        except Exception as err:
            first = str(err).strip().splitlines()
            done["error"] = f"{type(err).__name__}: {first[0][:300] if first else ''}"
            traceback.print_exc()
        done["seconds"] = time.perf_counter() - started
        Path(job["json"]).write_text(json.dumps(done))
        print(f"{job['name']}: {done.get('error', 'ok')} ({done['seconds']:.1f} s)", flush=True)


def cuda_test_files(root: Path = Path("tests")) -> list[str]:
    """The test files that mark a test ``cuda``: collecting only them keeps an import error in an
    unrelated test module (a package the GPU machine lacks) from stopping the CUDA tests."""
    return sorted(str(p) for p in root.rglob("test_*.py") if "mark.cuda" in p.read_text())


def junit_cases(path: Path) -> list[dict[str, Any]]:
    """(nodeid, outcome, seconds) of every test case in a pytest junit XML file."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        module = case.get("classname", "").replace(".", "/")
        outcome = "passed"
        for child, name in (("failure", "failed"), ("error", "error"), ("skipped", "skipped")):
            if case.find(child) is not None:
                outcome = name
        cases.append(
            {
                "nodeid": f"{module}.py::{case.get('name')}",
                "outcome": outcome,
                "seconds": float(case.get("time", 0)),
            }
        )
    return cases


def environment() -> dict[str, str]:
    """GPU, driver, torch, CUDA, cuDNN, Python, cores and the project's stack, as strings."""
    import torch

    env: dict[str, str] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu cores": str(os.cpu_count()),
        "torch": torch.__version__,
        "torch CUDA": str(torch.version.cuda),
        "cuDNN": str(torch.backends.cudnn.version()) if torch.backends.cudnn.is_available() else "none",
    }
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = f"{props.name} ({props.total_memory / 2**30:.0f} GiB, {props.multi_processor_count} SMs)"
        env["bf16 supported"] = str(torch.cuda.is_bf16_supported())
    else:
        env["gpu"] = "none (torch sees no CUDA device)"
    try:
        smi = subprocess.run(
            ["nvidia-smi", "--query-gpu=driver_version,name", "--format=csv,noheader"],
            capture_output=True, text=True, timeout=15, check=True,
        )  # fmt: skip
        env["driver"] = smi.stdout.strip().splitlines()[0]
    except (OSError, subprocess.SubprocessError, IndexError):
        env["driver"] = "n/a (no nvidia-smi)"
    for dist in STACK:
        try:
            env[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            env[dist] = "not installed"
    for module in IMPORTS:  # what the carried wheels must provide, imported the way the code does
        try:
            importlib.import_module(module)
            env[f"import {module}"] = "ok"
        except Exception as err:
            env[f"import {module}"] = f"FAILED: {type(err).__name__}: {str(err).splitlines()[0][:200]}"
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], capture_output=True, text=True, timeout=10
        ).stdout
        env["commit"] = commit + (" (uncommitted changes)" if dirty.strip() else "")
    except (OSError, subprocess.SubprocessError):
        env["commit"] = "n/a (no git here)"
    return env


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.perf.acceptance", description=__doc__.split("\n")[0]
    )
    parser.add_argument("outdir", type=Path, nargs="?", help="folder for report.md, report.json, steps.log")
    parser.add_argument("--smoke", action="store_true", help="every step on the CPU at tiny sizes (< 3 min)")
    parser.add_argument("--work", type=Path, help="scratch folder (default: a new temporary folder)")
    parser.add_argument("--env-json", type=Path, help=argparse.SUPPRESS)  # the env step's subprocess
    parser.add_argument("--perf-jobs", type=Path, help=argparse.SUPPRESS)  # a perf worker's job list
    args = parser.parse_args(argv)
    if args.perf_jobs is not None:
        perf_jobs(args.perf_jobs)
        return 0
    if args.env_json is not None:
        args.env_json.write_text(json.dumps(environment(), indent=1))
        return 0
    if args.outdir is None:
        parser.error("OUTDIR is required")
    args.outdir.mkdir(parents=True, exist_ok=True)
    work = args.work or Path(tempfile.mkdtemp(prefix="bench-acceptance-"))
    work.mkdir(parents=True, exist_ok=True)
    plan = SMOKE if args.smoke else GPU
    slack = float(os.environ.get(SLACK_ENV, "1"))
    if slack != 1:  # a loaded machine (the smoke test beside other work): same steps, more time
        limits = {k: v * slack for k, v in plan.limits.items()}
        plan = dataclasses.replace(plan, deadline_s=plan.deadline_s * slack, limits=limits)
    results = Acceptance(args.outdir, work, plan, args.smoke).all()
    met = [g for g in results["goals"] if g["met"] is False]
    print(f"wrote {args.outdir / 'report.md'} and report.json in {results['wall_s']:.0f} s; "
          f"{len(met)} goal(s) not met; scratch data in {work}")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
