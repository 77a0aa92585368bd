"""The installable package: a wheel built from the source tree (no network, no build isolation) must
carry the runtime dependencies, the extras, the ``bench`` console script, every sub-package and the
PEP 561 ``py.typed`` markers; and each declared range must hold the pin of requirements*.txt, so
``pip install .`` and ``scripts/setup.sh`` install the same tested stack."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import zipfile
from email.parser import Parser
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bench", "methods", "datasets")


def _pins(path: Path) -> dict[str, str]:
    """``{canonical name: version}`` of the ``name==version`` lines of a requirements file (and its -r)."""
    pins: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line.startswith("-r "):
            pins.update(_pins(path.parent / line[3:].strip()))
        elif "==" in line:
            name, version = line.split("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> zipfile.ZipFile:
    """The wheel of a copy of the source tree (the build writes build/ and *.egg-info beside it)."""
    src = tmp_path_factory.mktemp("src")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for package in PACKAGES:
        shutil.copytree(ROOT / package, src / package, ignore=ignore)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "--quiet",
            "--wheel-dir",
            str(out),
            str(src),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    (built,) = out.glob("sscl_bench-*.whl")
    return zipfile.ZipFile(built)


def _dist_file(wheel: zipfile.ZipFile, name: str) -> str:
    (path,) = [n for n in wheel.namelist() if n.endswith(f".dist-info/{name}")]
    return wheel.read(path).decode()


def test_the_wheel_declares_the_console_script_and_it_resolves(wheel: zipfile.ZipFile) -> None:
    entry_points = configparser.ConfigParser()
    entry_points.read_string(_dist_file(wheel, "entry_points.txt"))
    target = entry_points["console_scripts"]["bench"]
    module, _, function = target.partition(":")
    assert (module, function) == ("bench.cli", "main")
    import importlib

    assert callable(getattr(importlib.import_module(module), function))


def test_the_wheel_holds_every_package_and_its_py_typed_marker(wheel: zipfile.ZipFile) -> None:
    names = set(wheel.namelist())
    expected = {
        init.parent.relative_to(ROOT).as_posix()
        for package in PACKAGES
        for init in (ROOT / package).rglob("__init__.py")
    }
    assert {p for p in expected if f"{p}/__init__.py" not in names} == set()  # a sub-package left out
    assert {f"{p}/py.typed" for p in PACKAGES} <= names


def test_the_wheel_requires_the_runtime_stack_within_the_tested_pins(wheel: zipfile.ZipFile) -> None:
    metadata = Parser().parsestr(_dist_file(wheel, "METADATA"))
    requirements = [Requirement(r) for r in metadata.get_all("Requires-Dist") or []]
    runtime = {canonicalize_name(r.name): r for r in requirements if r.marker is None}
    extras: dict[str, set[str]] = {}
    for r in requirements:
        if r.marker is not None:
            for extra in metadata.get_all("Provides-Extra") or []:
                if r.marker.evaluate({"extra": extra}):
                    extras.setdefault(extra, set()).add(canonicalize_name(r.name))
    pins = _pins(ROOT / "requirements.txt")
    dev_pins = _pins(ROOT / "requirements-dev.txt")
    assert extras == {
        "ray": {"ray"},
        "slurm": {"submitit"},
        "dev": set(dev_pins) - set(pins),
    }
    assert set(runtime) == set(pins) - {"ray", "submitit"}
    every = {canonicalize_name(r.name): r for r in requirements}
    off = {name: str(r.specifier) for name, r in every.items() if dev_pins[name] not in r.specifier}
    assert off == {}  # a range that excludes the tested version
    # torch and torchvision: only the tested release (the CUDA wheels are matched to it)
    assert str(runtime["torch"].specifier) == f"=={pins['torch']}"
    assert str(runtime["torchvision"].specifier) == f"=={pins['torchvision']}"
