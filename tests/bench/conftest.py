"""Fixtures of the harness tests."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.core import provenance


@pytest.fixture
def repo_copy(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The repository's sources copied to a temp folder that :mod:`bench.core.provenance` takes as
    the repository: tests edit it freely, and edits others make to the real tree meanwhile (several
    people share one working tree) do not move its digests."""
    root = tmp_path / "repo"
    for package in ("bench", "methods", "datasets"):
        shutil.copytree(
            provenance._REPO / package, root / package, ignore=shutil.ignore_patterns("__pycache__")
        )
    monkeypatch.setattr(provenance, "_REPO", root)
    provenance.clear_cache()
    yield root
    provenance.clear_cache()
