"""The comparison table in Markdown, CSV and LaTeX from hand-made runs."""

from __future__ import annotations

import io
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest

from bench.report.aggregate import long_form, method_label, method_order
from bench.report.table import build_tables, latex_escape, render
from tests.bench.test_aggregate import make_runs, reference_runs, tracked  # noqa: F401 (fixture)


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
    assert rows[:10] == [
        "",
        "Forest",
        "Urban/Built-up",
        "Water",
        "AA",
        "OA",
        "mIoU",
        "macro F1",
        "ΔAA vs Baseline",
        "ΔOA vs Baseline",
    ]
    assert "n = 3 evaluation seeds per method; K = 2 pretraining seed(s) per method." in text
    assert "ddof=1" in text and "budget unit: pixels" in text and "abc123" in text
    assert "bold: best, its paired 95% interval against the runner-up excludes 0" in text
    # every seed of imagenet is exactly 0.2 above the baseline: a zero-width interval
    delta = next(line for line in text.splitlines() if line.startswith("| ΔOA"))
    assert delta.split(" | ")[1:] == [
        "—",
        "+20.0 [20.0, 20.0]",
        "+10.0 [10.0, 10.0]",
        "-10.0 [-10.0, -10.0] |",
    ]


def test_csv_stars_best_and_parses() -> None:
    text = render(_tables(), "csv")
    first = text.split("\n\n")[0]
    frame = pd.read_csv(io.StringIO(first), comment="#")
    assert list(frame.columns) == ["row", "Baseline", "ImageNet", "SimSiam", "SSCL"]
    assert frame.set_index("row").loc["OA", "ImageNet"] == "81.0 ± 1.0*"
    assert frame.set_index("row").loc["ΔAA vs Baseline", "SimSiam"] == "+10.0 [10.0, 10.0]"
    assert not frame["SSCL"].str.endswith("*").any()


def test_latex_structure(tmp_path: Path) -> None:
    text = render(_tables(), "latex")
    assert text.count(r"\begin{tabular}{lrrrr}") == 2 and text.count(r"\bottomrule") == 2
    assert r"$\Delta$AA vs Baseline & -- & +20.0 [20.0, 20.0]" in text
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
    assert "n (evaluation seeds): Baseline 3, SSCL 2" in text


def test_overlapping_leaders_are_a_tie_not_a_bold_best() -> None:
    # OA: random 60, 61, 62; sscl 50 + 10 + (-3, +2, +4) + seed = 57, 63, 66 (percent)
    jitter = {("sscl", 0): 0.07, ("sscl", 1): 0.12, ("sscl", 2): 0.14}
    runs = make_runs(methods=("sscl", "random"), budgets=(200,), jitter=jitter)
    text = render(build_tables(long_form(runs)), "md")
    oa = next(line for line in text.splitlines() if line.startswith("| OA"))
    assert oa == "| OA | *61.0 ± 1.0*† | *62.0 ± 4.6*† |"
    assert "italics†: tied for best, a paired 95% interval against the leader includes 0" in text
    # sscl - random per seed: -3, +2, +4; mean 1, sd sqrt(13), t(0.975, 2 dof) = 4.303:
    # 1 ± 4.303 * sqrt(13 / 3) = [-7.96, 9.96]
    delta = next(line for line in text.splitlines() if line.startswith("| ΔOA"))
    assert delta == "| ΔOA vs Baseline | — | +1.0 [-8.0, 10.0] |"


def test_reference_columns_follow_the_methods_and_are_never_marked() -> None:
    runs = pd.concat(
        [make_runs(methods=("sscl", "random"), protocols=("linear", "finetune")), reference_runs()],
        ignore_index=True,
    )
    tables = build_tables(long_form(runs))
    assert [t.key["protocol"] for t in tables] == ["finetune", "finetune", "linear", "linear"]
    text = render(tables, "md")
    refs = method_order(["raw", "rf"])  # registered (labelled) by the lead's reference rows, or not
    labels = [method_label(m) for m in refs]
    assert text.count("|  | Baseline | SSCL | " + " | ".join(labels) + " |") == 4
    forest = next(line for line in text.splitlines() if line.startswith("| Forest"))
    # rf has the highest accuracy (base 0.5, as random), but the mark goes to the best pretraining method
    ref_forest = {"raw": "43.1 ± 1.0", "rf": "53.1 ± 1.0"}
    assert (
        forest == "| Forest | **53.1 ± 1.0** | 43.1 ± 1.0 | " + " | ".join(ref_forest[m] for m in refs) + " |"
    )
    assert f"reference columns (not marked): {', '.join(labels)}" in text
    delta = next(line for line in text.splitlines() if line.startswith("| ΔAA"))
    ref_delta = {"raw": "-10.0 [-10.0, -10.0]", "rf": "+0.0 [0.0, 0.0]"}
    assert (
        delta
        == "| ΔAA vs Baseline | — | -10.0 [-10.0, -10.0] | " + " | ".join(ref_delta[m] for m in refs) + " |"
    )


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
    long = pd.read_csv(long_csv, keep_default_na=False)
    assert len(long) == 2 * 3 * 10  # 2 methods x 3 seeds at 800; accuracy and IoU x 3 classes + 4 summaries
    assert {"method", "budget", "seed", "protocol", "metric", "class", "value"} <= set(long.columns)
    paired = pd.read_csv(tmp_path / "long_paired.csv")
    assert set(paired["metric"]) == {"AA", "OA", "mIoU", "macroF1"} and set(paired["method"]) == {"sscl"}
    assert (paired["baseline"] == "random").all() and (paired["pairs"] == 3).all()
    assert main(["table", "--protocol", "finetune"]) == 2  # nothing matches: a clear error, exit 2


@pytest.fixture
def dirty_store(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fresh store whose runs were recorded from a tree with uncommitted changes; cwd = tmp_path."""
    from tests.bench.test_aggregate import record_runs

    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("BENCH_RESULTS", raising=False)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.setenv("BENCH_EXPERIMENT", "test-dirty")
    runs = make_runs(budgets=(200,), seeds=(0, 1))
    record_runs(runs.assign(code_version=["abc123+dirty"] + ["abc123"] * (len(runs) - 1)))
    return tmp_path


def test_results_from_dirty_code_are_refused_unless_allowed(
    dirty_store: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    results = dirty_store / "results"
    assert main(["table", "--out", "results/table.md"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "1 run(s) read come from uncommitted code (abc123+dirty)" in err
    assert "--allow-dirty" in err and not results.exists()
    assert main(["table", "--long-csv", str(results / "sub" / "long.csv")]) == 2  # anywhere under results/
    assert main(["plot"]) == 2  # the plot's default output is results/
    assert not results.exists()
    assert main(["table"]) == 0  # printing is not publishing
    assert main(["table", "--out", str(dirty_store / "scratch.md")]) == 0  # nor is a file outside results/
    assert main(["table", "--out", "results/table.md", "--allow-dirty"]) == 0
    assert (results / "table.md").read_text().count("abc123+dirty") == 1  # the footer still says so


def test_pretraining_seeds_are_counted_per_method() -> None:
    runs = make_runs(methods=("random", "sscl"), budgets=(200,))  # pretraining seed = seed mod 2
    runs.loc[runs["method"] == "sscl", "pretrain_seed"] = 0
    assert "K (pretraining seed(s)): Baseline 2, SSCL 1" in render(build_tables(long_form(runs)), "md")
    unknown = runs.drop(columns="pretrain_seed")  # runs recorded before the param existed
    assert "; K unknown." in render(build_tables(long_form(unknown)), "md")
