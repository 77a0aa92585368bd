"""Issue 22's papercuts: each answered in one line, early, or recorded as it really happened."""

from __future__ import annotations

import argparse
import errno
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli import main
from bench.cli.startup import resolve_methods
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

REPO = Path(__file__).resolve().parents[2]


def test_unknown_method_is_one_line_with_the_closest_names_before_torch(tmp_path: Path) -> None:
    probe = (
        "import sys; from bench.cli import main; "
        "code = main(['run', '--method', 'simclr', '--samples', '5']); "
        "print('torch loaded' if 'torch' in sys.modules else 'no torch'); sys.exit(code)"
    )
    env = os.environ | {"PYTHONPATH": str(REPO), "BENCH_HOME": str(tmp_path)}
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert out.returncode == 2 and out.stdout.strip() == "no torch"
    assert out.stderr.count("\n") == 1
    assert out.stderr.startswith("error: unknown method 'simclr'; did you mean ")
    assert "simsiam" in out.stderr and "sscl" in out.stderr


def test_method_names_match_in_any_case_and_typos_are_refused() -> None:
    args = argparse.Namespace(method="SSCL", overrides=[])
    resolve_methods(args)
    assert args.method == "sscl"
    sweep = argparse.Namespace(methods=["Random", "SimSiam"], overrides=[])
    resolve_methods(sweep)
    assert sweep.methods == ["random", "simsiam"]
    from bench.core.names import UnknownName

    with pytest.raises(UnknownName, match="did you mean unifeat"):
        resolve_methods(argparse.Namespace(method="unifiet", overrides=[]))


def test_set_method_key_means_the_same_on_run_as_on_sweep() -> None:
    from bench.harness.runner import CellSpec, parse_overrides

    def config(method: str, pairs: list[str]) -> dict:
        args = argparse.Namespace(method=method, overrides=pairs)
        resolve_methods(args)
        method_overrides, protocols = parse_overrides(args.overrides)
        return CellSpec(method, 10, method_overrides=method_overrides).method_config() | {"_p": protocols}

    assert config("simsiam", ["simsiam.steps=30"])["steps"] == 30
    assert config("SimSiam", ["simsiam.augment.blur_p=0.2"])["augment"]["blur_p"] == 0.2
    assert config("unifeat", ["unifeat.steps=4"])["steps"] == 4
    # sscl's own stage settings keep their meaning; a reference row's protocol settings stay its own
    assert config("sscl", ["unifeat.steps=4", "sscl.core.steps=5"])["unifeat"]["steps"] == 4
    assert config("sscl", ["sscl.core.steps=5"])["core"]["steps"] == 5
    assert config("rf", ["rf.trees=7"])["_p"]["rf"] == {"trees": 7}


def test_list_settings_prints_keys_types_and_defaults(capsys: pytest.CaptureFixture[str]) -> None:
    from methods.simsiam import SimSiamConfig

    assert main(["list", "--settings", "simsiam"]) == 0
    rows = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines()[2:]}
    assert rows["steps"][1:] == ["int", str(SimSiamConfig().steps)]
    assert rows["augment.blur_p"][1] == "float"
    assert main(["list", "--settings", "finetune"]) == 0
    assert "settings of protocol finetune" in capsys.readouterr().out


@pytest.mark.parametrize(
    "error",
    [
        lambda store: PermissionError(errno.EACCES, "Permission denied", str(store / "mlflow.db.lock")),
        lambda store: sqlite3.OperationalError("attempt to write a readonly database"),
    ],
)
def test_an_unwritable_mlflow_store_is_named(
    error, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.cli.list as list_command

    store = tmp_path / "store"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{store / 'mlflow.db'}")

    def refuse(args: argparse.Namespace) -> int:
        try:
            raise error(store)
        except Exception as err:  # as MLflow wraps sqlite's error
            raise RuntimeError("(sqlite3.OperationalError) wrapped") from err

    monkeypatch.setattr(list_command, "run_list", refuse)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: the MLflow store sqlite:///{store / 'mlflow.db'} is not writable")
    assert "BENCH_HOME" not in err and err.count("\n") == 1


def test_another_datasets_package_first_on_the_path_is_refused(tmp_path: Path) -> None:
    fake = tmp_path / "site"
    (fake / "datasets").mkdir(parents=True)
    (fake / "datasets" / "__init__.py").write_text(
        "raise ImportError('Hugging Face datasets needs pyarrow')\n"
    )
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(fake), str(REPO)]), "BENCH_HOME": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, "-m", "bench", "data", "check"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr
    assert f"`import datasets` finds {fake / 'datasets' / '__init__.py'}" in out.stderr
    assert f"put {REPO} first on PYTHONPATH" in out.stderr


@pytest.mark.usefixtures("mlflow_store")
def test_a_budget_above_what_a_class_has_is_recorded_capped(
    tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.harness.runner import CAPPED_TAG, REALISED_TAG, capped_range
    from bench.harness.tracking import completed_runs

    argv = ["run", "--method", "random", "--samples", "100000", "--seeds", "1", "--data", str(tiny_data_root)]
    assert main([*argv, "--no-progress", "--set", "linear.max_iter=5"]) == 0
    out = capsys.readouterr().out
    runs = completed_runs()
    assert len(runs) == 1 and runs[f"tags.{CAPPED_TAG}"].tolist() == ["true"]
    realised = runs[f"tags.{REALISED_TAG}"].iloc[0]
    lo, hi = map(int, realised.split("-"))
    assert 0 < lo <= hi < 100000
    assert f"100000 labelled pixels per class (capped: {realised} realised)" in out
    assert runs["tags.mlflow.runName"].iloc[0].endswith(f"(capped: {realised} realised)")
    # a budget every class has is not capped
    assert capped_range(5, "pixels", [({"a": 4, "b": 4}, {"a": 1, "b": 1})]) is None
    assert capped_range(5, "pixels", [({"a": 4, "b": 2}, {"a": 1, "b": 0})]) == "2-5"
    assert capped_range(5, "images", [({"a": 0}, {"a": 0})]) is None


def test_a_refused_file_beside_the_store_is_still_blamed_on_bench_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import bench.cli.list as list_command

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("BENCH_HOME", str(tmp_path / ".bench"))

    def refuse(args: argparse.Namespace) -> int:
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".bench" / "cache" / "x"))

    monkeypatch.setattr(list_command, "run_list", refuse)
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert "BENCH_HOME=" in err and "MLflow store" not in err
