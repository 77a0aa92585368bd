"""Settings are checked before any work: one line naming the key and what it expects.

Also: ``--set`` scoping in a mixed sweep, and a fully cached run that writes nothing to BENCH_HOME
(so a read-only home works).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from bench.cli import main
from bench.core.errors import BenchError
from bench.core.paths import bench_home
from bench.harness.runner import CellSpec, scope_overrides
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
    return err


RUN = ["run", "--method", "simsiam", "--samples", "5", "--no-progress"]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--seeds", "0"], "--seeds expects an integer >= 1, got 0"),
        (["--samples", "-3"], "--samples expects an integer >= 1, got -3"),
        (["--device", "tpu"], "--device 'tpu' is not available here; this machine offers auto, cpu"),
        (["--set", "steps=abc"], "setting 'steps' of method 'simsiam' expects int, got 'abc'"),
        (["--set", "augment.blur_p=lots"], "setting 'augment.blur_p' of method 'simsiam' expects float"),
        (["--set", "finetune.selection=maybe"], "setting 'selection' of FinetuneConfig expects bool"),
    ],
    ids=lambda v: v[0] if isinstance(v, list) else None,
)
def test_bad_settings_fail_before_any_work(
    extra: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if extra[0] == "--device":  # what the machine offers beyond auto, cpu varies
        message = message.partition(";")[0]
    assert message in _error([*RUN, "--protocol", "both", *extra], capsys)
    assert not bench_home().exists()  # nothing generated, decoded or recorded


def test_data_that_is_a_file_and_a_file_as_bench_home(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    not_a_folder = tmp_path / "dfc.zip"
    not_a_folder.write_bytes(b"PK")
    assert f"--data {not_a_folder} is a file; it expects a dataset folder" in _error(
        [*RUN, "--data", str(not_a_folder)], capsys
    )
    monkeypatch.setenv("BENCH_HOME", str(not_a_folder))
    assert f"BENCH_HOME={not_a_folder} is a file" in _error(RUN, capsys)
    monkeypatch.setenv("BENCH_HOME", str(not_a_folder / "home"))
    assert f"is under the file {not_a_folder}" in _error(RUN, capsys)


def test_set_values_are_cast_to_the_field_type() -> None:
    spec = CellSpec(
        "simsiam",
        5,
        protocol="finetune",
        method_overrides={"steps": "20", "augment.scale": "0.2,1", "augment.blur_p": 1},
        protocol_overrides={"selection": "false", "lr": "3e-4"},
    )
    config = spec.method_config()
    assert config["steps"] == 20 and config["augment"]["scale"] == (0.2, 1.0)
    assert config["augment"]["blur_p"] == 1.0 and isinstance(config["augment"]["blur_p"], float)
    protocol = spec.protocol_config()
    assert protocol.selection is False and protocol.lr == 3e-4
    with pytest.raises(
        BenchError, match=r"'augment.scale' of method 'simsiam' expects tuple\[float, float\]"
    ):
        CellSpec("simsiam", 5, method_overrides={"augment.scale": [0.1, 0.2, 0.3]}).method_config()


def test_sweep_set_scoping() -> None:
    methods = ["random", "simsiam", "sscl", "unifeat"]
    pairs = ["steps=20", "simsiam.batch_size=4", "linear.max_iter=5", "sscl.unifeat.steps=3"]
    assert scope_overrides(pairs, "random", methods) == ["linear.max_iter=5"]
    assert scope_overrides(pairs, "simsiam", methods) == ["steps=20", "batch_size=4", "linear.max_iter=5"]
    assert scope_overrides(pairs, "sscl", methods) == ["linear.max_iter=5", "unifeat.steps=3"]
    assert scope_overrides(pairs, "unifeat", methods) == ["steps=20", "linear.max_iter=5"]
    with pytest.raises(BenchError, match="none of the methods random, simsiam has a setting 'stepz'"):
        scope_overrides(["stepz=3"], "random", ["random", "simsiam"])


def test_mixed_sweep_checks_every_method_setting_up_front(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sweep", "--methods", "random,simsiam", "--samples", "5", "--seeds", "1", "--no-progress"]
    assert "setting 'steps' of method 'simsiam' expects int, got 'abc'" in _error(
        [*argv, "--set", "steps=abc"], capsys
    )
    assert "none of the methods random, simsiam has a setting 'nope'" in _error(
        [*argv, "--set", "nope=1"], capsys
    )
    assert not bench_home().exists()


def _snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every cache file and folder; not ``claims/``, where a recomputed seed's claim comes and goes
    (on a read-only home no claim can be made and the seed runs unclaimed: test_faults_concurrency)."""
    return {
        str(p.relative_to(root)): (p.stat().st_mtime_ns, p.stat().st_size)
        for p in root.rglob("*")
        if (p.is_file() or p.is_dir()) and p.relative_to(root).parts[0] != "claims"
    }


@pytest.mark.usefixtures("mlflow_store")
def test_fully_cached_run_writes_nothing_to_bench_home(
    tiny_data_root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What makes a read-only BENCH_HOME work: with every cache present, not even a lock file is made."""
    argv = ["run", "--method", "random", "--samples", "5", "--seeds", "1", "--data", str(tiny_data_root)]
    argv += ["--no-progress", "--device", "cpu"]
    assert main(argv) == 0
    before = _snapshot(bench_home())
    monkeypatch.setenv(
        "BENCH_EXPERIMENT", os.environ["BENCH_EXPERIMENT"] + "-again"
    )  # seeds recomputed from the caches
    assert main(argv) == 0
    assert _snapshot(bench_home()) == before
