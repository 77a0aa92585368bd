"""The compute axis (issue 32 item 7): ``--pretrain-images N[,N...]`` sets the compute rule's
number for every trained method, each level is its own cells (keys) and its own tables, and the
methods that train nothing join every level's table (so each has its Baseline)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bench.harness.presets import preset_pairs
from bench.harness.runner import CellSpec, parse_overrides
from bench.report.aggregate import long_form
from bench.report.table import build_tables, render
from tests.bench.test_aggregate import make_runs
from tests.bench.test_table import md_tables


def spec_at(method: str, images: int | None) -> CellSpec:
    overrides, _ = parse_overrides(preset_pairs("cpu", method, images))
    return CellSpec(method, 10, method_overrides=overrides)


def test_the_level_sets_every_stage_and_the_default_is_the_presets() -> None:
    assert preset_pairs("cpu", "sscl", None) == []  # the cpu preset's 4800: no pairs, keys as before
    sscl = spec_at("sscl", 9600)
    assert dict(sscl.method_overrides) == {"unifeat.steps": 200, "core.steps": 400}  # a third, two thirds
    assert sscl.pretrain_images == 9600 and spec_at("simsiam", 2400).pretrain_images == 2400
    assert spec_at("random", 2400) == spec_at("random", None) and spec_at("random", 2400).pretrain_images == 0
    assert CellSpec("raw", 10).pretrain_images == 0


def test_sweep_runs_each_level_as_its_own_cells(monkeypatch: pytest.MonkeyPatch) -> None:
    import bench.harness.sweep as sweep
    from bench.cli import main

    seen: list[tuple[str, int]] = []

    def record(methods: list[str], *args: object, **kwargs: object) -> list[object]:
        spec = CellSpec(methods[0], 10, method_overrides=kwargs["method_overrides"])  # type: ignore[arg-type]
        seen.append((methods[0], spec.pretrain_images))
        if len(seen) == 4:
            raise SystemExit(0)  # every cell is built: stop before any data or work
        return []

    monkeypatch.setattr(sweep, "grid", record)
    with pytest.raises(SystemExit):
        main(["sweep", "--methods", "random,simsiam", "--pretrain-images", "2400,9600", "--samples", "10"])
    assert seen == [("random", 0), ("random", 0), ("simsiam", 2400), ("simsiam", 9600)]


def test_a_level_that_cannot_keep_the_rule_exactly_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    argv = ["sweep", "--methods", "sscl", "--pretrain-images", "1000", "--samples", "10", "--no-progress"]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "1000 pretraining images cannot be split exactly" in err[0]


def two_levels() -> pd.DataFrame:
    """SimSiam at 2400 and 9600 images (+0.05 and +0.10 over the Baseline), the Baseline at 0."""
    low = make_runs(("random", "simsiam"), (200,), tuple(range(3)), pretrain_k=None)
    high = low[low["method"] == "simsiam"].assign(
        run_id=lambda f: f["run_id"] + "-hi", result_key=lambda f: f["result_key"] + "-hi"
    )
    high[["AA", "OA"]] += 0.05
    low = low.assign(pretrain_images=(low["method"] == "simsiam") * 2400)
    return pd.concat([low, high.assign(pretrain_images=9600)], ignore_index=True)


def test_tables_split_by_level_and_each_has_its_baseline() -> None:
    tables = build_tables(long_form(two_levels()))
    assert [t.key["pretrain_images"] for t in tables] == [2400, 9600]
    for table in tables:
        assert table.columns == ["random", "simsiam"] and table.seeds == {"random": 3, "simsiam": 3}
        assert f"pretraining: {table.key['pretrain_images']} images per trained method" in table.footer()
    deltas = [t.comparisons.set_index("metric").loc["OA", "mean_diff"] for t in tables]
    assert deltas == pytest.approx([0.1, 0.15])  # the gain grows with compute here
    summary = render(tables, "summary")
    budgets = [row[1] for row in md_tables(summary)[0][1:]]
    assert budgets == ["200 (2400 images pretrained)", "200 (9600 images pretrained)"]


def test_runs_without_a_level_keep_one_table_as_before() -> None:
    tables = build_tables(long_form(make_runs(("random", "simsiam"), (200,))))
    assert len(tables) == 1 and tables[0].key["pretrain_images"] == 0
    assert "pretraining:" not in tables[0].footer()


def test_table_filters_a_level_and_plot_refuses_to_mix_two(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    path = tmp_path / "long.csv"
    path.write_text(long_form(two_levels()).to_csv(index=False))
    assert main(["table", "--from", str(path), "--pretrain-images", "9600"]) == 0
    text = capsys.readouterr().out
    assert len(md_tables(text)) == 1 and "pretraining: 9600 images per trained method" in text
    assert md_tables(text)[0][0] == ["", "Baseline", "SimSiam"]  # the Baseline joins the level
    assert main(["plot", "--from", str(path), "--out", str(tmp_path / "curves.png")]) == 2
    err = capsys.readouterr().err
    assert "2 pretraining-image levels (2400, 9600); plot one at a time with --pretrain-images N" in err
