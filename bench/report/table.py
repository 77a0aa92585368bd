"""The comparison table of DESIGN section 7, one per (protocol, budget), as Markdown, CSV or LaTeX.

Rows are the evaluated classes then AA and OA; columns are methods (Baseline, ImageNet, SimSiam,
SSCL, then any others); cells are ``mean ± std`` over seeds in percent with one decimal. The best
mean of each row (compared at the displayed precision, so ties share the mark) is bold in Markdown
and LaTeX and starred in CSV. Built from :func:`bench.report.aggregate.long_form` output only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from bench.report.aggregate import STD_KIND, TABLE_KEYS, method_label, method_order, summarise

FORMATS = ("md", "csv", "latex")
_UNIT_WORDS = {"pixels": "labelled pixels per class", "images": "labelled images"}


@dataclass(frozen=True)
class Table:
    """One (dataset, backbone, unit, protocol, budget) table: percent means/stds, rows x methods."""

    key: dict[str, object]
    mean: pd.DataFrame
    std: pd.DataFrame
    seeds: dict[str, int]
    code_versions: tuple[str, ...]

    @property
    def title(self) -> str:
        unit = str(self.key["budget_unit"])
        return (
            f"{self.key['protocol']}, {self.key['budget']} {_UNIT_WORDS.get(unit, unit)} "
            f"(backbone {self.key['backbone']}, dataset {str(self.key['dataset'])[:12]})"
        )

    def best(self) -> pd.DataFrame:
        """True where a cell holds its row's best mean at display precision."""
        shown = self.mean.round(1)
        return shown.eq(shown.max(axis=1), axis=0) & shown.notna()

    def footer(self) -> str:
        counts = set(self.seeds.values())
        if len(counts) == 1:
            seeds = f"n = {counts.pop()} seeds per method"
        else:
            seeds = "n seeds: " + ", ".join(f"{method_label(m)} {n}" for m, n in self.seeds.items())
        return (
            f"{seeds}; ± = {STD_KIND}; budget unit: {self.key['budget_unit']}; "
            f"code: {', '.join(self.code_versions) or 'unknown'}"
        )


def build_tables(long: pd.DataFrame) -> list[Table]:
    """Group the long form into tables, in (dataset, backbone, unit, protocol, budget) order."""
    if long.empty:
        return []
    stats = summarise(long)
    tables = []
    for values, group in stats.groupby(list(TABLE_KEYS), sort=True):
        key = dict(zip(TABLE_KEYS, values, strict=True))
        methods = method_order(group["method"])
        mean = group.pivot(index="metric", columns="method", values="mean")[methods] * 100
        std = group.pivot(index="metric", columns="method", values="std")[methods] * 100
        seeds = group[group["metric"] == "OA"].set_index("method")["n"].reindex(methods)
        sel = (long[list(TABLE_KEYS)] == pd.Series(key)).all(axis=1)
        versions = tuple(sorted(long.loc[sel, "code_version"].dropna().astype(str).unique()))
        tables.append(Table(key, mean, std, {m: int(n) for m, n in seeds.fillna(0).items()}, versions))
    return tables


def _cell(mean: float, std: float, pm: str) -> str:
    if math.isnan(mean):
        return "n/a"
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f}{pm}{std:.1f}"


def _cells(table: Table, pm: str, mark: str) -> pd.DataFrame:
    """Cell strings with the best of each row wrapped by ``mark`` (a format string)."""
    best = table.best()
    out = pd.DataFrame(index=table.mean.index, columns=table.mean.columns, dtype=object)
    for row in table.mean.index:
        for col in table.mean.columns:
            text = _cell(table.mean.at[row, col], table.std.at[row, col], pm)
            out.at[row, col] = mark.format(text) if best.at[row, col] else text
    return out


def to_markdown(tables: list[Table]) -> str:
    """GitHub Markdown: a heading, the pipe table (best in bold) and the footer per table."""
    parts = []
    for table in tables:
        cells = _cells(table, " ± ", "**{}**")
        header = ["", *(method_label(m) for m in cells.columns)]
        lines = [f"### {table.title}", "", "| " + " | ".join(header) + " |"]
        lines.append("|" + "---|" + "---:|" * len(cells.columns))
        lines += ["| " + " | ".join([str(r), *cells.loc[r]]) + " |" for r in cells.index]
        lines += ["", f"{table.footer()}; best per row in bold."]
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


def _csv_field(text: str) -> str:
    return f'"{text}"' if any(ch in text for ch in ',"\n') else text


def to_csv(tables: list[Table]) -> str:
    """CSV blocks, one per table: ``# title``, header, rows (best starred), ``# footer``.

    For machine use prefer the long-form CSV (``--long-csv``); this mirrors the printed table.
    """
    blocks = []
    for table in tables:
        cells = _cells(table, " ± ", "{}*")
        rows = [f"# {table.title}", ",".join(["row", *(method_label(m) for m in cells.columns)])]
        rows += [",".join(_csv_field(str(v)) for v in [r, *cells.loc[r]]) for r in cells.index]
        rows.append(f"# {table.footer()}; * = best per row")
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


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (``/`` needs none)."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def to_latex(tables: list[Table]) -> str:
    """booktabs ``table`` environments (needs ``\\usepackage{booktabs}``), best in bold."""
    parts = ["% requires \\usepackage{booktabs}"]
    for table in tables:
        cells = _cells(table, r" $\pm$ ", r"\textbf{{{}}}")
        header = " & ".join(["", *(latex_escape(method_label(m)) for m in cells.columns)])
        body = []
        for r in cells.index:
            if r == "AA":
                body.append(r"\midrule")
            body.append(" & ".join([latex_escape(str(r)), *cells.loc[r]]) + r" \\")
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
            r"\caption{" + latex_escape(f"{table.title}. {table.footer()}.").replace("±", r"$\pm$") + "}",
            r"\end{table}",
            "",
        ]
    return "\n".join(parts)


def render(tables: list[Table], fmt: str) -> str:
    """The tables in format ``fmt`` (one of :data:`FORMATS`)."""
    return {"md": to_markdown, "csv": to_csv, "latex": to_latex}[fmt](tables)
