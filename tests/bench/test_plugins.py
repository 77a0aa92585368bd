"""A method from a separate installed package: listed with its source, run by ``run`` and ``sweep``.

The plugin is a real distribution (pyproject with ``bench.methods`` and ``bench.backbones`` entry
points) installed by pip into a temp site folder that only the subprocess sees on its PYTHONPATH,
as a user's ``pip install my-method`` would; nothing of it lives in this repository.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]

PYPROJECT = """
[project]
name = "toy-bench-plugin"
version = "0.3.1"

[project.entry-points."bench.methods"]
toyplug = "toyplug.method"

[project.entry-points."bench.backbones"]
toytiny = "toyplug.method:toy_backbone"

[build-system]
requires = ["setuptools>=77"]
build-backend = "setuptools.build_meta"

[tool.setuptools]
packages = ["toyplug"]
"""

METHOD = '''"""A plugin method: shrink the random initialisation (registered by its decorator)."""
from dataclasses import dataclass

import torch

from bench.models.backbones import build_backbone
from methods.registry import PretrainMethod, register_method


@dataclass
class Config:
    factor: float = 0.5


@register_method("toyplug")
class ToyPlug(PretrainMethod):
    description = "toy plugin: scaled random weights"
    label = "ToyPlug"
    Config = Config
    needs_data = False

    def pretrain(self, backbone, images, ctx):
        with torch.no_grad():
            for p in backbone.parameters():
                p.mul_(self.config.factor)


def toy_backbone(in_chans):
    """the tiny backbone, registered again by a plugin entry point (no decorator)"""
    return build_backbone("tiny", in_chans)
'''

LOOSE = '''"""A module given by --plugin / BENCH_PLUGINS: no distribution, no entry point."""
from methods.random_init import RandomInit
from methods.registry import register_method


@register_method("loose_random")
class LooseRandom(RandomInit):
    description = "random init under another name (a --plugin module)"
    baseline = False
'''


@pytest.fixture(scope="module")
def plugin_site(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """``pip install`` of the toy distribution into a temp site folder (offline, no build isolation)."""
    src = tmp_path_factory.mktemp("toy_src")
    (src / "pyproject.toml").write_text(PYPROJECT)
    (src / "toyplug").mkdir()
    (src / "toyplug" / "__init__.py").write_text("")
    (src / "toyplug" / "method.py").write_text(METHOD)
    site = tmp_path_factory.mktemp("site")
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index"]
    subprocess.run([*pip, "--target", str(site), str(src)], check=True, capture_output=True, timeout=300)
    assert (site / "toyplug" / "method.py").is_file()
    loose = tmp_path_factory.mktemp("loose")
    (loose / "loose_plug.py").write_text(LOOSE)
    return [site, loose]


def _env(folders: list[Path], home: Path) -> dict[str, str]:
    path = os.pathsep.join(p for p in [str(REPO), *map(str, folders), os.environ.get("PYTHONPATH")] if p)
    return os.environ | {
        "PYTHONPATH": path,
        "BENCH_HOME": str(home / "bench_home"),
        "MLFLOW_TRACKING_URI": f"sqlite:///{home / 'mlflow.db'}",
        "BENCH_EXPERIMENT": "plugins",
        "BENCH_LOCAL_WORKERS": "2",
    }


def _bench(args: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], env=env, cwd=cwd, capture_output=True, text=True, timeout=600
    )


@pytest.mark.slow  # two subprocesses that import torch (about 30 s on 2 quiet cores)
def test_an_installed_plugin_is_listed_and_runs_in_run_and_sweep(
    plugin_site: list[Path], tiny_data_root: Path, tmp_path: Path
) -> None:
    env = _env(plugin_site, tmp_path)
    listing = _bench(["list"], env | {"BENCH_PLUGINS": "loose_plug"}, tmp_path)
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines() if line.startswith("  ")}
    assert "entry point 'toyplug' of toy-bench-plugin 0.3.1" in lines["toyplug"]
    assert "entry point 'toytiny' of toy-bench-plugin 0.3.1" in lines["toytiny"]
    assert "BENCH_PLUGINS (loose_plug)" in lines["loose_random"]
    assert "[methods/sscl.py]" in lines["sscl"]

    # `run` then `sweep` in one process (one import of torch); the sweep adds the loose module by
    # the command's --plugin and runs on the backbone the entry point registered
    common = [
        "--samples",
        "10",
        "--seeds",
        "1",
        "--data",
        str(tiny_data_root),
        "--device",
        "cpu",
        "--no-progress",
    ]
    run = ["run", "--method", "toyplug", *common, "--set", "toyplug.factor=0.9"]
    sweep = ["sweep", "--plugin", "loose_plug", "--methods", "toyplug,loose_random", "--protocol", "linear"]
    sweep += ["--backbone", "toytiny", *common]
    script = (
        "import sys; from bench.cli import main; "
        f"code = main({run!r}); print('run exit', code, flush=True); "
        f"sys.exit(code or main({sweep!r}))"
    )
    both = subprocess.run(
        [sys.executable, "-c", script], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert both.returncode == 0, both.stderr
    assert "ToyPlug" in both.stdout and "AA " in both.stdout and "run exit 0" in both.stdout

    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    runs = mlflow.search_runs(
        experiment_names=["plugins"], filter_string="tags.`bench.kind` = 'seed'", output_format="pandas"
    )
    complete = runs[runs["tags.bench.status"] == "complete"]
    assert set(complete["tags.bench.method"]) == {"toyplug", "loose_random"}
    assert set(complete["tags.bench.backbone"]) == {"tiny", "toytiny"}
    assert set(complete[complete["tags.bench.method"] == "toyplug"]["params.pretraining.config.factor"]) == {
        "0.9",
        "0.5",
    }


def test_an_installed_plugin_is_listed_in_process(
    plugin_site: list[Path], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The fast twin of the end-to-end test: the entry points of the installed distribution are
    found on sys.path, imported, and listed with their source; its settings are listed too."""
    from bench.cli import main
    from bench.core import plugins
    from bench.models.base import _BACKBONES
    from methods.registry import _METHODS

    for folder in plugin_site:
        monkeypatch.syspath_prepend(str(folder))
    monkeypatch.setenv("BENCH_PLUGINS", "loose_plug")
    plugins.reset()
    try:
        assert main(["list"]) == 0
        lines = {
            line.split()[0]: line for line in capsys.readouterr().out.splitlines() if line.startswith("  ")
        }
        assert "[entry point 'toyplug' of toy-bench-plugin 0.3.1]" in lines["toyplug"]
        assert "[entry point 'toytiny' of toy-bench-plugin 0.3.1]" in lines["toytiny"]
        assert "[BENCH_PLUGINS (loose_plug)]" in lines["loose_random"]
        assert "[methods/sscl.py]" in lines["sscl"] and "[bench/models/tiny.py]" in lines["tiny"]
        assert main(["list", "--settings", "TOYPLUG"]) == 0
        out = capsys.readouterr().out
        assert "settings of method toyplug" in out and "factor" in out and "0.5" in out
    finally:
        plugins.reset()
        for name in ("toyplug", "loose_random"):
            _METHODS.pop(name, None)
        _BACKBONES.pop("toytiny", None)
        for module in ("toyplug", "toyplug.method", "loose_plug"):
            sys.modules.pop(module, None)


@pytest.fixture
def loose_plugin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """``loose_plug`` importable in this process and requested as ``--plugin`` would."""
    from bench.core import plugins
    from methods.registry import _METHODS

    (tmp_path / "loose_plug.py").write_text(LOOSE)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("BENCH_PLUGINS", "")  # request() exports the module there: undone afterwards
    yield tmp_path
    plugins.reset()
    _METHODS.pop("loose_random", None)
    sys.modules.pop("loose_plug", None)


def test_a_plugin_changes_no_existing_result_key(loose_plugin: Path, repo_copy: Path) -> None:
    from bench.core import plugins, provenance
    from bench.harness.runner import CellSpec, result_key
    from methods import get_method

    ds = SimpleNamespace(fingerprint="fp")
    before = {m: result_key(CellSpec(m, 50), 0, ds) for m in ("random", "simsiam", "sscl")}
    plugins.request(["loose_plug"])
    assert get_method("loose_random").__module__ == "loose_plug"
    provenance.clear_cache()
    assert {m: result_key(CellSpec(m, 50), 0, ds) for m in before} == before
    key = result_key(CellSpec("loose_random", 50), 0, ds)
    # the plugin's own code is its results' identity: editing it starts them afresh (a comment
    # computes nothing and keeps them)
    (loose_plugin / "loose_plug.py").write_text(LOOSE + "\n# edited\n")
    provenance.clear_cache()
    assert result_key(CellSpec("loose_random", 50), 0, ds) == key
    (loose_plugin / "loose_plug.py").write_text(LOOSE + "\nEDITED = 1\n")
    provenance.clear_cache()
    assert result_key(CellSpec("loose_random", 50), 0, ds) != key
    assert {m: result_key(CellSpec(m, 50), 0, ds) for m in before} == before


def test_a_plugin_that_does_not_import_is_one_line(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(REPO), "BENCH_HOME": str(tmp_path)}
    out = _bench(["--plugin", "no_such_plugin_mod", "run", "--method", "x", "--samples", "5"], env, tmp_path)
    assert out.returncode == 2
    assert out.stderr.startswith("error: plugin 'no_such_plugin_mod' (--plugin) is not importable")
    assert len(out.stderr.strip().splitlines()) == 1
