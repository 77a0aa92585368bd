"""Settings of every type work alike in run, sweep, tune and pretrain, from --set and --config
(issue 25 item 5); an empty --methods and --study-trials 0 are one-line errors.

A tuple-typed setting given as a JSON list (``--set 'augment.scale=[0.5,1.0]'``) used to crash
``run`` and ``sweep`` with ``TypeError: unhashable type: 'list'`` before any cast. Each command is
given such a setting plus a bad one (``steps=abc``): reaching the bad one's one-line error proves
the list went through, and no work starts.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from bench.cli import main
from bench.core.paths import bench_home
from bench.core.settings import cast_setting
from bench.harness.runner import CellSpec, parse_overrides, result_key
from bench.harness.sweep import grid
from bench.harness.tune import load_config
from datasets import Dataset

BAD = "setting 'steps' of method 'simsiam' expects int, got 'abc'"
COMMANDS = {
    "run": ["run", "--method", "simsiam", "--samples", "5"],
    "sweep": ["sweep", "--methods", "simsiam", "--samples", "5", "--seeds", "1"],
    "tune": ["tune", "--method", "simsiam", "--samples", "5", "--trials", "1"],
    "pretrain": ["pretrain", "--method", "simsiam"],
}


def _error(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    return err


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_list_valued_settings_from_set_and_config(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = [*COMMANDS[command], "--no-progress"] if command != "tune" else COMMANDS[command]
    pairs = ["--set", "augment.scale=[0.5,1.0]", "--set", "augment.blur_sigma=[0.2,1.0]"]
    assert BAD in _error([*argv, *pairs, "--set", "steps=abc"], capsys)
    if command == "pretrain":
        return  # pretrain takes no --config
    config = tmp_path / "tuned.json"
    nested = {"augment": {"scale": [0.5, 1.0]}, "steps": "abc"}
    config.write_text(json.dumps({"method": "simsiam", "overrides": {"method": nested}}))
    assert BAD in _error([*argv, "--config", str(config)], capsys)
    assert not (bench_home() / "cache").exists()  # no data decoded


def test_one_identity_whatever_form_a_setting_takes(tiny_dataset: Dataset) -> None:
    forms: list[dict[str, Any]] = [
        {"augment.scale": [0.5, 1.0]},
        {"augment.scale": (0.5, 1.0)},
        {"augment.scale": "0.5,1"},
        {"augment": {"scale": [0.5, 1.0]}},
    ]
    specs = [CellSpec("simsiam", 5, method_overrides=form) for form in forms]
    assert len(set(specs[:2] + specs[3:])) == 1  # hashable, and list, tuple and nested agree
    keys = {result_key(spec, 0, tiny_dataset) for spec in specs}
    assert len(keys) == 1  # the string form casts to the same config, hence the same key
    assert specs[0].method_config()["augment"]["scale"] == (0.5, 1.0)
    units = grid(["simsiam"], [5], range(2), ["linear"], method_overrides=forms[0])
    assert len(units) == 2
    method, _ = parse_overrides(['method.augment={"scale": [0.5, 1.0]}'])
    assert CellSpec("simsiam", 5, method_overrides=method) == specs[0]


def test_config_file_pairs_keep_their_types(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"method": "simsiam", "overrides": {"method": {"augment.scale": [0.4, 1.0]}}}))
    method, _ = parse_overrides(load_config(path).set_pairs())
    assert CellSpec("simsiam", 5, method_overrides=method).method_config()["augment"]["scale"] == (0.4, 1.0)


def test_list_and_dict_types_are_cast() -> None:
    assert cast_setting([1, "2"], list[int], "k", "x") == [1, 2]
    assert cast_setting((1.0, 2), list[float], "k", "x") == [1.0, 2.0]
    assert cast_setting("3,4", list[int], "k", "x") == [3, 4]
    assert cast_setting({"a": "1"}, dict[str, int], "k", "x") == {"a": 1}
    with pytest.raises(Exception, match=r"setting 'k' of x expects list\[int\], got"):
        cast_setting(["a"], list[int], "k", "x")


def test_empty_methods_and_zero_study_trials(capsys: pytest.CaptureFixture[str]) -> None:
    sweep = ["sweep", "--samples", "5", "--seeds", "1", "--no-progress"]
    assert "--methods is empty" in _error([*sweep, "--methods", ""], capsys)
    assert "--methods is empty" in _error([*sweep, "--methods", " , "], capsys)
    assert "--samples is empty" in _error(["sweep", "--methods", "random", "--samples", ""], capsys)
    tune = ["tune", "--method", "random", "--samples", "5", "--study-trials", "0"]
    assert "--study-trials expects an integer >= 1, got 0" in _error(tune, capsys)
    assert not bench_home().exists()
