"""Figures: one curve panel per protocol x metric, per-class small multiples one column wide, the
format of the output suffix (vector PDF/SVG, 300-dpi PNG), log budget axes, and the filters."""

from __future__ import annotations

import struct
from pathlib import Path

import pandas as pd
import pytest

from bench.core.errors import BenchError
from bench.report.aggregate import long_form, summarise, with_references
from bench.report.plot import COLUMN_WIDTH, class_figure, class_figures, curves_figure, save_figure
from tests.bench.test_aggregate import make_runs, reference_runs, tracked  # noqa: F401 (fixture)


def png_dpi(path: Path) -> float:
    """Pixels per inch from a PNG's ``pHYs`` chunk (pixels per metre, unit byte 1)."""
    data = path.read_bytes()
    at = data.index(b"pHYs")
    x, _, unit = struct.unpack(">IIB", data[at + 4 : at + 13])
    assert unit == 1
    return x * 0.0254


def test_curves_and_class_panels(tmp_path: Path) -> None:
    stats = summarise(long_form(make_runs(methods=("random", "sscl"), protocols=("linear", "finetune"))))
    curves = curves_figure(stats)
    assert len(curves.axes) == 4  # (AA, OA) x (finetune, linear)
    assert {len(ax.lines) for ax in curves.axes} == {2}
    figures = class_figures(stats)
    assert set(figures) == {"finetune", "linear"}
    fig = figures["linear"]
    panels = [ax for ax in fig.axes if ax.get_visible() and ax.lines]
    assert [ax.get_title() for ax in panels] == ["Forest", "Urban/Built-up", "Water"]  # one per class
    assert fig.get_size_inches()[0] == pytest.approx(COLUMN_WIDTH)  # one column of a paper
    out = save_figure(fig, tmp_path / "c.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and round(png_dpi(out)) == 300
    save_figure(curves, tmp_path / "c.svg")
    assert b"<svg" in (tmp_path / "c.svg").read_bytes()[:400]
    with pytest.raises(BenchError, match=r"unknown figure format '\.jpeg'"):
        save_figure(curves_figure(stats), tmp_path / "c.jpeg")


def test_budget_axis_is_logarithmic_beyond_tenfold() -> None:
    narrow = summarise(long_form(make_runs(budgets=(200, 1000))))
    assert {ax.get_xscale() for ax in curves_figure(narrow).axes} == {"linear"}
    wide = summarise(long_form(make_runs(budgets=(10, 200, 1000))))
    assert {ax.get_xscale() for ax in curves_figure(wide).axes} == {"log"}
    assert {ax.get_xscale() for ax in class_figure(wide, "linear").axes if ax.lines} == {"log"}


def test_reference_rows_are_drawn_in_every_protocol_panel() -> None:
    runs = pd.concat(
        [make_runs(methods=("random", "sscl"), protocols=("linear", "finetune")), reference_runs()],
        ignore_index=True,
    )
    curves = curves_figure(summarise(with_references(long_form(runs))))
    assert len(curves.axes) == 4  # still (AA, OA) x (finetune, linear): no panel of their own
    assert {len(ax.lines) for ax in curves.axes} == {4}


def test_mixed_settings_are_refused() -> None:
    runs = make_runs()
    runs.loc[runs["seed"] == 0, "backbone"] = "resnet18"
    with pytest.raises(BenchError, match="several settings"):
        curves_figure(summarise(long_form(runs)))


@pytest.mark.usefixtures("tracked")
def test_plot_command_writes_pdf_and_filters(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from bench.cli import main

    assert main(["plot", "--out", str(tmp_path / "f.pdf"), "--samples", "200", "--methods", "random"]) == 0
    for name in ("f.pdf", "f_classes_linear.pdf"):
        assert (tmp_path / name).read_bytes()[:4] == b"%PDF"
    capsys.readouterr()
    assert main(["plot", "--out", str(tmp_path / "f.bmp")]) == 2
    assert "unknown figure format '.bmp'" in capsys.readouterr().err


def test_samples_filter_leaves_other_budgets_out(tmp_path: Path) -> None:
    from bench.cli import build_parser
    from bench.cli.table import selected_long_form

    long_csv = tmp_path / "long.csv"
    long_form(make_runs(budgets=(200, 600, 1000, 100000))).to_csv(long_csv, index=False)
    args = build_parser().parse_args(["plot", "--from", str(long_csv), "--samples", "200,1000"])
    stats = summarise(with_references(selected_long_form(args)))
    curves = curves_figure(stats)
    drawn = {float(x) for ax in curves.axes for line in ax.lines for x in line.get_xdata()}
    assert drawn == {200.0, 1000.0}
    assert {ax.get_xscale() for ax in curves.axes} == {"linear"}  # 100000 would have made it log
