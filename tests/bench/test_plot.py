"""The figures are valid PNGs with one curve panel per protocol x metric and one heat map per method."""

from __future__ import annotations

from pathlib import Path

import matplotlib.image
import pandas as pd
import pytest

from bench.core.errors import BenchError
from bench.report.aggregate import long_form, summarise, with_references
from bench.report.plot import class_heatmap_figure, curves_figure, save_png
from tests.bench.test_aggregate import make_runs, reference_runs, tracked  # noqa: F401 (fixture)


def test_curves_and_heatmaps_png(tmp_path: Path) -> None:
    stats = summarise(long_form(make_runs(methods=("random", "sscl"), protocols=("linear", "finetune"))))
    curves = curves_figure(stats)
    assert len(curves.axes) == 4  # (AA, OA) x (finetune, linear)
    assert {len(ax.lines) for ax in curves.axes} == {2}
    heat = class_heatmap_figure(stats)
    assert len([ax for ax in heat.axes if ax.get_images()]) == 4  # 2 protocols x 2 methods
    for fig, name in ((curves, "c.png"), (heat, "h.png")):
        out = save_png(fig, tmp_path / name)
        assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        height, width, _ = matplotlib.image.imread(out).shape
        assert width > 400 and height > 300


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
def test_plot_command_writes_both_figures(tmp_path: Path) -> None:
    from bench.cli import main

    assert main(["plot", "--out", str(tmp_path / "fig.png")]) == 0
    for name in ("fig.png", "fig_classes.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"
