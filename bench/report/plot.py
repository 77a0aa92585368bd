"""Figures from the tracking store: accuracy vs label budget, and per-class accuracy small multiples.

Both read :func:`bench.report.aggregate.summarise` output, so they show exactly what the table shows.
Results of different datasets, backbones or budget units are never drawn on one axis: the caller
selects one combination first (:func:`single_setting` says which exist when there are several).

Figures go into a paper as they are: no suptitle (the caption says what a figure shows), fonts
embedded as TrueType in PDF/PS (Type 3 fonts are refused by the IEEE and ACM checkers) and SVG
text kept as text (:data:`PAPER_RC`), and reference rows and controls (``role`` reference or
control) drawn apart from the methods, in grey with their own dashes and markers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import NullFormatter
from matplotlib.typing import RcKeyType

from bench.core.atomic import atomic_path
from bench.core.errors import BenchError
from bench.report.aggregate import REFERENCE_ROLES, SUMMARY_METRICS, method_infos, method_label, method_order
from bench.report.table import HEALTH_MARK

_SETTING = ("dataset", "backbone", "budget_unit")
#: Output formats by file suffix; raster output at :data:`RASTER_DPI`.
FIGURE_FORMATS: dict[str, str] = {".pdf": "pdf", ".svg": "svg", ".png": "png"}
RASTER_DPI = 300
#: A one-column figure's width in inches (two-column papers: about 3.3-3.5 in).
COLUMN_WIDTH = 3.5
#: Budgets spanning more than this factor are drawn on a log axis.
LOG_SPAN = 10
#: Matplotlib settings every figure is saved under: TrueType (Type 42) fonts embedded in PDF and
#: PS instead of Type 3, and SVG text as ``<text>`` elements (editable, searchable) instead of paths.
PAPER_RC: dict[RcKeyType, Any] = {"pdf.fonttype": 42, "ps.fonttype": 42, "svg.fonttype": "none"}
#: Reference rows and controls: grey shades, dash patterns and markers, in column order.
_REFERENCE_STYLES = (
    ("0.35", "--", "s"),
    ("0.55", ":", "^"),
    ("0.45", "-.", "v"),
    ("0.65", (0, (5, 1, 1, 1)), "D"),
)


def single_setting(stats: pd.DataFrame) -> dict[str, str]:
    """The one (dataset, backbone, budget unit) in ``stats``; a clear error when there are several."""
    settings = stats[list(_SETTING)].drop_duplicates()
    if len(settings) != 1:
        found = "; ".join(", ".join(f"{k}={v}" for k, v in row.items()) for _, row in settings.iterrows())
        raise BenchError(
            f"results of several settings ({found}); choose one with --dataset/--backbone/--budget-unit"
        )
    return {k: str(v) for k, v in settings.iloc[0].items()}


def _x_label(unit: str) -> str:
    return "labelled pixels per class" if unit == "pixels" else f"label budget ({unit})"


def _styles(methods: Sequence[str]) -> dict[str, dict[str, object]]:
    """Line style per method, fixed by the column order, so every figure agrees: methods take
    tab10 colours, solid lines and round markers; reference rows and controls (registry role
    reference/control) grey dashes (:data:`_REFERENCE_STYLES`)."""
    roles = {m.name: m.role for m in method_infos()}
    styles: dict[str, dict[str, object]] = {}
    n_methods = n_refs = 0
    for method in methods:
        if roles.get(method) in REFERENCE_ROLES:
            colour, dashes, marker = _REFERENCE_STYLES[n_refs % len(_REFERENCE_STYLES)]
            styles[method] = {"color": colour, "linestyle": dashes, "marker": marker, "reference": True}
            n_refs += 1
        else:
            tab10 = plt.get_cmap("tab10")(n_methods % 10)
            styles[method] = {"color": tab10, "linestyle": "-", "marker": "o", "reference": False}
            n_methods += 1
    return styles


def _budget_axis(ax: Axes, budgets: Sequence[int], fontsize: float | None = None) -> None:
    """Budgets as ticks; a log axis when they span more than :data:`LOG_SPAN`x."""
    budgets = sorted(budgets)
    if budgets and budgets[0] > 0 and budgets[-1] / budgets[0] > LOG_SPAN:
        ax.set_xscale("log")
        ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(budgets, [str(b) for b in budgets], fontsize=fontsize)


#: The legend mark of a method whose weights failed their health gate (the tables' mark).
UNHEALTHY_MARK = HEALTH_MARK
UNHEALTHY_NOTE = f"{UNHEALTHY_MARK} evaluated on weights that failed their health gate (--allow-unhealthy)"


def _legend_label(method: str, unhealthy: Mapping[str, str]) -> str:
    return method_label(method) + (f" {UNHEALTHY_MARK}" if method in unhealthy else "")


def _unhealthy_note(fig: Figure, unhealthy: Mapping[str, str], fontsize: float) -> None:
    """The figure's footnote for the marked methods (nothing when every method is healthy)."""
    if unhealthy:
        fig.text(0.01, 0.005, UNHEALTHY_NOTE, fontsize=fontsize, ha="left", va="bottom", color="darkred")


def curves_figure(stats: pd.DataFrame, unhealthy: Mapping[str, str] | None = None) -> Figure:
    """AA (top) and OA (bottom) vs budget, one column per protocol; lines = mean, bands = ± std.

    ``unhealthy``: methods evaluated on weights that failed their health gate
    (:func:`bench.report.aggregate.unhealthy_methods`), marked in the legend and a footnote."""
    unhealthy = unhealthy or {}
    setting = single_setting(stats)
    protocols = sorted(stats["protocol"].unique())
    methods = method_order(stats["method"])
    budgets = sorted(stats["budget"].unique())
    with plt.rc_context({"font.size": 8}):
        fig, axes = plt.subplots(
            len(SUMMARY_METRICS),
            len(protocols),
            figsize=(COLUMN_WIDTH * max(1, len(protocols)) * 0.9, 4.6),
            squeeze=False,
            sharex=True,
            layout="constrained",
        )
        styles = _styles(methods)
        for col, protocol in enumerate(protocols):
            for row, metric in enumerate(SUMMARY_METRICS):
                ax = axes[row, col]
                for method in methods:
                    sel = stats[
                        (stats["protocol"] == protocol)
                        & (stats["metric"] == metric)
                        & (stats["method"] == method)
                    ]
                    if sel.empty:
                        continue
                    sel = sel.sort_values("budget")
                    x, mean, std = (
                        sel["budget"].to_numpy(),
                        sel["mean"].to_numpy() * 100,
                        sel["std"].to_numpy() * 100,
                    )
                    style = styles[method]
                    ax.plot(
                        x,
                        mean,
                        marker=style["marker"],
                        linestyle=style["linestyle"],
                        ms=3,
                        lw=1.2,
                        color=style["color"],
                        label=_legend_label(method, unhealthy),
                    )
                    ax.fill_between(
                        x,
                        mean - np.nan_to_num(std),
                        mean + np.nan_to_num(std),
                        color=style["color"],
                        alpha=0.08 if style["reference"] else 0.15,
                        lw=0,
                    )
                _budget_axis(ax, budgets)
                ax.set_title(f"{protocol}: {metric}")
                ax.set_ylabel(f"{metric} (%)")
                ax.grid(alpha=0.3)
                if row == len(SUMMARY_METRICS) - 1:
                    ax.set_xlabel(_x_label(setting["budget_unit"]))
        handles, labels = axes[0, 0].get_legend_handles_labels()
        for ax in axes.ravel()[1:]:
            for h, lab in zip(*ax.get_legend_handles_labels(), strict=True):
                if lab not in labels:
                    handles.append(h)
                    labels.append(lab)
        fig.legend(
            handles, labels, loc="outside lower center", ncol=min(4, len(labels)), fontsize=7, frameon=False
        )
        _unhealthy_note(fig, unhealthy, 6)
    return fig


def class_figure(stats: pd.DataFrame, protocol: str, unhealthy: Mapping[str, str] | None = None) -> Figure:
    """Per-class accuracy vs budget under one protocol, one small panel per class, one column wide.

    Panels share both axes (0-100 %), lines are methods in the table's order and colours; the
    budget axis is logarithmic when budgets span more than :data:`LOG_SPAN`x.
    """
    unhealthy = unhealthy or {}
    setting = single_setting(stats)
    classes = stats[(stats["metric"] == "accuracy") & (stats["protocol"] == protocol)]
    if classes.empty:
        raise BenchError(f"no per-class accuracy for protocol {protocol!r} in the selected runs")
    methods = method_order(stats["method"])
    styles = _styles(methods)
    names = list(classes["class"].cat.remove_unused_categories().cat.categories)  # DFC id order
    names = [n for n in names if n]
    budgets = sorted(classes["budget"].unique())
    ncols = 2
    nrows = -(-len(names) // ncols)
    with plt.rc_context({"font.size": 7}):
        fig, axes = plt.subplots(
            nrows,
            ncols,
            figsize=(COLUMN_WIDTH, 1.15 * nrows + 0.9),
            squeeze=False,
            sharex=True,
            sharey=True,
            layout="constrained",
        )
        shown: dict[str, Line2D] = {}
        for i, name in enumerate(names):
            ax = axes[i // ncols, i % ncols]
            for method in methods:
                sel = classes[(classes["class"] == name) & (classes["method"] == method)].sort_values(
                    "budget"
                )
                if sel.empty:
                    continue
                style = styles[method]
                (line,) = ax.plot(
                    sel["budget"],
                    sel["mean"] * 100,
                    marker=style["marker"],
                    linestyle=style["linestyle"],
                    ms=2.5,
                    lw=1,
                    color=style["color"],
                )
                shown.setdefault(_legend_label(method, unhealthy), line)
            ax.set_title(name, fontsize=7, pad=2)
            ax.set_ylim(0, 100)
            ax.grid(alpha=0.3)
            _budget_axis(ax, budgets, fontsize=6)
            ax.tick_params(labelsize=6)
        for j in range(len(names), nrows * ncols):
            axes[j // ncols, j % ncols].set_visible(False)
            axes[j // ncols - 1, j % ncols].xaxis.set_tick_params(labelbottom=True)
        fig.supylabel("class accuracy (%)", fontsize=7)
        for ax in axes[-1]:
            ax.set_xlabel(_x_label(setting["budget_unit"]), fontsize=6)
        fig.legend(
            list(shown.values()), list(shown), loc="outside lower center", ncol=3, fontsize=6, frameon=False
        )
        _unhealthy_note(fig, unhealthy, 5)
    return fig


def class_figures(stats: pd.DataFrame, unhealthy: Mapping[str, str] | None = None) -> dict[str, Figure]:
    """:func:`class_figure` for every protocol with per-class scores."""
    protocols = sorted(stats.loc[stats["metric"] == "accuracy", "protocol"].unique())
    return {p: class_figure(stats, p, unhealthy) for p in protocols}


def save_figure(fig: Figure, out: Path) -> Path:
    """Write ``fig`` to ``out`` atomically in the format its suffix names (pdf, svg: vector; png:
    :data:`RASTER_DPI` dpi) under :data:`PAPER_RC` (the backends read the font types when they
    write) and close it; another suffix is one clear error."""
    fmt = FIGURE_FORMATS.get(out.suffix.lower())
    if fmt is None:
        plt.close(fig)
        raise BenchError(
            f"{out}: unknown figure format {out.suffix or '(no suffix)'!r}; "
            f"use one of {', '.join(FIGURE_FORMATS)}"
        )
    with atomic_path(out) as tmp, plt.rc_context(PAPER_RC):
        fig.savefig(tmp, format=fmt, dpi=RASTER_DPI, bbox_inches="tight")
    plt.close(fig)
    return out


#: The data preview's writer (``bench data check --preview``): any suffix of :data:`FIGURE_FORMATS`.
save_png = save_figure


#: Class colours after the DFC2020 legend; classes not listed get tab10 colours.
_CLASS_COLOURS: dict[str, str] = {
    "Forest": "#009900",
    "Shrubland": "#c6b044",
    "Savanna": "#fbff13",
    "Grassland": "#b6ff05",
    "Wetlands": "#27ff87",
    "Croplands": "#c24f44",
    "Urban/Built-up": "#a5a5a5",
    "Snow/Ice": "#69fff8",
    "Barren": "#f9ffa4",
    "Water": "#1c0dff",
}


def patches_figure(
    splits: Sequence[tuple[str, np.ndarray, np.ndarray]],
    class_names: tuple[str, ...],
    band_names: tuple[str, ...],
    count: int = 4,
) -> Figure:
    """A look at the data: S2 true colour, S2 false colour (NIR), S1 VV and the label map.

    ``splits`` are (name, images, labels), drawn side by side (the labelled pool beside the test
    split) so a shift between them shows at a glance; ``count`` patches evenly spaced through
    each split (patches are often grouped by region, so spacing them spans the regions).
    ``images`` are the cached normalised patches (N, C, H, W), ``labels`` class indices with 255
    for ignored pixels.
    """
    from matplotlib.colors import ListedColormap
    from matplotlib.patches import Patch

    band = {name: i for i, name in enumerate(band_names)}
    columns = [
        (name, images, labels, idx)
        for name, images, labels in splits
        for idx in np.unique(np.linspace(0, len(images) - 1, min(count, len(images))).round().astype(int))
    ]
    tab = plt.get_cmap("tab10")
    colours = [_CLASS_COLOURS.get(name, tab(i % 10)) for i, name in enumerate(class_names)]
    cmap = ListedColormap([*colours, "black"])  # the last colour: ignored pixels
    # (title, bands, value shown white): one fixed scale for every patch, so patches compare
    rows = (
        ("S2 true colour (B4 B3 B2)", ("B4", "B3", "B2"), 0.25),
        ("S2 false colour (B8 B4 B3)", ("B8", "B4", "B3"), 0.45),
        ("S1 VV (-25..0 dB)", ("VV",), 1.0),
        ("labels", (), 1.0),
    )
    fig, axes = plt.subplots(
        len(rows), len(columns), figsize=(2.2 * len(columns), 2.2 * len(rows)), squeeze=False
    )
    for col, (split_name, images, labels, idx) in enumerate(columns):
        patch = np.asarray(images[idx], dtype=np.float32)
        for row, (title, bands, white) in enumerate(rows):
            ax = axes[row, col]
            if bands:
                img = np.clip(np.stack([patch[band[b]] for b in bands], axis=-1) / white, 0, 1)
                ax.imshow(img if len(bands) == 3 else img[..., 0], cmap="gray", vmin=0, vmax=1)
            else:
                lab = np.asarray(labels[idx]).astype(int)
                lab[lab >= len(class_names)] = len(class_names)
                ax.imshow(lab, cmap=cmap, vmin=0, vmax=len(class_names), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel(title, fontsize=8)
        axes[0, col].set_title(f"{split_name} {idx}", fontsize=8)
    legend = [Patch(color=c, label=n) for c, n in zip(colours, class_names, strict=True)]
    legend.append(Patch(color="black", label="ignored"))
    fig.legend(handles=legend, loc="lower center", ncol=min(len(legend), 5), fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    return fig
