"""The comparison table in Markdown, CSV, LaTeX and the README summary, from hand-made runs."""

from __future__ import annotations

import io
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from bench.report.aggregate import long_form, method_label, method_order
from bench.report.table import build_tables, latex_escape, md_escape, render
from tests.bench.test_aggregate import make_runs, reference_runs, tracked  # noqa: F401 (fixture)
from tests.bench.test_statistics import constructed_runs

REPO = Path(__file__).resolve().parents[2]
TIMM_REASON = "needs a timm trunk (--backbone resnet18|resnet50), not 'tiny'"


def md_cells(line: str) -> list[str]:
    """The cells of one GitHub pipe-table row: split on unescaped ``|``, outer pipes dropped."""
    cells, current, escaped = [], "", False
    for ch in line.strip():
        if escaped:
            current += ch
            escaped = False
        elif ch == "\\":
            current += ch
            escaped = True
        elif ch == "|":
            cells.append(current)
            current = ""
        else:
            current += ch
    cells.append(current)
    if line.strip().startswith("|"):
        cells = cells[1:]
    if line.strip().endswith("|") and not line.strip().endswith("\\|"):
        cells = cells[:-1]
    return [c.strip() for c in cells]


def md_tables(text: str) -> list[list[list[str]]]:
    """Every pipe table of a Markdown text as rows of cells (header first, delimiter row dropped);
    a table without a valid delimiter row fails the test."""
    tables, block = [], []
    for line in [*text.splitlines(), ""]:
        if line.startswith("|"):
            block.append(line)
            continue
        if block:
            assert re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", block[1]), block[1]
            tables.append([md_cells(row) for row in [block[0], *block[2:]]])
            block = []
    return tables


def assert_rectangular(text: str) -> list[list[list[str]]]:
    tables = md_tables(text)
    assert tables
    for rows in tables:
        widths = {len(r) for r in rows}
        assert widths == {len(rows[0])}, f"rows of {widths} cells under a header of {len(rows[0])}"
    return tables


def _row(text: str, label: str) -> list[str]:
    return next(r for t in md_tables(text) for r in t if r[0] == label)


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


def test_markdown_layout() -> None:
    text = render(_tables(), "md")
    header = next(line for line in text.splitlines() if line.startswith("|  |"))
    assert header == "|  | Baseline | ImageNet | SimSiam | SSCL |"
    forest = _row(text, "Forest")
    assert forest[2] == "73.1 ± 1.0"  # imagenet at 200: 0.7 + 0.02 + mean seed 0.01 + 0.001
    rows = [r[0] for r in md_tables(text)[0]]
    assert rows == [
        "",
        "Forest",
        "Urban/Built-up",
        "Water",
        "AA",
        "OA",
        "mIoU",
        "macro F1",
        "ΔAA vs Baseline",
        "p AA (Holm)",
        "ΔOA vs Baseline",
        "p OA (Holm)",
        "AA sd: pretraining",
        "AA sd: label draw + training",
    ]
    assert "n = 3 evaluation seeds per method; K = 2 pretraining seed(s) per method." in text
    assert "ddof=1" in text and "budget unit: pixels" in text and "abc123" in text
    # 3 seeds over 2 pretraining runs (seed mod 2): the test runs over the 2 run means, so no
    # difference can be significant, and the table says so instead of marking anything
    assert "sign-flip test over the means of the paired seeds per pretraining run (2 runs" in text
    assert "with 2 pretraining runs no cell can be marked (smallest p = 2/2^2 = 0.5" in text
    assert "**" not in text
    # every seed of imagenet is exactly 0.2 above the baseline: a zero-width interval, p = 2/4 over
    # the 2 run means, x3 (Holm) capped at 1
    assert _row(text, "ΔOA vs Baseline")[1:] == [
        "—",
        "+20.0 [20.0, 20.0]",
        "+10.0 [10.0, 10.0]",
        "-10.0 [-10.0, -10.0]",
    ]
    assert _row(text, "p OA (Holm)")[1:] == ["—", "1.000", "1.000", "1.000"]


def test_only_corrected_significance_is_marked() -> None:
    # constructed 7-seed differences (tests/bench/test_statistics.py): Holm p simsiam 0.047,
    # sscl 0.0625 (0.031 uncorrected), core 1.0
    tables = build_tables(long_form(constructed_runs()))
    text = render(tables, "md")
    header = md_tables(text)[0][0]
    assert header == ["", "Baseline", "SimSiam", "SSCL", "CoRe"]  # competitors, then the ablation
    for label in ("Forest", "AA", "OA", "ΔAA vs Baseline", "p AA (Holm)"):
        cells = _row(text, label)
        assert cells[2].startswith("**") and cells[2].endswith("**↑"), (label, cells)
        assert "**" not in cells[1] + cells[3] + cells[4], (label, cells)
    assert _row(text, "p AA (Holm)")[2:] == ["**0.047**↑", "0.062", "1.000"]
    assert "Holm-corrected across the 3 columns of a row; bold = p \\< 0.05 after correction" in text
    tidy = pd.read_csv(io.StringIO(render(tables, "csv"))).set_index(["metric", "label"])
    assert bool(tidy.loc[("AA", "SimSiam"), "significant"]) and not tidy.loc[("AA", "SSCL"), "significant"]
    assert tidy.loc[("AA", "SimSiam"), "p_holm"] == pytest.approx(0.047, abs=5e-4)
    latex = render(tables, "latex")
    assert latex.count(r"\textbf{") == len(tables[0].rows) - 2  # every row but the two spread rows
    lower = constructed_runs()
    lower.loc[lower["method"] == "simsiam", ["AA", "OA"]] -= 0.5  # now 7 of 7 below the baseline
    assert _row(render(build_tables(long_form(lower)), "md"), "AA")[2].endswith("**↓")


def test_unavailable_method_is_a_short_na_with_its_reason_once() -> None:
    runs = make_runs(methods=("random", "sscl"), protocols=("linear", "finetune"))
    unavailable = {("fp0123456789abcdef", "tiny"): {"imagenet": TIMM_REASON}}
    tables = build_tables(long_form(runs), unavailable=unavailable)
    text = render(tables, "md")
    parsed = assert_rectangular(text)
    assert len(parsed) == 4 and all(t[0] == ["", "Baseline", "ImageNet", "SSCL"] for t in parsed)
    assert {r[2] for t in parsed for r in t[1:]} == {"n/a¹"}
    escaped = md_escape(f"ImageNet: {TIMM_REASON}")
    assert "resnet18\\|resnet50" in escaped and text.count(f"¹ {escaped}") == 4  # once per table
    latex = render(tables, "latex")
    assert latex.count(r"n/a$^{1}$") == 4 * 13 and "resnet18|" not in latex
    assert r"-{}-backbone resnet18\textbar{}resnet50" in latex


def test_column_order_comes_from_registry_roles(control_method: str) -> None:
    methods = ("rf", "core", "sscl", "unifeat", "random", "simsiam", "imagenet", control_method)
    order = method_order(methods)
    assert [method_label(m) for m in order] == [
        "Baseline",
        "ImageNet",
        "SimSiam",
        "SSCL",
        "CoRe",
        "UniFeat",
        "Random forest",
        "Positive control",
    ]


@pytest.fixture
def control_method() -> Iterator[str]:
    """A method registered with ``role = "control"`` (removed from the registry afterwards)."""
    from methods.registry import _METHODS, PretrainMethod, register_method

    @register_method("zz_control_test")
    class Control(PretrainMethod):
        description = "test-only control"
        label = "Positive control"
        role = "control"

        def pretrain(self, backbone, images, ctx) -> None:  # type: ignore[no-untyped-def]
            """Does nothing: only its place in tables is under test."""

    yield "zz_control_test"
    _METHODS.pop("zz_control_test")


def test_reference_columns_follow_the_methods_and_are_tested_too() -> None:
    runs = pd.concat(
        [make_runs(methods=("sscl", "random"), protocols=("linear", "finetune")), reference_runs()],
        ignore_index=True,
    )
    tables = build_tables(long_form(runs))
    assert [t.key["protocol"] for t in tables] == ["finetune", "finetune", "linear", "linear"]
    text = render(tables, "md")
    labels = [method_label(m) for m in method_order(["raw", "rf"])]
    assert text.count("|  | Baseline | SSCL | " + " | ".join(labels) + " |") == 4
    assert "across the 3 columns of a row" in text  # sscl, raw and rf against the Baseline
    ref_delta = {"Raw bands": "-10.0 [-10.0, -10.0]", "Random forest": "+0.0 [0.0, 0.0]"}
    assert _row(text, "ΔAA vs Baseline")[1:] == ["—", "-10.0 [-10.0, -10.0]", *(ref_delta[x] for x in labels)]
    spread = _row(text, "AA sd: pretraining")
    assert spread[-2:] == ["—¹", "—¹"] and "¹ no pretraining: all spread is evaluation" in text


def test_spread_by_source_rows() -> None:
    # 4 seeds, pretraining seed = seed mod 2: groups {0, 2} and {1, 3}; AA = const + seed / 100
    runs = make_runs(methods=("random", "sscl"), budgets=(200,), seeds=(0, 1, 2, 3))
    text = render(build_tables(long_form(runs)), "md")
    # values 0, 1, 2, 3 (percent points) in groups (0, 2), (1, 3): means 1, 2; MSW = 4 x 1 / 2 = 2;
    # MSB = 2 x (0.25 + 0.25) = 1 < MSW: the between part truncates to 0
    assert _row(text, "AA sd: pretraining")[1:] == ["0.0 (0%)", "0.0 (0%)"]
    assert _row(text, "AA sd: label draw + training")[1:] == ["1.4", "1.4"]
    one = runs.assign(pretrain_seed=0)
    text = render(build_tables(long_form(one)), "md")
    assert _row(text, "AA sd: pretraining")[1:] == ["n/a¹", "n/a¹"]
    assert "¹ K = 1: pretraining variance unknown" in text


def test_unhealthy_pretraining_is_marked_with_its_reason() -> None:
    runs = make_runs(methods=("random", "sscl"), budgets=(200,)).assign(pretrain_health="passed")
    bad = (runs["method"] == "sscl") & (runs["seed"] == 1)
    runs.loc[bad, "pretrain_health"] = "failed: sscl seed 1: CoRe skill 0.001 < 0.05"
    text = render(build_tables(long_form(runs)), "md")
    assert_rectangular(text)
    assert _row(text, "AA")[2].endswith("‡") and not _row(text, "AA")[1].endswith("‡")
    note = "‡ SSCL: 1 of 3 seed runs use weights from a pretraining that failed its health gate"
    assert text.count(note) == 1 and "CoRe skill 0.001 \\< 0.05" in text
    assert r"$^\ddagger$" in render(build_tables(long_form(runs)), "latex")


def test_latex_escapes_and_compiles(tmp_path: Path) -> None:
    assert latex_escape("a&b_c%d#e|f--g<h") == r"a\&b\_c\%d\#e\textbar{}f-{}-g\textless{}h"
    assert latex_escape("a---b") == "a-{}-{}-b"
    tables = build_tables(
        long_form(make_runs(methods=("sscl", "random", "simsiam", "imagenet"))),
        unavailable={("fp0123456789abcdef", "tiny"): {"unifeat": TIMM_REASON}},
    )
    text = render(tables, "latex")
    assert text.count(r"\begin{tabular}{lrrrrr}") == 2 and text.count(r"\bottomrule") == 2
    assert r"$\Delta$AA vs Baseline & --- & +20.0 [20.0, 20.0]" in text
    body = [line for line in text.splitlines() if line.endswith(r"\\") and "&" in line]
    assert all(line.count("&") - line.count(r"\&") == 5 for line in body)
    if shutil.which("pdflatex") is None:
        pytest.skip("pdflatex not installed: structure checked only")
    committed = (REPO / "results" / "table.tex").read_text()
    for name, tables_tex in (("t", text), ("committed", committed)):
        doc = tmp_path / f"{name}.tex"
        doc.write_text(
            "\\documentclass{article}\\usepackage[utf8]{inputenc}\\usepackage{booktabs,graphicx}"
            "\\begin{document}\n" + tables_tex + "\\end{document}\n"
        )
        done = subprocess.run(
            ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
            cwd=tmp_path,
            capture_output=True,
            text=True,
        )
        assert done.returncode == 0, done.stdout[-2000:]
        assert (tmp_path / f"{name}.pdf").exists()
        assert "Overfull \\hbox" not in done.stdout  # wide tables are scaled to the line


def test_summary_is_the_aa_rows_of_the_tables() -> None:
    runs = pd.concat([constructed_runs(), constructed_runs().assign(protocol="finetune")], ignore_index=True)
    runs["result_key"] += runs["protocol"]
    tables = build_tables(long_form(runs))
    text = render(tables, "summary")
    (table,) = assert_rectangular(text)
    assert table[0] == ["protocol", "budget", "Baseline", "SimSiam", "SSCL", "CoRe"]
    assert [r[:2] for r in table[1:]] == [["finetune", "200"], ["linear", "200"]]
    md = render(tables, "md")
    aa, delta = _row(md, "AA"), _row(md, "ΔAA vs Baseline")
    assert table[1][2] == aa[1]  # the Baseline: no difference to itself
    assert table[1][3] == f"**{aa[2].strip('*↑')} ({delta[2].strip('*↑')})**↑"
    assert table[1][4] == f"{aa[3]} ({delta[3]})" and "**" not in table[1][4]


def test_summary_states_the_test_once_when_rows_compare_different_columns() -> None:
    """A partial sweep: CoRe has no finetune runs yet, so that row's Holm family is one column
    smaller; the footer says so in one sentence instead of repeating it per family size."""
    linear = constructed_runs()
    finetune = constructed_runs().assign(protocol="finetune")
    runs = pd.concat([linear, finetune[finetune["method"] != "core"]], ignore_index=True)
    runs["result_key"] += runs["protocol"]
    text = render(build_tables(long_form(runs)), "summary")
    assert text.count("exact two-sided sign-flip test") == 1
    assert "Holm-corrected across the 2 or 3 columns of a row" in text


def test_committed_results_parse_and_the_readme_shows_the_summary() -> None:
    for name in ("table.md", "summary.md"):
        assert_rectangular((REPO / "results" / name).read_text())
    csv = (REPO / "results" / "table.csv").read_text()
    for block in csv.strip().split("\n\n"):
        frame = pd.read_csv(io.StringIO(block), comment="#")
        assert frame.shape[1] >= 3 and not frame.columns.str.startswith("Unnamed").any()
    readme = (REPO / "README.md").read_text()
    start, end = "<!-- summary:start -->\n", "<!-- summary:end -->"
    assert readme.count(start) == 1 and readme.count(end) == 1
    block = readme.split(start)[1].split(end)[0]
    assert block.strip() == (REPO / "results" / "summary.md").read_text().strip()


def test_versus_prints_each_method_minus_another_with_interval_and_corrected_p(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``bench table --versus simsiam`` on a long CSV made here: SSCL - SimSiam paired by seed."""
    from bench.cli import main

    simsiam = [0.01, 0.02, 0.03, 0.01, 0.02, 0.03, 0.01]  # simsiam - random per seed
    gain = [0.02, 0.01, 0.03, 0.02, 0.01, 0.03, 0.02]  # sscl - simsiam per seed
    methods = ("random", "simsiam", "sscl")
    jitter = {("simsiam", s): d - 0.1 for s, d in enumerate(simsiam)}
    jitter |= {("sscl", s): d + g - 0.2 for s, (d, g) in enumerate(zip(simsiam, gain, strict=True))}
    runs = make_runs(methods, (200,), tuple(range(7)), jitter=jitter, pretrain_k=None)
    path = tmp_path / "long.csv"
    path.write_text(long_form(runs).to_csv(index=False))
    assert main(["table", "--from", str(path), "--versus", "simsiam"]) == 0
    text = capsys.readouterr().out
    assert md_tables(text)[0][0] == ["", "Baseline", "SimSiam", "SSCL"]
    # SSCL: mean 0.02; sd sqrt(4e-4 / 6) = 0.008165; t(0.975, 6) = 2.447: half 0.00755 -> [1.2, 2.8].
    # Baseline: mean -0.13 / 7 = -0.0186; sd 0.008997: half 0.00832 -> [-2.7, -1.0]
    assert _row(text, "ΔAA vs SimSiam")[1:] == ["**-1.9 [-2.7, -1.0]**↓", "—", "**+2.0 [1.2, 2.8]**↑"]
    # both columns all of one sign against SimSiam: 2 / 128 each, Holm over the 2: 0.03125
    assert _row(text, "p AA vs SimSiam (Holm)")[1:] == ["**0.031**↓", "—", "**0.031**↑"]
    assert "ΔAA vs Baseline" in [r[0] for r in md_tables(text)[0]]  # the Baseline's rows stay
    assert "Δ vs SimSiam = each column minus SimSiam" in text and "across the 2 columns of that row" in text
    assert main(["table", "--from", str(path), "--versus", "unifeat"]) == 2  # not among the runs
    assert "--versus unifeat: no runs of it" in capsys.readouterr().err


@pytest.mark.usefixtures("tracked")
def test_table_command_reads_the_store_and_its_long_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from bench.cli import main

    out, long_csv = tmp_path / "t.tex", tmp_path / "long.csv"
    args = ["table", "--format", "latex", "--samples", "800", "--out", str(out), "--long-csv", str(long_csv)]
    assert main(args) == 0
    assert out.read_text().count(r"\begin{table}") == 1 and "800 labelled pixels per class" in out.read_text()
    long = pd.read_csv(long_csv, keep_default_na=False)
    assert len(long) == 2 * 3 * 10  # 2 methods x 3 seeds at 800; accuracy and IoU x 3 classes + 4 summaries
    assert {"method", "budget", "seed", "protocol", "metric", "class", "value"} <= set(long.columns)
    paired = pd.read_csv(tmp_path / "long_paired.csv", keep_default_na=False)
    assert set(paired["metric"]) == {"accuracy", "AA", "OA", "mIoU", "macroF1"} and set(paired["method"]) == {
        "sscl"
    }
    assert (paired["baseline"] == "random").all() and (paired["pairs"] == 3).all()
    assert {"p_value", "p_holm", "significant", "comparisons"} <= set(paired.columns)
    # 3 pairs of one sign over 2 pretraining runs (seed mod 2): 2 run means, 2 / 4
    assert (paired["unit"] == "pretraining run").all() and (paired["units"] == 2).all()
    assert (paired["p_value"] == 0.5).all()
    variance = pd.read_csv(tmp_path / "long_variance.csv")
    assert set(variance["metric"]) == {"AA", "OA"} and (variance["K"] == 2).all()
    # the same table again, from the long CSV alone
    again = tmp_path / "again.tex"
    assert main(["table", "--from", str(long_csv), "--format", "latex", "--out", str(again)]) == 0
    assert again.read_text() == out.read_text()
    assert main(["table", "--protocol", "finetune"]) == 2  # nothing matches: a clear error, exit 2
    capsys.readouterr()
    assert main(["table", "--samples", "200", "--format", "csv"]) == 0  # the store's health tags
    printed = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    health = set(printed.loc[printed["method"] == "sscl", "health"])
    assert health == {"1 of 3 seed runs: failed: sscl seed 1: skill 0.001"}
    assert set(printed.loc[printed["method"] == "random", "health"]) == {""}
    assert main(["table", "--from", str(tmp_path / "missing.csv")]) == 2
    assert main(["table", "--from", str(out)]) == 2  # not a long CSV: one line
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and "missing.csv: no such file" in err[0] and "not a long-form CSV" in err[1]


def test_methods_and_samples_filters(tmp_path: Path) -> None:
    from bench.cli import build_parser
    from bench.cli.table import selected_long_form

    long_csv = tmp_path / "long.csv"
    long_form(make_runs(methods=("random", "sscl", "simsiam"), budgets=(200, 600, 1000))).to_csv(
        long_csv, index=False
    )
    for command in ("table", "plot"):
        args = build_parser().parse_args(
            [command, "--from", str(long_csv), "--samples", "200,1000", "--methods", "random,sscl"]
        )
        long = selected_long_form(args)
        assert set(long["budget"]) == {200, 1000} and set(long["method"]) == {"random", "sscl"}


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


def test_labels_and_roles_read_from_source_equal_the_registrys() -> None:
    from bench.cli.table import source_method_infos
    from methods.registry import method_infos

    source = source_method_infos()
    assert source is not None  # this repository's registrations are all literal
    names = {m.name for m in source}
    # tests register methods of their own at run time: compare the ones the source has
    assert source == [m for m in method_infos() if m.name in names]
    assert [m.name for m in source][:4] == ["random", "imagenet", "simsiam", "sscl"]


def test_reading_a_table_imports_no_method(tmp_path: Path) -> None:
    long_csv = tmp_path / "long.csv"
    long_form(make_runs(methods=("random", "sscl", "core"))).to_csv(long_csv, index=False)
    probe = (
        "import sys; from bench.cli import main; "
        f"assert main(['table', '--from', {str(long_csv)!r}, '--format', 'summary']) == 0; "
        "print(sorted(m for m in ('torch', 'lightly', 'timm') if m in sys.modules))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "[]"
    assert "| protocol | budget | Baseline | SSCL | CoRe |" in out  # the registry's labels and order
