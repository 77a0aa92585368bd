"""Cache digests: every kind of corrupted, truncated or swapped entry is named, moved aside and rebuilt.

Each test builds a real entry, damages it the way a disk, a kill or a careless copy would, and
checks that the next use reports it in one line and gives the clean numbers again.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from bench.core import integrity
from bench.core.integrity import atomic_entry, check_entry, clean_stale_temporaries, usable_entry
from bench.harness.pretraining import pretrained_backbone
from bench.models.backbones import build_backbone
from bench.protocols.budget import draw_budget
from bench.protocols.features import cached_pixel_features, weights_digest
from datasets import Dataset, load_dataset
from tests.bench.mlflow_store import mlflow_dir, mlflow_store  # noqa: F401


def _write(path: Path, data: bytes) -> None:
    with atomic_entry(path) as tmp:
        tmp.write_bytes(data)


def _garble(path: Path, offset: int = 0, length: int = 4096) -> None:
    """Overwrite bytes in place, keeping the size (the case a size check alone misses)."""
    with path.open("r+b") as fh:
        fh.seek(offset)
        fh.write(os.urandom(min(length, path.stat().st_size - offset)))


def _moved_aside(path: Path) -> list[Path]:
    aside = path.parent.glob(f"{path.name}{integrity.CORRUPT_TAG}*")
    return sorted(p for p in aside if not p.name.endswith(integrity.SIDECAR_SUFFIX))


def test_digest_catches_flips_truncation_and_missing_sidecar(tmp_path: Path) -> None:
    entry = tmp_path / "entry.bin"
    _write(entry, os.urandom(10_000))
    assert check_entry(entry) is None
    _garble(entry, 5000, 1)
    assert "content differs" in (check_entry(entry) or "")
    _write(entry, os.urandom(10_000))
    with entry.open("r+b") as fh:
        fh.truncate(9000)
    assert "size 9000 bytes, 10000 expected" in (check_entry(entry) or "")
    _write(entry, b"x")
    integrity.sidecar(entry).unlink()
    assert "has no digest" in (check_entry(entry) or "")


def test_chunked_digest_names_the_damaged_chunk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(integrity, "CHUNK_BYTES", 1024)
    entry = tmp_path / "big.bin"
    _write(entry, os.urandom(10 * 1024))
    assert len(json.loads(integrity.sidecar(entry).read_text())["big.bin"]["sha256"]) == 10
    _garble(entry, 7 * 1024 + 5, 1)
    assert "chunk at bytes 7168-8192" in (check_entry(entry) or "")


def test_bad_entry_is_reported_in_one_line_and_moved_aside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entry = tmp_path / "entry.bin"
    _write(entry, os.urandom(100))
    _garble(entry)
    assert not usable_entry(entry, "test entry")
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and str(entry) in err and "moved aside" in err
    assert not entry.exists() and len(_moved_aside(entry)) == 1


def test_stale_temporaries_are_removed_fresh_ones_kept(tmp_path: Path) -> None:
    stale_file, fresh_file = tmp_path / ".a.npy.x1.tmp", tmp_path / ".b.npy.x2.tmp"
    stale_dir = tmp_path / "cache" / ".fp.x3.tmp"
    stale_dir.mkdir(parents=True)
    (stale_dir / "images.f16").write_bytes(b"0")
    for path in (stale_file, fresh_file):
        path.write_bytes(b"0")
    old = time.time() - 2 * integrity.STALE_AFTER_S
    for path in (stale_file, stale_dir, stale_dir / "images.f16"):
        os.utime(path, (old, old))
    assert set(clean_stale_temporaries(tmp_path)) == {stale_file, stale_dir}
    assert fresh_file.exists() and not stale_dir.exists()


@pytest.mark.parametrize(
    "damage", ["garble images", "truncate labels", "break manifest", "drop digest"], ids=str
)
def test_decoded_data_cache_heals(
    damage: str, tiny_data_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = load_dataset(tiny_data_root, progress=False)
    reference = np.array(clean.test.images), np.array(clean.test.labels)
    folder = clean.test.path
    if damage == "garble images":
        _garble(folder / "images.f16", 2048, 8192)
    elif damage == "truncate labels":
        with (folder / "labels.u8").open("r+b") as fh:
            fh.truncate(100)
    elif damage == "break manifest":
        (folder / "manifest.json").write_text("{not json")
    else:
        (folder / integrity.FOLDER_DIGEST).unlink()
    del clean
    healed = load_dataset(tiny_data_root, progress=False)
    assert f"decoded test cache {folder}" in capsys.readouterr().err
    np.testing.assert_array_equal(np.array(healed.test.images), reference[0])
    np.testing.assert_array_equal(np.array(healed.test.labels), reference[1])
    assert len(_moved_aside(folder)) == 1


@pytest.mark.usefixtures("mlflow_store")
@pytest.mark.parametrize("damage", ["zero 4 KiB", "truncate", "swap"], ids=str)
def test_weights_cache_heals(damage: str, tiny_dataset: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    kwargs = {"backbone": "tiny", "ds": tiny_dataset, "device": torch.device("cpu"), "progress": False}
    model, record = pretrained_backbone("random", **kwargs)
    clean = weights_digest(model)
    path = Path(record.path)
    if damage == "zero 4 KiB":
        with path.open("r+b") as fh:
            fh.seek(path.stat().st_size // 2)
            fh.write(bytes(4096))
    elif damage == "truncate":
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    else:  # another seed's weights copied over this file, digest and all
        other = Path(pretrained_backbone("random", seed=1, **kwargs)[1].path)
        shutil.copy(other, path)
        shutil.copy(integrity.sidecar(other), integrity.sidecar(path))
    again, record = pretrained_backbone("random", **kwargs)
    assert f"pretrained weights {path}" in capsys.readouterr().err
    assert not record.cached and weights_digest(again) == clean


LABELS = np.random.default_rng(0).integers(0, 3, (20, 16, 16)).astype(np.uint8)


def _draw(seed: int) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return draw_budget(LABELS, fingerprint="fp", class_names=("a", "b", "c"), samples=10, seed=seed)


@pytest.mark.parametrize("damage", ["truncate", "garble", "swap with digest"], ids=str)
def test_budget_index_heals(damage: str, capsys: pytest.CaptureFixture[str]) -> None:
    clean = _draw(0)
    path = clean.path  # type: ignore[attr-defined]
    if damage == "truncate":
        with path.open("r+b") as fh:
            fh.truncate(50)
    elif damage == "garble":
        _garble(path, 100, 200)
    else:  # seed 1's file and its digest renamed to seed 0's name: only the stored ident tells
        other = _draw(1).path  # type: ignore[attr-defined]
        os.replace(other, path)
        digest = json.loads(integrity.sidecar(other).read_text())
        integrity.sidecar(path).write_text(json.dumps({path.name: digest[other.name]}))
    healed = _draw(0)
    err = capsys.readouterr().err
    assert f"label budget {path}" in err
    if damage == "swap with digest":
        assert "drawn for another budget" in err
    for field in ("patch", "row", "col", "label"):
        np.testing.assert_array_equal(getattr(healed, field), getattr(clean, field))


@pytest.mark.parametrize("damage", ["garble", "truncate"], ids=str)
def test_feature_cache_heals(damage: str, tiny_dataset: Dataset, capsys: pytest.CaptureFixture[str]) -> None:
    torch.manual_seed(0)
    backbone = build_backbone("tiny", in_chans=len(tiny_dataset.band_names))
    images = tiny_dataset.test.images
    pixels = np.random.default_rng(0).integers(0, [len(images), 32, 32], (50, 3)).T
    kwargs = {"split_fingerprint": "fp", "device": torch.device("cpu"), "progress": False}
    clean = cached_pixel_features(backbone, images, *pixels, **kwargs)
    (path,) = tuple((Path(os.environ["BENCH_HOME"]) / "features").glob("*.npy"))
    if damage == "garble":
        _garble(path, 128, path.stat().st_size - 128)  # header kept, values replaced
    else:
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    healed = cached_pixel_features(backbone, images, *pixels, **kwargs)
    assert f"feature cache {path}" in capsys.readouterr().err
    np.testing.assert_array_equal(healed, clean)
