"""Hashes are the keys of caches and completed cells: they must be stable and order-free."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from bench.core import provenance
from bench.core.atomic import atomic_dir, atomic_path, atomic_write_text
from bench.core.provenance import canonical_json, code_version, source_digest, stable_hash


def test_stable_hash_ignores_key_order_and_int_valued_floats() -> None:
    assert stable_hash({"a": 1, "b": [1, 2]}) == stable_hash({"b": (1, 2), "a": 1.0})
    assert stable_hash({"a": 1}) != stable_hash({"a": 2})
    assert canonical_json({"p": Path("/x")}) == '{"p":"/x"}'


def test_code_version_is_a_commit_or_version() -> None:
    version = code_version()
    assert version and " " not in version


def test_atomic_path_leaves_nothing_when_the_block_fails(tmp_path: Path) -> None:
    target = tmp_path / "sub" / "file.txt"
    try:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("interrupted")
    except RuntimeError:
        pass
    assert not target.exists()
    assert list(target.parent.iterdir()) == []
    atomic_write_text(target, "whole")
    assert target.read_text() == "whole"


def test_source_digest_is_stable_and_short() -> None:
    assert source_digest() == source_digest()
    assert len(source_digest()) == 12


def test_source_digest_covers_result_code_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("bench/harness/runner.py", "bench/report/table.py", "bench/cli/run.py"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x = 1\n")
    monkeypatch.setattr(provenance, "_REPO", tmp_path)
    digests = []
    for name in ("bench/report/table.py", "bench/cli/run.py", "bench/harness/runner.py"):
        (tmp_path / name).write_text("x = 2\n")
        provenance.clear_cache()
        digests.append(provenance.source_digest())
    provenance.clear_cache()
    assert digests[0] == digests[1] != digests[2]


def test_atomic_outputs_get_the_usual_modes(tmp_path: Path) -> None:
    atomic_write_text(tmp_path / "table.md", "x")
    with atomic_dir(tmp_path / "cache", "manifest.json") as folder:
        (folder / "manifest.json").write_text("{}")
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "table.md").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "cache").stat().st_mode & 0o777 == 0o777 & ~umask
    assert [p.name for p in tmp_path.iterdir()] and not list(tmp_path.glob(".*.tmp"))


def test_atomic_dir_keeps_the_first_complete_folder(tmp_path: Path) -> None:
    target = tmp_path / "data"
    with atomic_dir(target, "done") as first:
        (first / "done").write_text("first")
        with atomic_dir(target, "done") as second:  # a concurrent builder finishing first
            (second / "done").write_text("second")
    assert (target / "done").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["data"]


def test_source_digest_reads_the_real_packages() -> None:
    """The digest hashes this repository's sources: an empty walk (a wrong root after a move)
    would key every result to the same digest and never invalidate a completed cell."""
    assert (provenance._REPO / "bench" / "harness" / "runner.py").is_file()
    provenance.clear_cache()
    assert provenance.source_digest() != hashlib.sha256().hexdigest()[:12]


# --- result identity scoped to what a result depends on (issue 22) -------------------------------

NEW_METHOD = '''"""A method a user is writing: nothing else depends on it."""
from methods.registry import PretrainMethod, register_method


@register_method("zz_new")
class New(PretrainMethod):
    description = "new"

    def pretrain(self, backbone, images, ctx):
        pass
'''


def _keys(methods: tuple[str, ...]) -> dict[str, str]:
    from types import SimpleNamespace

    from bench.harness.runner import CellSpec, result_key

    provenance.clear_cache()
    ds = SimpleNamespace(fingerprint="fp")
    return {m: result_key(CellSpec(m, 100), 0, ds) for m in methods}


METHODS = ("random", "simsiam", "core", "sscl", "unifeat")


def test_adding_a_method_file_keeps_every_other_result_key(repo_copy: Path) -> None:
    before = _keys(METHODS)
    (repo_copy / "methods" / "zz_new.py").write_text(NEW_METHOD)
    assert _keys(METHODS) == before
    # reporting code is no dependency either
    (repo_copy / "bench" / "report" / "table.py").write_text("# rewritten\n")
    assert _keys(METHODS) == before


def test_editing_a_module_changes_the_keys_of_the_methods_built_on_it(repo_copy: Path) -> None:
    before = _keys(METHODS)
    core = repo_copy / "methods" / "core.py"
    core.write_text(core.read_text() + "\nCHANGED = 1\n")
    after = _keys(METHODS)
    assert after["core"] != before["core"] and after["sscl"] != before["sscl"]
    assert after["simsiam"] == before["simsiam"] and after["random"] == before["random"]
    assert after["unifeat"] == before["unifeat"]
    # the shared part (a protocol) is a dependency of every result
    linear = repo_copy / "bench" / "protocols" / "linear.py"
    linear.write_text(linear.read_text() + "\nCHANGED = 1\n")
    assert all(v != after[k] for k, v in _keys(METHODS).items())


def test_sscl_depends_on_the_modules_it_imports(repo_copy: Path) -> None:
    files = {p.relative_to(repo_copy).as_posix() for p in provenance.dependency_files(["methods.sscl"])}
    for name in ("unifeat", "core", "augment", "training", "monitors", "registry", "sscl"):
        assert f"methods/{name}.py" in files
    assert "methods/simsiam.py" not in files and "bench/report/table.py" not in files
    assert "bench/harness/runner.py" in files and "bench/harness/tracking.py" not in files


def test_an_untracked_file_marks_only_the_results_that_depend_on_it_dirty(repo_copy: Path) -> None:
    import subprocess

    def git(*args: str) -> None:
        subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@t", "-C", str(repo_copy), *args],
            check=True,
            capture_output=True,
        )

    git("init", "-q")
    git("add", ".")
    git("commit", "-qm", "copy")
    provenance.clear_cache()
    assert not provenance.code_version(["methods.random_init"]).endswith("+dirty")
    # a docstring edit keeps the key, yet the code differs from the commit: still dirty
    digest = provenance.code_digest(["methods.core"])
    assert not provenance.code_version(["methods.core"]).endswith("+dirty")
    _edit(repo_copy / "methods" / "core.py", '"""``core``: the second', '"""``core``: the 2nd')
    provenance.clear_cache()
    assert provenance.code_digest(["methods.core"]) == digest
    assert provenance.code_version(["methods.core"]).endswith("+dirty")
    (repo_copy / "methods" / "zz_new.py").write_text(NEW_METHOD)
    provenance.clear_cache()
    assert provenance.code_version(["methods.zz_new"]).endswith("+dirty")
    assert not provenance.code_version(["methods.random_init"]).endswith("+dirty")
    (repo_copy / "methods" / "training.py").write_text("# edited\n")
    provenance.clear_cache()
    assert provenance.code_version(["methods.simsiam"]).endswith("+dirty")
    assert not provenance.code_version(["methods.random_init"]).endswith("+dirty")


# --- identity from meaning, not bytes (issue 33) -------------------------------------------------


def test_meaning_ignores_docstrings_comments_annotations_and_import_order() -> None:
    from bench.core.provenance import meaning_dump

    source = '''"""Module doc."""
from __future__ import annotations

import numpy as np
from torch import nn, optim


def loss(x: np.ndarray, scale: float = 2.0) -> float:
    """Doc."""
    return float(x.mean()) * scale  # a comment
'''
    same = '''"""Another module doc, longer."""
from __future__ import annotations

from torch import optim, nn
import numpy as np


def loss(x: "np.ndarray", scale: float = 2.0):  # reworded comment
    """Doc, fixed."""

    # the mean, scaled
    return float(x.mean()) * scale
'''
    assert meaning_dump(same) == meaning_dump(source)
    # a number, an operation or a default is meaning
    assert meaning_dump(source.replace("* scale", "/ scale")) != meaning_dump(source)
    assert meaning_dump(source.replace("= 2.0", "= 3.0")) != meaning_dump(source)
    # an import order that decides which ``x`` a name is (the second wins) is kept
    assert meaning_dump("from a import x\nfrom b import x\n") != meaning_dump(
        "from b import x\nfrom a import x\n"
    )
    # a local variable's annotation is never evaluated; a class attribute's is
    assert meaning_dump("def f():\n    x: list[int] = []\n    y: int\n") == meaning_dump(
        "def f():\n    x = []\n    y: float\n"
    )
    assert meaning_dump("def f():\n    y: int\n") != meaning_dump("def f():\n    pass\n")
    # a function whose body was its docstring means what ``pass`` means
    assert meaning_dump('def f():\n    """Nothing yet."""\n') == meaning_dump("def f():\n    pass\n")
    # a dataclass field's type is kept: settings are cast to it
    assert meaning_dump("class C:\n    steps: int = 1\n") != meaning_dump("class C:\n    steps: float = 1\n")


def _all_keys() -> dict[tuple[str, str], str]:
    """Result keys of every registered method under both deep protocols (reference rows once)."""
    from types import SimpleNamespace

    from bench.harness.runner import PROTOCOLS, CellSpec, result_key
    from methods import list_methods

    provenance.clear_cache()
    ds = SimpleNamespace(fingerprint="fp")
    return {
        (m, p): result_key(CellSpec(m, 100, protocol=p, backbone="resnet18"), 0, ds)
        for m in list_methods()
        for p in PROTOCOLS
    }


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert text.count(old) == 1, f"{path}: {old!r} not found once"
    path.write_text(text.replace(old, new))


def test_docstring_and_comment_edits_keep_every_key_and_a_loss_edit_keys_its_methods(repo_copy: Path) -> None:
    before = _all_keys()
    core = repo_copy / "methods" / "core.py"
    runner = repo_copy / "bench" / "harness" / "runner.py"
    _edit(core, '"""``core``: the second SSCL stage alone', '"""``core``: the second SSCL stage, alone')
    _edit(core, "    def loss_fn(", "    # the restoration loss\n    def loss_fn(")
    _edit(runner, '    """What one cell evaluates.', '    """What one cell evaluates (its identity).')
    _edit(runner, "def _frozen(", "# overrides as sorted pairs\ndef _frozen(")
    assert _all_keys() == before
    # an import reorder (as an import sorter would make it) and an annotation fix keep them too
    _edit(runner, "import json\nimport time\n", "import time\nimport json\n")
    _edit(
        runner,
        "from bench.core.errors import BenchError\nfrom bench.core.paths import bench_home\n",
        "from bench.core.paths import bench_home\nfrom bench.core.errors import BenchError\n",
    )
    _edit(
        runner,
        "def result_key(spec: CellSpec, seed: int, ds: Any) -> str:",
        "def result_key(spec, seed, ds):",
    )
    assert _all_keys() == before

    _edit(core, "return F.mse_loss(restored, target), {}", "return F.l1_loss(restored, target), {}")
    after = _all_keys()
    changed = {m for (m, _), key in after.items() if key != before[(m, _)]}
    assert changed == {"core", "sscl"}


def test_the_declared_computing_modules_cover_what_they_import() -> None:
    """Every module a computing module imports is declared computing or not result-affecting, and a
    method's building blocks outside ``methods`` are too (names in the lists exist)."""
    from bench.harness.runner import PROTOCOLS, CellSpec, code_modules
    from bench.models.backbones import list_backbones
    from methods import list_methods

    modules = {
        module
        for name in list_methods()
        for protocol in PROTOCOLS
        for backbone in list_backbones()
        for module in code_modules(CellSpec(name, 1, protocol=protocol, backbone=backbone))
    }
    # the harness's own modules only: a method or backbone another test registered lives in tests/
    modules = {m for m in modules if not m.startswith("tests.")}
    assert provenance.undeclared_imports(sorted(modules)) == []


def test_an_undeclared_import_of_a_computing_module_is_reported(repo_copy: Path) -> None:
    (repo_copy / "bench" / "core" / "smoothing.py").write_text("def smooth(x):\n    return x\n")
    _edit(
        repo_copy / "bench" / "core" / "loop.py",
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nfrom bench.core.smoothing import smooth\n",
    )
    (repo_copy / "methods" / "core.py").write_text(
        (repo_copy / "methods" / "core.py").read_text() + "\nfrom bench.core.smoothing import smooth\n"
    )
    assert provenance.undeclared_imports(["methods.sscl"]) == [
        "bench.core.loop -> bench.core.smoothing",
        "methods.core -> bench.core.smoothing",
    ]
    assert provenance.undeclared_imports() == ["bench.core.loop -> bench.core.smoothing"]
