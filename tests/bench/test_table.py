"""The comparison table in Markdown, CSV and LaTeX from hand-made runs."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bench.report.aggregate import long_form
from bench.report.table import build_tables, latex_escape, render
from tests.bench.test_aggregate import make_runs, tracked  # noqa: F401 (fixture)


def _tables() -> list:
    return build_tables(long_form(make_runs(methods=("sscl", "random", "simsiam", "imagenet"))))


def test_one_table_per_protocol_and_budget() -> None:
    tables = build_tables(long_form(make_runs(protocols=("linear", "finetune"))))
    assert [(t.key["protocol"], t.key["budget"]) for t in tables] == [
        ("finetune", 200),
        ("finetune", 800),
        ("linear", 200),
        ("linear", 800),
    ]


def test_markdown_layout_and_best_in_bold() -> None:
    text = render(_tables(), "md")
    header = next(line for line in text.splitlines() if line.startswith("|  |"))
    assert header == "|  | Baseline | ImageNet | SimSiam | SSCL |"
    # base accuracy grows with the method index: sscl (0.4) < random (0.5) < simsiam (0.6) < imagenet (0.7)
    forest = next(line for line in text.splitlines() if line.startswith("| Forest"))
    assert forest.split(" | ")[2] == "**73.1 ± 1.0**"  # imagenet at 200: 0.7 + 0.02 + mean seed 0.01 + 0.001
    rows = [
        line.split(" | ")[0][2:] for line in text.splitlines() if line.startswith("| ") and "---" not in line
    ]
    assert rows[:6] == ["", "Forest", "Urban/Built-up", "Water", "AA", "OA"]
    assert "n = 3 seeds per method" in text and "ddof=1" in text and "budget unit: pixels" in text
    assert "abc123" in text


def test_csv_stars_best_and_parses() -> None:
    text = render(_tables(), "csv")
    first = text.split("\n\n")[0]
    frame = pd.read_csv(io.StringIO(first), comment="#")
    assert list(frame.columns) == ["row", "Baseline", "ImageNet", "SimSiam", "SSCL"]
    assert frame.set_index("row").loc["OA", "ImageNet"] == "81.0 ± 1.0*"
    assert not frame["SSCL"].str.endswith("*").any()


def test_latex_structure(tmp_path: Path) -> None:
    text = render(_tables(), "latex")
    assert text.count(r"\begin{tabular}{lrrrr}") == 2 and text.count(r"\bottomrule") == 2
    assert r"\textbf{73.1 $\pm$ 1.0}" in text and "Urban/Built-up" in text
    assert latex_escape("a&b_c%d#") == r"a\&b\_c\%d\#"
    body = [line for line in text.splitlines() if line.endswith(r"\\")]
    assert all(line.count("&") == 4 for line in body)
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: structure checked only")
    doc = tmp_path / "t.tex"
    doc.write_text(
        "\\documentclass{article}\\usepackage{booktabs}\\begin{document}\n" + text + "\\end{document}\n"
    )
    subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", doc.name], cwd=tmp_path, check=True, capture_output=True
    )
    assert (tmp_path / "t.pdf").exists()


def test_unequal_seed_counts_are_named() -> None:
    runs = make_runs(methods=("random", "sscl"))
    runs = runs[~((runs["method"] == "sscl") & (runs["seed"] == 2))]
    text = render(build_tables(long_form(runs)), "md")
    assert "n seeds: Baseline 3, SSCL 2" in text


@pytest.mark.usefixtures("tracked")
def test_table_command_reads_the_store(tmp_path: Path) -> None:
    from bench.cli import main

    out, long_csv = tmp_path / "t.tex", tmp_path / "long.csv"
    assert (
        main(
            ["table", "--format", "latex", "--samples", "800", "--out", str(out), "--long-csv", str(long_csv)]
        )
        == 0
    )
    assert out.read_text().count(r"\begin{table}") == 1 and "800 labelled pixels per class" in out.read_text()
    long = pd.read_csv(long_csv)
    assert len(long) == 2 * 3 * 5  # 2 methods x 3 seeds at 800, 3 classes + AA + OA each
    assert {"method", "budget", "seed", "protocol", "metric", "accuracy"} <= set(long.columns)
    assert main(["table", "--protocol", "finetune"]) == 2  # nothing matches: a clear error, exit 2
