"""Settings that cannot record nonsense as complete (issue 35, item 3): every numeric setting has a
range, checked when its config is built, before any work; a crop larger than the patches is
refused once the data is known; a cell whose seed failed is not FINISHED in MLflow."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.core.settings import SettingError
from bench.harness import tracking
from bench.harness.runner import CellSpec, run_cell
from bench.protocols.finetune import FinetuneConfig
from bench.protocols.linear import LinearConfig
from datasets import Dataset
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401

#: (protocol, setting, value, what the one line must say), each once recorded as complete or a traceback.
PROTOCOL_CASES = [
    ("linear", "max_iter", 0, "'max_iter' of LinearConfig expects a value >= 1, got 0"),
    ("linear", "max_iter", -5, "expects a value >= 1, got -5"),
    (
        "linear",
        "weight_decay",
        1e9,
        "'weight_decay' of LinearConfig expects a value in [0, 1], got 1000000000.0",
    ),
    ("finetune", "eval_every", 0, "'eval_every' of FinetuneConfig expects a value >= 1"),
    ("finetune", "steps", 0, "'steps' of FinetuneConfig expects a value >= 1"),
    ("finetune", "steps", -1, "expects a value >= 1, got -1"),
]
METHOD_CASES = [
    ("core", "p_band", 2.0, "'p_band' of method 'core' expects a value in [0, 1], got 2.0"),
    ("sscl", "core.p_modality", -0.5, "'core.p_modality' of method 'sscl' expects a value in [0, 1]"),
    ("simsiam", "augment.scale", [0.9, 0.2], "'augment.scale' of method 'simsiam' expects (low, high)"),
    ("simsiam", "lr", float("nan"), "'lr' of method 'simsiam' expects a finite number"),
]


@pytest.mark.parametrize(("protocol", "key", "value", "line"), PROTOCOL_CASES)
def test_protocol_settings_out_of_range_are_refused_when_the_config_is_built(
    protocol: str, key: str, value: object, line: str
) -> None:
    spec = CellSpec("random", 5, protocol=protocol, protocol_overrides={key: value})
    with pytest.raises(SettingError) as refused:
        spec.protocol_config()
    assert line in str(refused.value) and "\n" not in str(refused.value)


@pytest.mark.parametrize(("method", "key", "value", "line"), METHOD_CASES)
def test_method_settings_out_of_range_are_refused_when_the_config_is_built(
    method: str, key: str, value: object, line: str
) -> None:
    with pytest.raises(SettingError) as refused:
        CellSpec(method, 5, method_overrides={key: value}).method_config()
    assert line in str(refused.value) and "\n" not in str(refused.value)


def test_the_edges_and_the_defaults_are_accepted() -> None:
    from methods.registry import _METHODS

    CellSpec("core", 5, method_overrides={"p_band": 1.0, "lr": 0.0, "cutout_boxes": 0}).method_config()
    CellSpec("random", 5, protocol="finetune", protocol_overrides={"probe_steps": 0}).protocol_config()
    assert LinearConfig(max_iter=1) and FinetuneConfig(steps=1, eval_every=1)
    for name in list(_METHODS):
        CellSpec(name, 5).method_config()  # every registered default is in range


@pytest.mark.usefixtures("mlflow_store")
@pytest.mark.parametrize(
    "argv",
    [
        ["--method", "random", "--set", "linear.max_iter=0"],
        ["--method", "random", "--protocol", "finetune", "--set", "finetune.eval_every=0"],
        ["--method", "core", "--set", "crop=1000"],
    ],
    ids=["max_iter", "eval_every", "crop"],
)
def test_run_refuses_in_one_line_and_records_nothing(
    argv: list[str], tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (
        main(["run", "--samples", "5", "--seeds", "1", "--data", str(tiny_data_root), "--no-progress", *argv])
        != 0
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    assert argv[-1].partition("=")[0].partition(".")[2] in err[0] or "crop" in err[0]
    if "crop" in argv[-1]:
        assert "1000 px, larger than the 32 px patches" in err[0]
    assert tracking.completed_runs().empty


@pytest.mark.usefixtures("mlflow_store")
def test_a_cell_whose_seed_failed_is_not_finished(
    tiny_dataset: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench.protocols.registry import get_protocol

    def full_disk(self: object, job: object) -> None:  # the fault: the disk fills during the seed's work
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(type(get_protocol("linear")), "fit", full_disk)
    with pytest.raises(OSError, match="No space left"):
        run_cell(CellSpec("random", 5), [0], tiny_dataset, torch.device("cpu"), progress=False)
    client, exp_id = tracking.setup_tracking()
    (cell,) = client.search_runs([exp_id], "tags.`bench.kind` = 'cell'")
    (seed,) = client.search_runs([exp_id], "tags.`bench.kind` = 'seed'")
    assert seed.info.status == "FAILED"
    assert cell.info.status == "FAILED"  # was FINISHED with no seed complete
