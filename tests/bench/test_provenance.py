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
        provenance.source_digest.cache_clear()
        digests.append(provenance.source_digest())
    provenance.source_digest.cache_clear()
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
    provenance.source_digest.cache_clear()
    assert provenance.source_digest() != hashlib.sha256().hexdigest()[:12]
