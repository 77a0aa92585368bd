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
    (repo_copy / "methods" / "zz_new.py").write_text(NEW_METHOD)
    provenance.clear_cache()
    assert provenance.code_version(["methods.zz_new"]).endswith("+dirty")
    assert not provenance.code_version(["methods.random_init"]).endswith("+dirty")
    (repo_copy / "methods" / "training.py").write_text("# edited\n")
    provenance.clear_cache()
    assert provenance.code_version(["methods.simsiam"]).endswith("+dirty")
    assert not provenance.code_version(["methods.random_init"]).endswith("+dirty")
