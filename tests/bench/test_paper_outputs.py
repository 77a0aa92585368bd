"""Tables and figures a paper takes as they are: tidy CSV that pandas reads, LaTeX with a label and
a one-line caption (``tex`` as an alias), ``--out DIR/`` writing inside the folder, PDF fonts
embedded as TrueType (no Type 3), SVG text as text, no suptitle, reference rows drawn apart."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.colors import to_rgb

from bench.cli import main
from bench.report.aggregate import long_form, summarise, with_references
from bench.report.plot import class_figure, curves_figure, save_figure
from bench.report.table import TIDY_COLUMNS, build_tables, render
from tests.bench.test_aggregate import make_runs, reference_runs
from tests.bench.test_table import TIMM_REASON, _row

KEY = ["dataset", "backbone", "budget_unit", "protocol", "budget", "method", "metric", "class"]


def _runs() -> pd.DataFrame:
    runs = make_runs(methods=("sscl", "random", "imagenet"), protocols=("linear", "finetune"))
    return pd.concat([runs, reference_runs()], ignore_index=True)


def test_csv_is_tidy_and_matches_the_printed_table() -> None:
    tables = build_tables(
        long_form(_runs()), unavailable={("fp0123456789abcdef", "tiny"): {"unifeat": TIMM_REASON}}
    )
    tidy = pd.read_csv(io.StringIO(render(tables, "csv")), keep_default_na=False, na_values=[""])
    assert tuple(tidy.columns) == TIDY_COLUMNS
    assert not tidy.duplicated(KEY).any()  # one row per (protocol, budget, method, metric, class)
    scores = tidy[tidy["unavailable"].isna()]
    assert set(scores["protocol"]) == {"linear", "finetune"} and set(scores["budget"]) == {200, 800}
    assert set(scores["metric"]) == {"accuracy", "AA", "OA", "mIoU", "macroF1"}
    assert scores.loc[scores["metric"] == "accuracy", "class"].notna().all()
    assert scores.loc[scores["metric"] != "accuracy", "class"].isna().all()
    # the numbers are the printed ones, in percent (md: "73.1 ± 1.0" for ImageNet's Forest at 200)
    md = render([t for t in tables if t.key["protocol"] == "linear" and t.key["budget"] == 200], "md")
    forest = scores.set_index(["protocol", "budget", "method", "class"]).loc[
        ("linear", 200, "imagenet", "Forest")
    ]
    assert f"{forest['mean']:.1f} ± {forest['std']:.1f}" == _row(md, "Forest")[2]
    aa = scores.set_index(["protocol", "budget", "method", "metric"]).loc[("linear", 200, "imagenet", "AA")]
    assert aa["baseline"] == "random" and aa["seeds"] == 3
    low, high = _row(md, "ΔAA vs Baseline")[2].partition("[")[2].rstrip("]").split(", ")
    assert _row(md, "ΔAA vs Baseline")[2].startswith(f"{aa['diff']:+.1f} [")
    assert (f"{aa['ci_low']:.1f}", f"{aa['ci_high']:.1f}") == (low, high)
    assert _row(md, "p AA (Holm)")[2] == f"{aa['p_holm']:.3f}" and not aa["significant"]
    # reference rows are flagged; a method that could not run is one row per table with its reason
    assert set(scores.loc[scores["reference"].astype(str) == "True", "method"]) == {"raw", "rf"}
    missing = tidy[tidy["unavailable"].notna()]
    assert set(missing["method"]) == {"unifeat"} and len(missing) == len(tables)
    assert (missing["unavailable"] == TIMM_REASON).all()


def test_latex_tables_carry_a_label_and_a_one_line_caption() -> None:
    tables = build_tables(long_form(_runs()))
    text = render(tables, "tex")
    assert text == render(tables, "latex")  # tex is an alias
    labels = re.findall(r"\\label\{([^}]*)\}", text)
    assert labels == [
        "tab:finetune-200px-tiny",
        "tab:finetune-800px-tiny",
        "tab:linear-200px-tiny",
        "tab:linear-800px-tiny",
    ]
    captions = re.findall(r"\\caption\{(.*)\}", text)
    assert len(captions) == len(tables)
    assert (
        captions[2]
        == r"linear, 200 labelled pixels per class, backbone tiny: scores in \%, mean $\pm$ std over seeds."
    )
    # what the old paragraph-long caption said is still there, below the tabular in small type
    assert text.count("Holm-corrected across") == len(tables) and text.count("ddof=1") == len(tables)


def test_table_out_directory_writes_inside_it(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    long_csv = tmp_path / "long.csv"
    long_form(_runs()).to_csv(long_csv, index=False)
    existing = tmp_path / "paper"
    existing.mkdir()
    assert main(["table", "--from", str(long_csv), "--format", "csv", "--out", str(existing)]) == 0
    assert pd.read_csv(existing / "table.csv").shape[1] == len(TIDY_COLUMNS)
    fresh = tmp_path / "new"
    assert main(["table", "--from", str(long_csv), "--format", "tex", "--out", f"{fresh}/"]) == 0
    assert r"\label{tab:linear-200px-tiny}" in (fresh / "table.tex").read_text()
    assert main(["table", "--from", str(long_csv), "--format", "summary", "--out", f"{fresh}/"]) == 0
    assert (fresh / "summary.md").is_file()
    file = tmp_path / "named.md"  # a file path is still a file path
    assert main(["table", "--from", str(long_csv), "--out", str(file)]) == 0 and file.is_file()
    assert sorted(p.name for p in fresh.iterdir()) == ["summary.md", "table.tex"]


def test_pdf_fonts_are_truetype_and_svg_text_is_text(tmp_path: Path) -> None:
    stats = summarise(with_references(long_form(_runs())))
    pdf = save_figure(curves_figure(stats), tmp_path / "c.pdf").read_bytes()
    subtypes = set(re.findall(rb"/Subtype\s*/(\w+)", pdf))
    assert b"Type3" not in subtypes  # IEEE/ACM checkers refuse Type 3 fonts
    assert subtypes & {b"TrueType", b"CIDFontType2"}  # Type 42: TrueType outlines (pdffonts: CID TrueType)
    classes = save_figure(class_figure(stats, "linear"), tmp_path / "k.pdf").read_bytes()
    assert b"/Type3" not in classes and b"/CIDFontType2" in classes
    svg = save_figure(curves_figure(stats), tmp_path / "c.svg").read_text()
    texts = re.findall(r"<text[^>]*>([^<]*)</text>", svg)
    assert "Baseline" in texts and "AA (%)" in texts  # legend and axis label, searchable text


def test_figures_have_no_suptitle_and_references_are_grey_dashes() -> None:
    stats = summarise(with_references(long_form(_runs())))
    for fig in (curves_figure(stats), class_figure(stats, "linear")):
        assert fig.get_suptitle() == ""
    ax = curves_figure(stats).axes[0]
    lines = {line.get_label(): line for line in ax.get_lines()}
    assert set(lines) == {"Baseline", "ImageNet", "SSCL", "Raw bands", "Random forest"}
    for label in ("Raw bands", "Random forest"):
        r, g, b = to_rgb(lines[label].get_color())
        assert r == g == b and lines[label].get_linestyle() != "-", label
    for label in ("Baseline", "ImageNet", "SSCL"):
        r, g, b = to_rgb(lines[label].get_color())
        assert not r == g == b and lines[label].get_linestyle() == "-", label
    assert lines["Raw bands"].get_linestyle() != lines["Random forest"].get_linestyle()


def test_plot_out_directory_writes_vector_figures_inside_it(tmp_path: Path) -> None:
    long_csv = tmp_path / "long.csv"
    long_form(_runs()).to_csv(long_csv, index=False)
    out = tmp_path / "figs"
    assert main(["plot", "--from", str(long_csv), "--out", f"{out}/"]) == 0
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "accuracy_vs_budget.pdf",
        "accuracy_vs_budget_classes_finetune.pdf",
        "accuracy_vs_budget_classes_linear.pdf",
    ]
    assert b"/Type3" not in (out / "accuracy_vs_budget.pdf").read_bytes()
