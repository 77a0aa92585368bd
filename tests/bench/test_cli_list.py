"""``bench list`` reads registrations from source; it must list exactly what the registries hold."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from bench.cli.list import listed_backbones, listed_methods, listed_protocols, static_registrations


def test_methods_read_from_source_are_the_registered_ones() -> None:
    from methods import get_method, list_methods

    # methods other tests register at run time (test-nudge, ...) live outside the package
    packaged = {n: d for n, d in list_methods().items() if get_method(n).__module__.startswith("methods.")}
    assert listed_methods() == packaged


def test_backbones_read_from_source_are_the_registered_ones() -> None:
    from bench.models.backbones import list_backbones

    assert listed_backbones() == list_backbones()


def test_protocols_read_from_source_are_the_registered_ones() -> None:
    from bench.protocols.registry import list_protocols

    assert listed_protocols() == list_protocols()
    assert {"linear", "finetune", "raw", "rf"} <= set(listed_protocols())


def _package(root: Path, name: str, body: str) -> None:
    (root / name).mkdir()
    (root / name / "__init__.py").write_text("")
    (root / name / "mod.py").write_text(body)


def test_a_registration_the_source_does_not_show_falls_back_to_the_import(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    _package(tmp_path, "plain_pkg", '@register_method("a")\nclass A:\n    description = "first"\n')
    assert static_registrations("plain_pkg", "register_method") == {"a": "first"}
    _package(tmp_path, "computed_pkg", 'D = "x"\n@register_method("b")\nclass B:\n    description = D\n')
    with pytest.raises(LookupError, match="not literal"):
        static_registrations("computed_pkg", "register_method")
    _package(tmp_path, "called_pkg", 'class C:\n    description = "c"\nregister_method("c")(C)\n')
    with pytest.raises(LookupError, match="other than as a decorator"):
        static_registrations("called_pkg", "register_method")


def test_bench_list_prints_every_section_without_importing_torch() -> None:
    probe = (
        "import sys; from bench.cli import main; main(['list']); "
        "print('torch loaded' if 'torch' in sys.modules else 'no torch')"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    for heading in (
        "methods:",
        "backbones:",
        "datasets:",
        "  sscl ",
        "  resnet18 ",
        "  resnet18-stdstem ",
        "  dfc2020 ",
    ):
        assert heading in out
    assert out.rstrip().endswith("no torch")


def test_every_entry_names_the_file_that_registers_it() -> None:
    """The source column read from source is the module the imported registry names."""
    from bench.cli.list import entries
    from bench.models.base import backbone_module
    from bench.protocols.registry import get_protocol
    from methods import get_method

    modules = {
        "methods": lambda n: get_method(n).__module__,
        "protocols": lambda n: type(get_protocol(n)).__module__,
        "backbones": backbone_module,
    }
    for kind, module_of in modules.items():
        for name, (_, source) in entries(kind).items():
            assert source == module_of(name).replace(".", "/") + ".py", (kind, name)
