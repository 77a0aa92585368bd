"""A health verdict nobody can forge: the record beside weights is inside their digest and checked
against the pretraining run MLflow recorded (issue 35, item 1)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from bench.cli import main
from bench.core.errors import BenchError
from bench.core.integrity import file_digest, sidecar
from bench.core.paths import bench_home
from bench.harness.pretraining import (
    PretrainSpec,
    UnhealthyPretraining,
    load_or_pretrain,
    unhealthy_entry,
)
from datasets import Dataset
from tests.bench.test_pretraining import DEAD_CORE

CPU = torch.device("cpu")


@pytest.fixture
def tracking(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")


def _dead_weights(ds: Dataset) -> tuple[PretrainSpec, Path, Path]:
    """A dead CoRe run's weights (``X.unhealthy.pt``) and where the good entry would be (``X.pt``)."""
    spec = PretrainSpec("core", "tiny", seed=3, method_overrides=DEAD_CORE)
    with pytest.raises(UnhealthyPretraining):
        load_or_pretrain(spec, ds, CPU, progress=False)
    (entry,) = (bench_home() / "weights").glob("*.unhealthy.pt")
    good = entry.with_name(entry.name.replace(".unhealthy.pt", ".pt"))
    assert unhealthy_entry(good) == entry
    return spec, entry, good


def _forge_passed(entry: Path, good: Path, *, recompute_digest: bool) -> None:
    """What an attacker (or a careless copy) does: the dead weights under the good name, with a
    record that says ``passed``; the digest copied as it was, or recomputed to match."""
    shutil.copy(entry, good)
    record = json.loads(entry.with_suffix(".json").read_text())
    record.update(path=str(good), health="passed")
    good.with_suffix(".json").write_text(json.dumps(record))
    # the files the real digest lists, under the good entry's names
    listed = [
        good.name if k == entry.name else f"{good.stem}.json" for k in json.loads(sidecar(entry).read_text())
    ]
    if recompute_digest:
        digests = {name: file_digest(good.with_name(name)) for name in listed}
    else:
        digests = dict(zip(listed, json.loads(sidecar(entry).read_text()).values(), strict=True))
    sidecar(good).write_text(json.dumps(digests))


@pytest.mark.usefixtures("tracking")
@pytest.mark.parametrize("recompute_digest", [False, True], ids=["digest-copied", "digest-recomputed"])
def test_a_forged_passed_verdict_is_refused_in_one_line_and_moved_aside(
    tiny_dataset: Dataset, recompute_digest: bool, capsys: pytest.CaptureFixture[str]
) -> None:
    spec, entry, good = _dead_weights(tiny_dataset)
    _forge_passed(entry, good, recompute_digest=recompute_digest)
    capsys.readouterr()
    with pytest.raises(UnhealthyPretraining, match="core seed 3 failed its health gate"):
        load_or_pretrain(spec, tiny_dataset, CPU, progress=False)  # never the dead weights as good
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(err) == 1 and str(good) in err[0] and "moved aside" in err[0]
    assert ("disagrees with pretraining run" in err[0]) == recompute_digest
    assert not good.exists() and list(good.parent.glob(f"{good.name}.corrupt-*"))
    assert list(good.parent.glob(f"{good.stem}.json.corrupt-*"))  # its record went aside with it


@pytest.mark.usefixtures("tracking")
def test_export_from_refuses_a_forged_or_corrupt_file_and_marks_unhealthy_weights(
    tiny_data_root: Path, tiny_dataset: Dataset, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.harness.pretraining import checked_cache_file

    _, entry, good = _dead_weights(tiny_dataset)
    assert checked_cache_file(entry)["health"].startswith("failed: ")
    argv = ["export", "--data", str(tiny_data_root), "--no-progress"]
    capsys.readouterr()
    assert main([*argv, "--from", str(entry), "--out", str(tmp_path / "a")]) == 0
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "UNHEALTHY" in warning[0] and str(entry) in warning[0]
    (card,) = (tmp_path / "a").glob("*.unhealthy.json")
    assert json.loads(card.read_text())["health"]["verdict"].startswith("failed: ")

    _forge_passed(entry, good, recompute_digest=True)
    with pytest.raises(BenchError, match="disagrees with pretraining run"):
        checked_cache_file(good)
    assert main([*argv, "--from", str(good), "--out", str(tmp_path / "b")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disagrees with pretraining run" in err[0] and not (tmp_path / "b").exists()

    state = torch.load(entry, weights_only=True)  # NaN-corrupted weights under a stale digest
    torch.save(
        {k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()}, entry
    )
    assert main([*argv, "--from", str(entry), "--out", str(tmp_path / "c")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--from" in err[0] and "expected (truncated or overwritten)" in err[0]
    assert entry.exists()  # named by the user: reported, not moved


def test_an_entry_from_before_records_were_covered_is_kept_only_when_the_store_confirms_it(
    tiny_dataset: Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    spec = PretrainSpec("random", "tiny", seed=1)
    _, first = load_or_pretrain(spec, tiny_dataset, CPU, progress=False)
    entry = Path(first.path)

    def as_written_before() -> None:  # the digest the old code wrote: the weights alone
        sidecar(entry).write_text(json.dumps({entry.name: file_digest(entry)}))

    as_written_before()
    _, again = load_or_pretrain(spec, tiny_dataset, CPU, progress=False)
    assert again.cached  # confirmed by the store: kept, not retrained ...
    assert set(json.loads(sidecar(entry).read_text())) == {
        entry.name,
        f"{entry.stem}.json",
    }  # ... and covered

    as_written_before()
    monkeypatch.setenv(
        "MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}"
    )  # no run to confirm it
    capsys.readouterr()
    _, rebuilt = load_or_pretrain(spec, tiny_dataset, CPU, progress=False)
    assert not rebuilt.cached and "the tracking store does not confirm it" in capsys.readouterr().err
