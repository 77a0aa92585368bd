"""The comparison table of DESIGN section 7, one per (protocol, budget), as Markdown, CSV or LaTeX.

Rows are the evaluated classes, then AA and OA (the seed's form), mIoU and macro F1, then the paired
differences against the Baseline (``ΔAA vs Baseline``: mean difference over seeds with its 95% t
interval). Columns are methods in the registry's order, then the reference columns (``raw``,
``rf``), which are never marked. Cells are ``mean ± std`` over seeds in percent with one decimal.
A cell is marked best (bold; starred in CSV) only when its paired interval against the runner-up
excludes 0; otherwise the leaders are marked as tied (italics and a dagger). A line under the
title states what varied: n evaluation seeds and K pretraining seeds. Built from
:func:`bench.report.aggregate.long_form` output only.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field

import pandas as pd

from bench.report.aggregate import (
    SEGMENTATION_METRICS,
    STD_KIND,
    SUMMARY_METRICS,
    TABLE_KEYS,
    method_label,
    method_order,
    summarise,
    with_references,
)
from bench.report.statistics import (
    BEST,
    CONFIDENCE,
    TIE,
    PairedDifference,
    best_marks,
    paired_difference,
    per_seed,
)
from methods.registry import baseline_method

FORMATS = ("md", "csv", "latex")
_UNIT_WORDS = {"pixels": "labelled pixels per class", "images": "labelled images"}
#: Row label of each summary score (the per-class rows are labelled by the class name).
_SUMMARY_ROWS: dict[str, str] = {"AA": "AA", "OA": "OA", "mIoU": "mIoU", "macroF1": "macro F1"}


@dataclass(frozen=True)
class Table:
    """One (dataset, backbone, unit, protocol, budget) table: percent means/stds, rows x columns.

    ``marks`` holds ``best`` / ``tie`` / ``""`` per cell; ``paired`` maps a summary score to the
    paired difference (percent points) of each column against ``baseline``.
    """

    key: dict[str, object]
    mean: pd.DataFrame
    std: pd.DataFrame
    marks: pd.DataFrame
    paired: dict[str, dict[str, PairedDifference]]
    baseline: str | None
    references: tuple[str, ...]
    seeds: dict[str, int]
    pretrain_seeds: dict[str, int]
    code_versions: tuple[str, ...]
    #: Methods asked for that could not run here (``bench.harness.availability``), with the reason:
    #: shown as an ``n/a (reason)`` column rather than dropped.
    unavailable: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        unit = str(self.key["budget_unit"])
        return (
            f"{self.key['protocol']}, {self.key['budget']} {_UNIT_WORDS.get(unit, unit)} "
            f"(backbone {self.key['backbone']}, dataset {str(self.key['dataset'])[:12]})"
        )

    def varied(self) -> str:
        """What the ± spans: n evaluation seeds (label draws) and K pretraining seeds per method."""
        seeds = _per_method("n", self.seeds, "evaluation seeds")
        return f"{seeds}; {_per_method('K', self.pretrain_seeds, 'pretraining seed(s)')}"

    def footer(self) -> str:
        refs = ", ".join(method_label(m) for m in self.references)
        parts = [
            f"± = {STD_KIND}",
            f"Δ = mean paired difference over seeds [{CONFIDENCE:.0%} t interval]",
            f"budget unit: {self.key['budget_unit']}",
            *([f"reference columns (not marked): {refs}"] if refs else []),
            f"code: {', '.join(self.code_versions) or 'unknown'}",
        ]
        return "; ".join(parts)


def _per_method(symbol: str, counts: dict[str, int], what: str) -> str:
    if not counts:
        return f"{symbol} unknown"
    values = set(counts.values())
    if len(values) == 1:
        return f"{symbol} = {values.pop()} {what} per method"
    return f"{symbol} ({what}): " + ", ".join(f"{method_label(m)} {n}" for m, n in counts.items())


def _rows(group: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(row label, metric, class) of a table in display order: classes, AA, OA, mIoU, macro F1."""
    present = group[["metric", "class"]].drop_duplicates().sort_values(["metric", "class"])
    rows = [(str(c), "accuracy", str(c)) for m, c in present.itertuples(index=False) if m == "accuracy"]
    summaries = set(present["metric"].astype(str))
    rows += [(_SUMMARY_ROWS[m], m, "") for m in (*SUMMARY_METRICS, *SEGMENTATION_METRICS) if m in summaries]
    return rows


def build_tables(
    long: pd.DataFrame,
    baseline: str | None = None,
    unavailable: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
) -> list[Table]:
    """Group the long form into tables, in (dataset, backbone, unit, protocol, budget) order.

    ``baseline``: the method paired differences are taken against (default: the registry's).
    ``unavailable``: ``{(dataset, backbone): {method: reason}}`` of methods that could not run
    (:func:`bench.harness.availability.recorded_unavailable`); each gets an ``n/a (reason)``
    column in the tables of that dataset and backbone where it has no results.
    """
    if long.empty:
        return []
    baseline = baseline or baseline_method()
    view = with_references(long)
    stats = summarise(view)
    references = set(view.loc[view["reference"], "method"])
    tables = []
    for values, group in stats.groupby(list(TABLE_KEYS), sort=True):
        key = dict(zip(TABLE_KEYS, values, strict=True))
        runs = view[(view[list(TABLE_KEYS)] == pd.Series(key)).all(axis=1)]
        present = set(group["method"])
        where = (str(key["dataset"]), str(key["backbone"]))
        missing = {m: r for m, r in (unavailable or {}).get(where, {}).items() if m not in present}
        deep = method_order((present - references) | set(missing))
        refs = method_order(present & references)
        columns = deep + refs
        rows = _rows(group)
        labels = [label for label, _, _ in rows]
        indexed = group.set_index(["metric", "class", "method"])
        mean = pd.DataFrame(index=labels, columns=columns, dtype=float)
        std = mean.copy()
        marks = pd.DataFrame("", index=labels, columns=columns)
        for label, metric, cls in rows:
            for method in columns:
                if (metric, cls, method) in indexed.index:
                    mean.at[label, method] = 100 * indexed.at[(metric, cls, method), "mean"]
                    std.at[label, method] = 100 * indexed.at[(metric, cls, method), "std"]
            for method, mark in best_marks(per_seed(runs[~runs["reference"]], metric, cls)).items():
                marks.at[label, method] = mark
        paired: dict[str, dict[str, PairedDifference]] = {}
        for metric in SUMMARY_METRICS:
            seeds = per_seed(runs, metric) * 100
            if baseline in seeds.columns:
                paired[metric] = {
                    m: paired_difference(seeds[m], seeds[baseline]) for m in columns if m in seeds.columns
                }
        oa = group[group["metric"] == "OA"].set_index("method")["n"].reindex(columns).fillna(0)
        k: dict[str, int] = {}
        if "pretrain_seed" in runs.columns:  # runs recorded before it was a param have none: K unknown
            known = runs[~runs["reference"]].dropna(subset=["pretrain_seed"])
            counts = known.groupby("method")["pretrain_seed"].nunique()
            k = {m: int(counts[m]) for m in deep if m in counts.index}
        versions = tuple(sorted(runs["code_version"].dropna().astype(str).unique()))
        tables.append(
            Table(
                key=key,
                mean=mean,
                std=std,
                marks=marks,
                paired=paired,
                baseline=baseline if paired else None,
                references=tuple(refs),
                seeds={m: int(n) for m, n in oa.items()},
                pretrain_seeds=k,
                code_versions=versions,
                unavailable=missing,
            )
        )
    return tables


def _cell(mean: float, std: float, pm: str) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f}{pm}{std:.1f}"


def _delta(diff: PairedDifference) -> str:
    """``+2.1 [0.4, 3.8]`` in percent points; the interval is left out below two paired seeds."""
    if math.isnan(diff.mean):
        return "n/a"
    if math.isnan(diff.low):
        return f"{diff.mean:+.1f}"
    return f"{diff.mean:+.1f} [{diff.low:.1f}, {diff.high:.1f}]"


def _cells(table: Table, pm: str, marks: dict[str, str], none: str) -> pd.DataFrame:
    """Cell strings, marked cells wrapped by ``marks[mark]`` (format strings), then the Δ rows."""
    out = pd.DataFrame(index=table.mean.index, columns=table.mean.columns, dtype=object)
    for row in table.mean.index:
        for col in table.mean.columns:
            text = _cell(table.mean.at[row, col], table.std.at[row, col], pm)
            mark = table.marks.at[row, col]
            out.at[row, col] = marks[mark].format(text) if mark else text
    for col, reason in table.unavailable.items():
        out.at[out.index[0], col] = f"n/a ({reason})"
    for metric, diffs in table.paired.items():
        label = f"Δ{metric} vs {method_label(str(table.baseline))}"
        out.loc[label] = [
            none if col == table.baseline else _delta(diffs[col]) if col in diffs else "n/a"
            for col in table.mean.columns
        ]
    return out


def _legend(table: Table, best: str, tie: str) -> str:
    kinds = set(table.marks.to_numpy().ravel())
    parts = []
    if BEST in kinds:
        parts.append(f"{best}: best, its paired {CONFIDENCE:.0%} interval against the runner-up excludes 0")
    if TIE in kinds:
        parts.append(
            f"{tie}: tied for best, a paired {CONFIDENCE:.0%} interval against the leader includes 0"
        )
    return "; ".join(parts)


def to_markdown(tables: list[Table]) -> str:
    """GitHub Markdown: a heading, what varied, the pipe table and the footer per table."""
    parts = []
    for table in tables:
        cells = _cells(table, " ± ", {BEST: "**{}**", TIE: "*{}*†"}, "—")
        header = ["", *(method_label(m) for m in cells.columns)]
        lines = [f"### {table.title}", "", f"{table.varied()}.", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" + "---:|" * len(cells.columns))
        lines += ["| " + " | ".join([str(r), *cells.loc[r]]) + " |" for r in cells.index]
        legend = _legend(table, "bold", "italics†")
        lines += ["", f"{table.footer()}." + (f" {legend}." if legend else "")]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _csv_field(text: str) -> str:
    return f'"{text}"' if any(ch in text for ch in ',"\n') else text


def to_csv(tables: list[Table]) -> str:
    """CSV blocks, one per table: ``# title``, ``# what varied``, header, rows, ``# footer``.

    For machine use prefer the long-form CSV (``--long-csv``) and its paired companion; this
    mirrors the printed table (best starred, ties with a dagger).
    """
    blocks = []
    for table in tables:
        cells = _cells(table, " ± ", {BEST: "{}*", TIE: "{}†"}, "")
        rows = [f"# {table.title}", f"# {table.varied()}"]
        rows.append(",".join(["row", *(_csv_field(method_label(m)) for m in cells.columns)]))
        rows += [",".join(_csv_field(str(v)) for v in [r, *cells.loc[r]]) for r in cells.index]
        legend = _legend(table, "*", "†")
        rows.append(f"# {table.footer()}" + (f"; {legend}" if legend else ""))
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks) + "\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}
_LATEX_SYMBOLS = {"±": r"$\pm$", "Δ": r"$\Delta$", "†": r"$^\dagger$", "—": "--"}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (``/`` needs none) and spell ±, Δ, † in math mode."""
    return "".join(_LATEX_SPECIAL.get(ch, _LATEX_SYMBOLS.get(ch, ch)) for ch in text)


def to_latex(tables: list[Table]) -> str:
    """booktabs ``table`` environments (needs ``\\usepackage{booktabs}``), best in bold."""
    parts = ["% requires \\usepackage{booktabs}"]
    for table in tables:
        cells = _cells(table, r" $\pm$ ", {BEST: r"\textbf{{{}}}", TIE: r"\textit{{{}}}$^\dagger$"}, "--")
        header = " & ".join(["", *(latex_escape(method_label(m)) for m in cells.columns)])
        body = []
        first_delta = next((r for r in cells.index if str(r).startswith("Δ")), None)
        for r in cells.index:
            if r in ("AA", first_delta):
                body.append(r"\midrule")
            body.append(" & ".join([latex_escape(str(r)), *cells.loc[r]]) + r" \\")
        legend = _legend(table, "bold", "italics†")
        caption = f"{table.title}. {table.varied()}. {table.footer()}." + (f" {legend}." if legend else "")
        parts += [
            r"\begin{table}[t]",
            r"\centering",
            r"\begin{tabular}{l" + "r" * len(cells.columns) + "}",
            r"\toprule",
            header + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}",
            r"\caption{" + latex_escape(caption) + "}",
            r"\end{table}",
            "",
        ]
    return "\n".join(parts)


def render(tables: list[Table], fmt: str) -> str:
    """The tables in format ``fmt`` (one of :data:`FORMATS`)."""
    return {"md": to_markdown, "csv": to_csv, "latex": to_latex}[fmt](tables)
