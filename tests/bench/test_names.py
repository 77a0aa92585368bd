"""Names that cannot become paths, labels that cannot clash, plugins refused in one line (issue 35,
item 2): every registry, ``--study``, ``--label`` and the MLflow experiment go through
:mod:`bench.core.names`."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from bench.cli import main
from bench.core.errors import BenchError
from bench.models.base import register_backbone
from bench.protocols.registry import EvalProtocol, register_protocol
from methods.registry import _METHODS, PretrainMethod, adopt_plugin, register_method

TRAVERSALS = ["../../../../tmp/x/evil", "team/recon", "..", ".hidden", "a\\b", "", "x" * 65, "a b"]


@dataclasses.dataclass
class _Cfg:
    lr: float = 0.1


def _method(**attrs: object) -> type[PretrainMethod]:
    """A fresh, complete method class (registered by the test, or refused)."""

    def pretrain(self: object, backbone: object, images: np.ndarray, ctx: object) -> None:
        return None

    body = {"description": "test method", "Config": _Cfg, "needs_data": False, "pretrain": pretrain}
    return type("Probe", (PretrainMethod,), {**body, **attrs})


def _refused(call: object, *needles: str) -> str:
    with pytest.raises(BenchError) as refused:
        call()  # type: ignore[operator]
    line = str(refused.value)
    assert "\n" not in line and all(n in line for n in needles), line
    return line


@pytest.mark.parametrize("name", TRAVERSALS)
def test_a_name_that_is_not_a_file_name_is_refused_by_every_registry(name: str) -> None:
    before = dict(_METHODS)
    _refused(lambda: register_method(name)(_method()), repr(name), "not allowed")
    _refused(lambda: register_protocol(name)(type("P", (EvalProtocol,), {})), repr(name), "not allowed")
    _refused(lambda: register_backbone(name, "test")(lambda in_chans: None), repr(name), "not allowed")
    assert before == _METHODS  # nothing registered


def test_names_and_labels_are_unique_ignoring_case_and_no_plugin_takes_a_reference_label() -> None:
    from methods import discover

    discover()
    before = dict(_METHODS)
    _refused(lambda: register_method("SSCL")(_method()), "'SSCL'")  # capitals: not a registry name
    _refused(lambda: adopt_plugin("random", _method()), "'random'", "already registered")
    _refused(
        lambda: register_method("probe-a")(_method(label="Baseline")),
        "'Baseline'",
        "label of method 'random'",
    )
    _refused(lambda: register_method("probe-b")(_method(label="sscl")), "label", "name of method 'sscl'")
    _refused(lambda: register_method("baseline")(_method()), "label of method 'random'")
    _refused(lambda: register_method("probe-c")(_method(label="a/b")), "'a/b'", "not allowed")
    _refused(lambda: register_method("probe-d")(_method(baseline=True)), "baseline", "'random'")
    _refused(lambda: register_method("probe-e")(_method(Config=dict)), "not a dataclass")
    _refused(lambda: register_method("probe-f")(type("Loose", (), {"pretrain": None})), "not a subclass")
    assert before == _METHODS
    _refused(lambda: register_protocol("LINEAR")(type("P", (EvalProtocol,), {})), "'LINEAR'")
    _refused(lambda: register_protocol("probe-g")(type("NotProtocol", (), {})), "not a subclass")
    _refused(lambda: register_backbone("Tiny", "test")(lambda in_chans: None), "'Tiny'")


def test_a_plugin_named_like_a_path_stops_the_command_in_one_line(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "evil_plugin_probe.py").write_text(
        "from dataclasses import dataclass\n"
        "from methods.registry import PretrainMethod, register_method\n"
        "@dataclass\nclass C:\n    x: int = 1\n"
        "@register_method('../../../../tmp/x/evil')\n"
        "class Evil(PretrainMethod):\n"
        "    description = 'evil'\n    Config = C\n    needs_data = False\n"
        "    def pretrain(self, backbone, images, ctx):\n        pass\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BENCH_PLUGINS", "")  # restored (unset) after the test: --plugin exports it
    from bench.core import plugins

    monkeypatch.setattr(plugins, "_requested", {})
    monkeypatch.setattr(plugins, "_loaded", {})
    monkeypatch.setattr(plugins, "_done_kinds", set())
    try:
        assert main(["list", "--plugin", "evil_plugin_probe"]) != 0
    finally:
        sys.modules.pop("evil_plugin_probe", None)
        _METHODS.pop("../../../../tmp/x/evil", None)  # the old code registered it
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'../../../../tmp/x/evil'" in err[0] and "not allowed" in err[0]


def test_study_label_and_experiment_names_are_checked_before_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bench_home_dir: Path
) -> None:
    from bench.core.names import check_label, check_name
    from bench.harness import tracking
    from bench.harness.tune import storage_for

    _refused(lambda: storage_for(None, "../../x"), "tune study", "'../../x'")
    assert not (bench_home_dir.parent / "x.journal").exists() and not (bench_home_dir / "x.journal").exists()
    assert check_name("Shared-Study_2", "tune study", any_case=True) == "Shared-Study_2"
    _refused(lambda: check_label("team/recon", "--label"), "'team/recon'")
    assert check_label(" SSL4EO v2 ", "--label") == "SSL4EO v2"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("BENCH_EXPERIMENT", "../outside")
    _refused(tracking.setup_tracking, "MLflow experiment", "'../outside'")
    assert not (tmp_path / "mlflow.db").exists()  # refused before the store was created


def test_cli_refuses_a_traversal_study_and_a_label_with_a_separator_in_one_line(
    tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    tune = ["tune", "--method", "random", "--samples", "5", "--data", str(tiny_data_root)]
    assert main([*tune, "--study", "../../x", "--trials", "1"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--study name '../../x' is not allowed" in err[0]
    run = ["run", "--method", "random", "--samples", "5", "--data", str(tiny_data_root), "--no-progress"]
    assert main([*run, "--label", "team/recon"]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "'team/recon' is not allowed" in err[0]


@pytest.mark.parametrize("command", ["table", "plot"])
def test_table_and_plot_do_not_read_data_as_dataset(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    """``--data DIR`` (every other command's flag) was taken as an abbreviation of ``--dataset``."""
    with pytest.raises(SystemExit) as stopped:
        main([command, "--data", "some/dir"])
    assert stopped.value.code == 2
    assert "unrecognized arguments: --data some/dir" in capsys.readouterr().err
