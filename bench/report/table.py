r"""The comparison table of DESIGN section 7, one per (protocol, budget): Markdown, LaTeX, summary, CSV.

Rows are the evaluated classes, then AA and OA (the seed's form), mIoU and macro F1; then the
paired rows against the Baseline (``ΔAA vs Baseline``: mean paired difference over seeds with its
95% t interval, and ``p AA (Holm)``: the exact sign-flip p-value after Holm's correction across
the columns of that row, :mod:`bench.report.statistics`); then the AA spread split by source
(between pretraining seeds vs within one: label draw + training seed). Columns are methods in the
registry's order (``PretrainMethod.role``): the seed's four (Baseline, ImageNet, SimSiam, SSCL),
then ablations, then reference rows and controls. Cells are ``mean ± std`` over seeds in percent
with one decimal.

A cell is **marked** (bold, with ↑ or ↓ for the direction; ↑/↓ alone in CSV) only when its
Holm-corrected paired test against the Baseline gives ``p < 0.05``; no other "best" is claimed.
The test's unit is what is replicated: the paired seed when every seed has its own pretraining
run, else the pretraining run (the mean of the seeds sharing one,
:func:`bench.report.statistics.paired_difference`); the footer names it. With ``versus=METHOD``
(``bench table --versus simsiam``) two more rows per summary score, ``ΔAA vs SimSiam`` and ``p AA
vs SimSiam (Holm)``, give every column minus METHOD, paired and corrected the same way (Holm
across the columns of that row, its own family); they mark their own cells only.
A method that could not run is a short ``n/a`` whose reason is a footnote, once per table; a
method whose seed runs used weights from a pretraining that failed its health gate
(``bench.pretrain_health = failed: ...``) carries ‡ with the reason in a footnote; one whose seed
runs used weights that score below their own random init on validation pixels (the usefulness
figure, ``bench.pretrain_usefulness = below init: ...``, :mod:`bench.harness.usefulness`) carries
† with the figures in a footnote: marked, never dropped (it is no gate). Every piece of text is
escaped for its format (:func:`md_escape`, :func:`latex_escape`, CSV quoting).

``summary`` is the README's headline: AA by (protocol, budget), methods as columns, the paired
difference and its interval in each cell, marked by the same corrected tests as the tables.
``csv`` is tidy data (:func:`to_csv`): one row per (table, method, score), numbers in percent,
that ``pandas.read_csv`` or R read as they are. ``latex`` (alias ``tex``) gives each table a
``\label`` and a one-line caption; what varied, the test and the footer follow as a note.
Built from :func:`bench.report.aggregate.long_form` output only.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import pandas as pd

from bench.report.aggregate import (
    BELOW_INIT,
    COMPUTE_KEY,
    SEGMENTATION_METRICS,
    STD_KIND,
    SUMMARY_METRICS,
    TABLE_KEYS,
    baseline_name,
    below_init,
    failed_health,
    method_label,
    method_order,
    summarise,
    with_references,
)
from bench.report.statistics import (
    ALPHA,
    CONFIDENCE,
    K1_NOTE,
    NO_PRETRAINING_NOTE,
    ONE_PER_PRETRAINING_NOTE,
    RUN_UNIT,
    min_seeds,
    paired_comparisons,
    variance_by_source,
)

FORMATS = ("md", "csv", "latex", "tex", "summary")
#: The file each format writes inside ``--out DIR/`` (``results/`` holds these names).
_FILE_NAMES = {"md": "table.md", "csv": "table.csv", "latex": "table.tex", "tex": "table.tex"}
_FILE_NAMES["summary"] = "summary.md"
_UNIT_WORDS = {"pixels": "labelled pixels per class", "images": "labelled images"}
#: Row label of each summary score (the per-class rows are labelled by the class name).
_SUMMARY_ROWS: dict[str, str] = {"AA": "AA", "OA": "OA", "mIoU": "mIoU", "macroF1": "macro F1"}
HIGHER, LOWER = "higher", "lower"
HEALTH_MARK = "‡"
#: The mark of a method whose weights score below their own random init (usefulness figure).
BELOW_INIT_MARK = "†"
_SUPERSCRIPTS = str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")
#: Footnote markers other than the numbered ones, and how LaTeX spells them.
_LATEX_MARKS = {HEALTH_MARK: r"$^\ddagger$", BELOW_INIT_MARK: r"$^\dagger$"}


@dataclass(frozen=True)
class Cell:
    """One cell: plain (unescaped) text, its significance mark and its footnote markers."""

    text: str
    mark: str = ""  # HIGHER / LOWER when the corrected test against the Baseline says so
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class Table:
    """One (dataset, backbone, unit, protocol, budget, pretraining images) table of :class:`Cell` rows
    x method columns.

    ``notes`` maps a footnote marker (``1``, ``2``, ``‡``) to its text, in first-use order;
    ``comparisons`` holds this table's rows of :func:`bench.report.statistics.paired_comparisons`
    and ``variance`` its rows of :func:`~bench.report.statistics.variance_by_source` (fractions).
    """

    key: dict[str, object]
    columns: list[str]
    rows: list[tuple[str, list[Cell]]]
    notes: dict[str, str]
    baseline: str | None
    references: tuple[str, ...]
    seeds: dict[str, int]
    pretrain_seeds: dict[str, int]
    code_versions: tuple[str, ...]
    comparisons: pd.DataFrame
    variance: pd.DataFrame
    unavailable: dict[str, str] = field(default_factory=dict)
    #: ``--versus METHOD``: the method every column is also compared with, and those rows of
    #: :func:`~bench.report.statistics.paired_comparisons` (empty when not asked or not present).
    versus: str | None = None
    versus_comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: This table's rows of :func:`bench.report.aggregate.summarise` (fractions): the tidy CSV's numbers.
    stats: pd.DataFrame = field(default_factory=pd.DataFrame)
    #: Method -> how many of its seed runs used weights that failed their health gate, and why (‡).
    health: dict[str, str] = field(default_factory=dict)
    #: Method -> how many of its seed runs used weights below their own random init, and by how
    #: much (†; :mod:`bench.harness.usefulness`).
    below_init: dict[str, str] = field(default_factory=dict)

    @property
    def title(self) -> str:
        unit = str(self.key["budget_unit"])
        return (
            f"{self.key['protocol']}, {self.key['budget']} {_UNIT_WORDS.get(unit, unit)} "
            f"(backbone {self.key['backbone']}, dataset {str(self.key['dataset'])[:12]})"
        )

    def row(self, label: str) -> list[Cell]:
        return next(cells for name, cells in self.rows if name == label)

    def varied(self) -> str:
        """What the ± spans: n evaluation seeds (label draws) and K pretraining seeds per method."""
        seeds = _per_method("n", self.seeds, "evaluation seeds")
        return f"{seeds}; {_per_method('K', self.pretrain_seeds, 'pretraining seed(s)')}"

    def family_size(self) -> int:
        """How many columns one row's Holm correction spans (0 without a Baseline)."""
        return 0 if self.comparisons.empty else int(self.comparisons["comparisons"].max())

    def test_note(self, columns: str | None = None) -> str:
        """How cells are marked, over which unit, and whether any can be with this many units;
        ``columns`` words the family size when one note speaks for tables of different sizes (the
        summary's rows)."""
        if self.comparisons.empty:
            if self.baseline is not None and self.baseline in self.columns:  # shown, alone with results
                return "no paired test (no method beside the Baseline has results in this table)"
            return "no paired test (no Baseline in this table)"
        m = self.family_size()
        text = (
            f"p = exact two-sided sign-flip test over {_unit_words(self.comparisons)}, Holm-corrected "
            f"across the {columns or m} columns of a row; bold = p < {ALPHA:g} after correction (↑ above, "
            "↓ below the Baseline)"
        )
        return text + _reachable(self.comparisons, m)

    def versus_note(self) -> str:
        """How the ``Δ vs METHOD`` rows are tested ('' without them)."""
        if self.versus is None or self.versus_comparisons.empty:
            return ""
        m = int(self.versus_comparisons["comparisons"].max())
        return (
            f"Δ vs {method_label(self.versus)} = each column minus {method_label(self.versus)}, paired "
            f"and tested the same way over {_unit_words(self.versus_comparisons)}, Holm-corrected across "
            f"the {m} columns of that row (its own family)" + _reachable(self.versus_comparisons, m)
        )

    def footer(self) -> str:
        parts = [
            f"± = {STD_KIND}",
            f"Δ = mean paired difference [{CONFIDENCE:.0%} t interval over the test's units]",
            self.test_note(),
            *([self.versus_note()] if self.versus_note() else []),
            "AA spread: sd between pretraining seeds (its share of the variance) and within one "
            "(label draw + training seed)",
            f"budget unit: {self.key['budget_unit']}",
            *([f"pretraining: {self.images} images per trained method"] if self.images else []),
            f"code: {', '.join(self.code_versions) or 'unknown'}",
        ]
        return "; ".join(parts)

    @property
    def images(self) -> int:
        """The compute level (``--pretrain-images``) of the trained methods here; 0 when not recorded."""
        return int(str(self.key.get(COMPUTE_KEY, 0) or 0))


def _unit_words(comparisons: pd.DataFrame) -> str:
    """What a table's tests ran over: paired seeds, or pretraining-run means when seeds share runs."""
    by_run = comparisons[comparisons["unit"] == RUN_UNIT]
    if by_run.empty:
        return "paired seeds"
    runs = sorted({int(u) for u in by_run["units"]})
    pairs = int(by_run["pairs"].max())
    words = (
        f"the means of the paired seeds per pretraining run ({'/'.join(map(str, runs))} runs for up to "
        f"{pairs} seeds: seeds that share a pretraining run are not independent)"
    )
    clustered, every = by_run["method"].nunique(), comparisons["method"].nunique()
    if clustered < every:
        words += f" for {clustered} of the {every} columns, over paired seeds for the others"
    return words


def _reachable(comparisons: pd.DataFrame, m: int) -> str:
    """'; with 3 pretraining runs no cell can be marked ...' when too few units for ``m`` tests."""
    units = int(comparisons["units"].max())
    if units >= min_seeds(m):
        return ""
    what = "pretraining runs" if (comparisons["unit"] == RUN_UNIT).all() else "paired seeds"
    return (
        f"; with {units} {what} no cell can be marked (smallest p = 2/2^{units} = {2 / 2**units:.3g} "
        f"before correction; {min_seeds(m)} needed for {m} comparisons)"
    )


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


class _Notes:
    """Footnote markers of one table: numbered in first-use order, one per distinct text."""

    def __init__(self) -> None:
        self.notes: dict[str, str] = {}

    def add(self, text: str, marker: str | None = None) -> str:
        for key, value in self.notes.items():
            if value == text:
                return key
        marker = marker or str(sum(k.isdigit() for k in self.notes) + 1)
        self.notes[marker] = text
        return marker


def _select(frame: pd.DataFrame, key: Mapping[str, object]) -> pd.DataFrame:
    if frame.empty:
        return frame
    return frame[(frame[list(key)] == pd.Series(key)).all(axis=1)]


def _mean_std(mean: float, std: float) -> str:
    return f"{mean:.1f}" if math.isnan(std) else f"{mean:.1f} ± {std:.1f}"


def _interval(mean: float, low: float, high: float) -> str:
    """``+2.1 [0.4, 3.8]`` in percent points; the interval is left out below two paired seeds."""
    return f"{mean:+.1f}" if math.isnan(low) else f"{mean:+.1f} [{low:.1f}, {high:.1f}]"


def _p(p: float) -> str:
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _mark(comparison: pd.Series | None) -> str:
    if comparison is None or not bool(comparison["significant"]):
        return ""
    return HIGHER if comparison["mean_diff"] > 0 else LOWER


def build_tables(
    long: pd.DataFrame,
    baseline: str | None = None,
    unavailable: Mapping[tuple[str, str], Mapping[str, str]] | None = None,
    versus: str | None = None,
) -> list[Table]:
    """Group the long form into tables, in (dataset, backbone, unit, protocol, budget, pretraining
    images) order.

    ``baseline``: the method paired differences are taken against (default: the registry's).
    ``unavailable``: ``{(dataset, backbone): {method: reason}}`` of methods that could not run
    (:func:`bench.harness.availability.recorded_unavailable`); each gets an ``n/a`` column with the
    reason as a footnote in the tables of that dataset and backbone where it has no results.
    ``versus``: also every column minus this method (``Δ... vs`` and ``p ... vs`` rows per summary
    score, in tables where it has results; the Baseline's own comparison is unchanged).
    """
    if long.empty:
        return []
    baseline = baseline or baseline_name()
    view = with_references(long)
    stats = summarise(view)
    references = set(view.loc[view["reference"], "method"])
    comparisons = paired_comparisons(view, baseline, TABLE_KEYS)
    against = paired_comparisons(view, versus, TABLE_KEYS) if versus and versus != baseline else None
    variance = variance_by_source(view, TABLE_KEYS, metrics=("AA", "OA"))
    unhealthy = view[failed_health(view)]
    useless = view[below_init(view)]
    tables = []
    for values, group in stats.groupby(list(TABLE_KEYS), sort=True):
        key = dict(zip(TABLE_KEYS, values, strict=True))
        runs = _select(view, key)
        present = set(group["method"])
        where = (str(key["dataset"]), str(key["backbone"]))
        missing = {m: r for m, r in (unavailable or {}).get(where, {}).items() if m not in present}
        columns = method_order(present | set(missing), references)
        refs = tuple(m for m in columns if m in references)
        notes = _Notes()
        na = {m: notes.add(f"{method_label(m)}: {reason}") for m, reason in missing.items()}
        health: dict[str, str] = {}
        health_reasons: dict[str, str] = {}
        for method, bad in _select(unhealthy, key).groupby("method"):
            total = runs.loc[runs["method"] == method, "run_id"].nunique()
            reasons = "; ".join(sorted(bad["pretrain_health"].astype(str).unique()))
            health_reasons[str(method)] = f"{bad['run_id'].nunique()} of {total} seed runs: {reasons}"
            health[method] = notes.add(
                f"{method_label(method)}: {bad['run_id'].nunique()} of {total} seed runs use weights "
                f"from a pretraining that failed its health gate ({reasons})",
                HEALTH_MARK,
            )
        below: dict[str, str] = {}
        below_reasons: dict[str, str] = {}
        for method, bad in _select(useless, key).groupby("method"):
            total = runs.loc[runs["method"] == method, "run_id"].nunique()
            figures = bad["pretrain_usefulness"].astype(str).str.removeprefix(BELOW_INIT).str.strip()
            reasons = "; ".join(sorted(figures.unique()))
            below_reasons[str(method)] = f"{bad['run_id'].nunique()} of {total} seed runs: {reasons}"
            below[method] = notes.add(
                f"{method_label(method)}: {bad['run_id'].nunique()} of {total} seed runs use weights "
                f"from a pretraining that scores below its own random init on validation pixels "
                f"({reasons}); kept, not dropped: a usefulness figure, not a gate",
                BELOW_INIT_MARK,
            )
        compared = _select(comparisons, key).set_index(["metric", "class", "method"])
        versus_here = _select(against, key) if against is not None else pd.DataFrame()
        versus_compared = versus_here.set_index(["metric", "class", "method"]) if len(versus_here) else None
        indexed = group.set_index(["metric", "class", "method"])

        def find(metric: str, cls: str, method: str, frame: pd.DataFrame = compared) -> pd.Series | None:
            return frame.loc[(metric, cls, method)] if (metric, cls, method) in frame.index else None

        def cell(
            text: str,
            method: str,
            mark: str = "",
            extra: tuple[str, ...] = (),
            na: dict[str, str] = na,
            health: dict[str, str] = health,
            below: dict[str, str] = below,
        ) -> Cell:
            if method in na:
                return Cell("n/a", notes=(na[method],))
            own = tuple(marks[method] for marks in (health, below) if method in marks)
            return Cell(text, mark, own + extra)

        rows: list[tuple[str, list[Cell]]] = []
        for label, metric, cls in _rows(group):
            cells = []
            for method in columns:
                found = find(metric, cls, method, indexed)
                if found is None:
                    cells.append(cell("–", method))
                    continue
                text = _mean_std(100 * found["mean"], 100 * found["std"])
                cells.append(cell(text, method, _mark(find(metric, cls, method))))
            rows.append((label, cells))
        has_baseline = baseline in present
        pairs_against = [(baseline, compared, "")]
        if versus_compared is not None:
            pairs_against.append((str(versus), versus_compared, f" vs {method_label(str(versus))}"))
        for against_method, frame, p_suffix in pairs_against:
            for metric in SUMMARY_METRICS:
                if against_method not in present or (metric, "", against_method) not in indexed.index:
                    continue
                deltas, ps = [], []
                for method in columns:
                    found = find(metric, "", method, frame)
                    if method == against_method:
                        deltas.append(Cell("—"))
                        ps.append(Cell("—"))
                    elif found is None:
                        deltas.append(cell("n/a", method))
                        ps.append(cell("n/a", method))
                    else:
                        mean, low, high = (100 * found[c] for c in ("mean_diff", "ci_low", "ci_high"))
                        deltas.append(cell(_interval(mean, low, high), method, _mark(found)))
                        ps.append(cell(_p(found["p_holm"]), method, _mark(found)))
                rows.append((f"Δ{metric} vs {method_label(against_method)}", deltas))
                rows.append((f"p {metric}{p_suffix} (Holm)", ps))
        spread = _select(variance, key)
        spread = spread[spread["metric"] == "AA"].set_index("method") if not spread.empty else spread
        if not spread.empty:
            between, within = [], []
            for method in columns:
                if method not in spread.index:
                    between.append(cell("–", method))
                    within.append(cell("–", method))
                    continue
                v = spread.loc[method]
                note = (notes.add(str(v["note"])),) if v["note"] else ()
                if math.isnan(v["between_sd"]):
                    between.append(
                        cell("n/a" if v["note"] != NO_PRETRAINING_NOTE else "—", method, extra=note)
                    )
                else:
                    share = "" if math.isnan(v["pretrain_share"]) else f" ({v['pretrain_share']:.0%})"
                    between.append(cell(f"{100 * v['between_sd']:.1f}{share}", method))
                w = v["within_sd"]
                extra = note if v["note"] == ONE_PER_PRETRAINING_NOTE else ()
                within.append(cell("n/a" if math.isnan(w) else f"{100 * w:.1f}", method, extra=extra))
            rows.append(("AA sd: pretraining", between))
            rows.append(("AA sd: label draw + training", within))
        oa = group[group["metric"] == "OA"].set_index("method")["n"].reindex(columns).fillna(0)
        k: dict[str, int] = {}
        if "pretrain_seed" in runs.columns:  # runs recorded before it was a param have none: K unknown
            known = runs[~runs["reference"]].dropna(subset=["pretrain_seed"])
            counts = known.groupby("method")["pretrain_seed"].nunique()
            k = {m: int(counts[m]) for m in columns if m in counts.index and m not in references}
        versions = tuple(sorted(runs["code_version"].dropna().astype(str).unique()))
        tables.append(
            Table(
                key=key,
                columns=columns,
                rows=rows,
                notes=notes.notes,
                baseline=baseline if has_baseline else None,
                references=refs,
                seeds={m: int(n) for m, n in oa.items() if m not in missing},
                pretrain_seeds=k,
                code_versions=versions,
                comparisons=_select(comparisons, key).reset_index(drop=True),
                variance=_select(variance, key).reset_index(drop=True),
                unavailable=missing,
                versus=versus if versus_compared is not None else None,
                versus_comparisons=versus_here.reset_index(drop=True),
                stats=group.reset_index(drop=True),
                health=health_reasons,
                below_init=below_reasons,
            )
        )
    return tables


# -- escaping ---------------------------------------------------------------------------------------

_MD_SPECIAL = re.compile(r"([\\|*_`<>~])")


def md_escape(text: str) -> str:
    """GitHub Markdown cell text: ``\\ | * _ ` < > ~`` backslash-escaped (a ``|`` would split the
    cell), and ``](`` broken so that no bracketed text becomes a link."""
    return _MD_SPECIAL.sub(r"\\\1", text).replace("](", "]\\(")


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
    "|": r"\textbar{}",
    "<": r"\textless{}",
    ">": r"\textgreater{}",
    "`": r"\textasciigrave{}",
    '"': r"\textquotedbl{}",
}
_LATEX_SYMBOLS = {
    "±": r"$\pm$",
    "Δ": r"$\Delta$",
    "†": r"$^\dagger$",
    "‡": r"$^\ddagger$",
    "—": "---",
    "–": "--",
    "−": "$-$",
    "↑": r"$\uparrow$",
    "↓": r"$\downarrow$",
    "≥": r"$\geq$",
    "≤": r"$\leq$",
    "×": r"$\times$",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX's special characters (``|``, ``<``, ``>`` as text symbols), keep ``--`` two
    hyphens (``-{}-``, not an en dash) and spell ±, Δ, †, ‡, ↑, ↓, dashes in LaTeX."""
    out = []
    for i, ch in enumerate(text):
        out.append(_LATEX_SPECIAL.get(ch, _LATEX_SYMBOLS.get(ch, ch)))
        if ch == "-" and i + 1 < len(text) and text[i + 1] == "-":
            out.append("{}")
    return "".join(out)


# -- rendering --------------------------------------------------------------------------------------


def _md_cell(cell: Cell) -> str:
    text = md_escape(cell.text)
    if cell.mark:
        text = f"**{text}**" + ("↑" if cell.mark == HIGHER else "↓")
    return text + "".join(m.translate(_SUPERSCRIPTS) for m in cell.notes)


def _latex_marker(marker: str) -> str:
    return _LATEX_MARKS.get(marker, f"$^{{{latex_escape(marker)}}}$")


def _latex_cell(cell: Cell) -> str:
    text = latex_escape(cell.text)
    if cell.mark:
        text = rf"\textbf{{{text}}}" + (r"$\uparrow$" if cell.mark == HIGHER else r"$\downarrow$")
    return text + "".join(_latex_marker(m) for m in cell.notes)


def _notes_text(notes: Mapping[str, str], marker: Callable[[str], str]) -> list[str]:
    return [f"{marker(m)} {text}" for m, text in notes.items()]


def _md_row(cells: list[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def to_markdown(tables: list[Table]) -> str:
    """GitHub Markdown: a heading, what varied, the pipe table, its footnotes and the footer."""
    parts = []
    for table in tables:
        header = ["", *(md_escape(method_label(m)) for m in table.columns)]
        lines = [f"### {md_escape(table.title)}", "", f"{md_escape(table.varied())}.", "", _md_row(header)]
        lines.append("|---|" + "---:|" * len(table.columns))
        lines += [_md_row([md_escape(label), *map(_md_cell, cells)]) for label, cells in table.rows]
        lines.append("")
        notes = _notes_text(table.notes, lambda m: m.translate(_SUPERSCRIPTS))
        if notes:
            lines += ["  \n".join(md_escape(n) for n in notes), ""]
        lines.append(f"{md_escape(table.footer())}.")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"


#: Columns of the tidy CSV (:func:`to_csv`), in order.
TIDY_COLUMNS: tuple[str, ...] = (
    *TABLE_KEYS,
    "method",
    "label",
    "reference",
    "metric",
    "class",
    "seeds",
    "mean",
    "std",
    "baseline",
    "diff",
    "ci_low",
    "ci_high",
    "p_holm",
    "significant",
    "health",
    "usefulness",
    "unavailable",
)


def tidy(tables: list[Table]) -> pd.DataFrame:
    """The tables as tidy data: one row per (table key, method, metric, class), columns
    :data:`TIDY_COLUMNS`.

    ``mean``/``std`` (sample std over ``seeds``, ddof=1) and ``diff``/``ci_low``/``ci_high`` (the
    mean paired difference to ``baseline`` with its 95% t interval) are in percent, as every table
    prints them; ``p_holm`` and ``significant`` are the corrected test the tables mark by (empty
    where a score is not tested). ``class`` is empty for AA, OA, mIoU and macro F1; ``reference``
    flags reference rows and controls; ``health`` holds the health-gate failures of the weights a
    method's seed runs used, ``usefulness`` those of its weights that scored below their own random
    init on validation pixels; a method that could not run has one row, its reason in ``unavailable``.
    """
    records: list[dict[str, object]] = []
    for table in tables:
        stats = table.stats.set_index(["metric", "class", "method"]) if not table.stats.empty else None
        compared = table.comparisons.set_index(["metric", "class", "method"])
        order = _rows(table.stats) if stats is not None else []
        for method in table.columns:
            common = {
                **table.key,
                "method": method,
                "label": method_label(method),
                "reference": method in table.references,
                "baseline": table.baseline or "",
                "health": table.health.get(method, ""),
                "usefulness": table.below_init.get(method, ""),
            }
            if method in table.unavailable:
                records.append(
                    {**common, "metric": "", "class": "", "unavailable": table.unavailable[method]}
                )
                continue
            for _, metric, cls in order:
                at = (metric, cls, method)
                if stats is None or at not in stats.index:
                    continue
                found = stats.loc[at]
                row = {
                    **common,
                    "metric": metric,
                    "class": cls,
                    "seeds": int(found["n"]),
                    "mean": 100 * float(found["mean"]),
                    "std": 100 * float(found["std"]),
                    "unavailable": "",
                }
                if at in compared.index:
                    test = compared.loc[at]
                    row |= {c: 100 * float(test[s]) for c, s in _TIDY_DIFFS.items()}
                    row |= {"p_holm": float(test["p_holm"]), "significant": bool(test["significant"])}
                records.append(row)
    return pd.DataFrame(records, columns=list(TIDY_COLUMNS))


_TIDY_DIFFS = {"diff": "mean_diff", "ci_low": "ci_low", "ci_high": "ci_high"}


def to_csv(tables: list[Table]) -> str:
    """:func:`tidy` as CSV: one header line, one row per (table, method, score), nothing else,
    so ``pandas.read_csv`` reads it as it is. The printed layout is ``md`` or ``latex``."""
    return tidy(tables).to_csv(index=False, float_format="%.6g", lineterminator="\n")


def latex_label(table: Table, tables: list[Table]) -> str:
    """``tab:<protocol>-<budget><px|img>-<backbone>``, with the dataset's fingerprint prefix when
    ``tables`` span several datasets: unique per table, stable across runs, only ``[a-z0-9:-]``."""
    unit = {"pixels": "px", "images": "img"}.get(str(table.key["budget_unit"]), str(table.key["budget_unit"]))
    parts = [str(table.key["protocol"]), f"{table.key['budget']}{unit}", str(table.key["backbone"])]
    if len({str(t.key["dataset"]) for t in tables}) > 1:
        parts.append(str(table.key["dataset"])[:8])
    return "tab:" + re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")


def latex_caption(table: Table) -> str:
    """The one-line caption: protocol, budget and what the cells are."""
    unit = str(table.key["budget_unit"])
    return (
        f"{table.key['protocol']}, {table.key['budget']} {_UNIT_WORDS.get(unit, unit)}, backbone "
        f"{table.key['backbone']}: scores in %, mean ± std over seeds."
    )


def to_latex(tables: list[Table]) -> str:
    """booktabs ``table`` environments (needs ``\\usepackage{booktabs,graphicx}``), marked cells in bold.

    Each has a one-line ``\\caption`` (:func:`latex_caption`) and a ``\\label`` (:func:`latex_label`);
    the footnotes, what varied, the test and the footer follow the tabular in small type. A table
    wider than the line (nine method columns are) is scaled down to the line width, never up.
    """
    parts = ["% requires \\usepackage{booktabs,graphicx}"]
    for table in tables:
        header = " & ".join(["", *(latex_escape(method_label(m)) for m in table.columns)])
        body = []
        for label, cells in table.rows:
            if label in (
                "AA",
                next((r for r, _ in table.rows if r.startswith("Δ")), None),
                "AA sd: pretraining",
            ):
                body.append(r"\midrule")
            body.append(" & ".join([latex_escape(label), *map(_latex_cell, cells)]) + r" \\")
        details = latex_escape(
            f"Dataset {str(table.key['dataset'])[:12]}; {table.varied()}; {table.footer()}."
        )
        notes = [_latex_note(n) for n in table.notes.items()]
        parts += [
            r"\begin{table}[t]",
            r"\centering",
            r"\small",
            r"\setlength{\tabcolsep}{3pt}",
            r"\resizebox{\ifdim\width>\linewidth\linewidth\else\width\fi}{!}{%",
            r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
            r"\toprule",
            header + r" \\",
            r"\midrule",
            *body,
            r"\bottomrule",
            r"\end{tabular}}",
            r"\par\smallskip{\footnotesize " + r" \\ ".join([*notes, details]) + "\\par}",
            r"\caption{" + latex_escape(latex_caption(table)) + "}",
            r"\label{" + latex_label(table, tables) + "}",
            r"\end{table}",
            "",
        ]
    return "\n".join(parts)


def _latex_note(item: tuple[str, str]) -> str:
    marker, text = item
    return f"{_latex_marker(marker)} {latex_escape(text)}"


# -- the README's headline ----------------------------------------------------------------------------

_SETTING = ("dataset", "backbone", "budget_unit")


def to_summary(tables: list[Table]) -> str:
    """AA by (protocol, budget), one Markdown table per (dataset, backbone, unit), methods as columns.

    Each cell is ``mean ± std (Δ [95% t interval])`` against the Baseline (the Baseline's cell has
    no Δ), bold with ↑/↓ only when the table's Holm-corrected sign-flip test gives p < 0.05:
    exactly the AA and ΔAA cells of the per-table output.
    """
    parts = []
    settings: dict[tuple[str, ...], list[Table]] = {}
    for table in tables:
        settings.setdefault(tuple(str(table.key[k]) for k in _SETTING), []).append(table)
    for (dataset, backbone, unit), group in settings.items():
        columns = method_order(
            {m for t in group for m in t.columns}, {m for t in group for m in t.references}
        )
        notes = _Notes()
        lines = [
            _md_row(["protocol", "budget", *(md_escape(method_label(m)) for m in columns)]),
            "|---|---:|" + "---:|" * len(columns),
        ]
        for table in group:
            aa = (
                dict(zip(table.columns, table.row("AA"), strict=True))
                if any(r == "AA" for r, _ in table.rows)
                else {}
            )
            delta_label = f"ΔAA vs {method_label(str(table.baseline))}"
            has_delta = any(r == delta_label for r, _ in table.rows)
            delta = dict(zip(table.columns, table.row(delta_label), strict=True)) if has_delta else {}
            cells = []
            for method in columns:
                base = aa.get(method)
                if base is None:
                    cells.append("–")
                    continue
                renumbered = tuple(
                    notes.add(table.notes[m], m if not m.isdigit() else None) for m in base.notes
                )
                text = base.text
                d = delta.get(method)
                mark = d.mark if d is not None else ""
                if d is not None and d.text not in ("—", "n/a"):
                    text = f"{text} ({d.text})"
                cells.append(_md_cell(Cell(text, mark, renumbered)))
            budget = str(table.key["budget"])
            if len({t.images for t in group}) > 1:  # several compute levels: say which row is which
                budget += f" ({table.images} images pretrained)"
            lines.append(_md_row([md_escape(str(table.key["protocol"])), budget, *cells]))
        first = group[0]
        versions = sorted({v for t in group for v in t.code_versions})
        # rows of a partial sweep compare different numbers of columns: one sentence names them all
        sizes = sorted({t.family_size() for t in group} - {0})
        size_words = f"{', '.join(map(str, sizes[:-1]))} or {sizes[-1]}" if len(sizes) > 1 else None
        tests = [t.test_note(size_words) for t in group]
        caption = (
            f"AA (%) by protocol and budget ({_UNIT_WORDS.get(unit, unit)}; backbone {backbone}, dataset "
            f"{dataset[:12]}): mean ± sample std over seeds (ddof=1), in brackets the mean paired "
            f"difference to the Baseline with its {CONFIDENCE:.0%} t interval. {first.varied()}."
        )
        footer = f"{'; '.join(dict.fromkeys(tests))}; code: {', '.join(versions) or 'unknown'}."
        notes_lines = _notes_text(notes.notes, lambda m: m.translate(_SUPERSCRIPTS))
        block = [md_escape(caption), "", *lines, ""]
        if notes_lines:
            block += ["  \n".join(md_escape(n) for n in notes_lines), ""]
        block.append(md_escape(footer))
        parts.append("\n".join(block))
    return "\n\n".join(parts) + "\n"


def paired_report(long: pd.DataFrame) -> pd.DataFrame:
    """The paired CSV beside the long form: every method, ablation and reference row against the
    registry's baseline, per table and tested score, with the p-values the tables mark by, and
    each row's ``pretrain_health`` (:func:`with_health`)."""
    return with_health(paired_comparisons(with_references(long), baseline_name(), TABLE_KEYS), long)


def variance_report(long: pd.DataFrame) -> pd.DataFrame:
    """The variance-by-source CSV beside the long form (AA and OA, every table and method), with
    each row's ``pretrain_health`` (:func:`with_health`)."""
    return with_health(variance_by_source(with_references(long), TABLE_KEYS, metrics=("AA", "OA")), long)


def with_health(report: pd.DataFrame, long: pd.DataFrame) -> pd.DataFrame:
    """``report`` (rows keyed by table and ``method``) with a ``pretrain_health`` column: ``passed``,
    or ``failed (n of N seed runs): <reasons>`` when seed runs of that method in that table used
    weights that failed their health gate (``--allow-unhealthy``): the CSVs carry the tables' mark."""
    report = report.copy()
    if "method" not in report.columns:
        return report
    keys = [k for k in TABLE_KEYS if k in report.columns and k in long.columns] + ["method"]
    marks: dict[tuple[object, ...], str] = {}
    if not long.empty and "run_id" in long.columns:
        bad_rows = failed_health(long)
        for key, runs in long.groupby(keys, sort=False, observed=True):
            bad = runs[bad_rows.loc[runs.index]]
            if not bad.empty:
                reasons = "; ".join(sorted(bad["pretrain_health"].astype(str).unique()))
                share = f"{bad['run_id'].nunique()} of {runs['run_id'].nunique()} seed runs"
                marks[key if isinstance(key, tuple) else (key,)] = f"failed ({share}): {reasons}"
    report["pretrain_health"] = [
        marks.get(tuple(row), "passed") for row in report[keys].itertuples(index=False, name=None)
    ]
    return report


def render(tables: list[Table], fmt: str) -> str:
    """The tables in format ``fmt`` (one of :data:`FORMATS`)."""
    renderers = {"md": to_markdown, "csv": to_csv, "latex": to_latex, "tex": to_latex, "summary": to_summary}
    return renderers[fmt](tables)


def default_name(fmt: str) -> str:
    """The file format ``fmt`` writes inside ``--out DIR/``: table.md, table.csv, table.tex, summary.md."""
    return _FILE_NAMES[fmt]


__all__ = [
    "FORMATS",
    "HIGHER",
    "K1_NOTE",
    "LOWER",
    "Cell",
    "Table",
    "build_tables",
    "default_name",
    "latex_escape",
    "md_escape",
    "paired_report",
    "render",
    "tidy",
    "variance_report",
    "with_health",
]
