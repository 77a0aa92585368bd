"""Figures from the tracking store: accuracy vs label budget, and per-class accuracy heat maps.

Both read :func:`bench.report.aggregate.summarise` output, so they show exactly what the table shows.
Results of different datasets, backbones or budget units are never drawn on one axis: the caller
selects one combination first (:func:`single_setting` says which exist when there are several).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from bench.core.atomic import atomic_path
from bench.core.errors import BenchError
from bench.report.aggregate import SUMMARY_METRICS, method_label, method_order

_SETTING = ("dataset", "backbone", "budget_unit")


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


def curves_figure(stats: pd.DataFrame) -> Figure:
    """AA (top) and OA (bottom) vs budget, one column per protocol; lines = mean, bands = ± std."""
    setting = single_setting(stats)
    protocols = sorted(stats["protocol"].unique())
    methods = method_order(stats["method"])
    fig, axes = plt.subplots(
        len(SUMMARY_METRICS), len(protocols), figsize=(4.5 * len(protocols), 6.5), squeeze=False, sharex=True
    )
    colours = {m: plt.get_cmap("tab10")(i % 10) for i, m in enumerate(methods)}
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
                ax.plot(x, mean, marker="o", color=colours[method], label=method_label(method))
                ax.fill_between(
                    x, mean - np.nan_to_num(std), mean + np.nan_to_num(std), color=colours[method], alpha=0.2
                )
            ax.set_xticks(sorted(stats["budget"].unique()))
            ax.set_title(f"{protocol}: {metric}")
            ax.set_ylabel(f"{metric} (%)")
            ax.grid(alpha=0.3)
            if row == len(SUMMARY_METRICS) - 1:
                ax.set_xlabel(_x_label(setting["budget_unit"]))
    axes[0, 0].legend(loc="best", fontsize="small")
    fig.suptitle(f"Accuracy vs label budget (mean ± sample std over seeds; backbone {setting['backbone']})")
    fig.tight_layout()
    return fig


def class_heatmap_figure(stats: pd.DataFrame) -> Figure:
    """Per-class mean accuracy (%) by budget: one heat map per (protocol row, method column)."""
    single_setting(stats)
    classes = stats[stats["metric"] == "accuracy"]
    protocols = sorted(classes["protocol"].unique())
    methods = method_order(classes["method"])
    names = list(classes["class"].cat.remove_unused_categories().cat.categories)  # DFC id order
    budgets = sorted(classes["budget"].unique())
    fig, axes = plt.subplots(
        len(protocols),
        len(methods),
        squeeze=False,
        layout="constrained",
        figsize=(1.0 + 0.9 * len(budgets) * len(methods) + 1.5, 0.45 * len(names) * len(protocols) + 1.5),
    )
    image = None
    for r, protocol in enumerate(protocols):
        for c, method in enumerate(methods):
            ax = axes[r, c]
            sel = classes[(classes["protocol"] == protocol) & (classes["method"] == method)]
            grid = (
                sel.pivot(index="class", columns="budget", values="mean")
                .reindex(index=names, columns=budgets)
                .to_numpy(dtype=float)
                * 100
            )
            image = ax.imshow(grid, vmin=0, vmax=100, cmap="viridis", aspect="auto")
            for (i, j), value in np.ndenumerate(grid):
                if not np.isnan(value):
                    ax.text(
                        j,
                        i,
                        f"{value:.0f}",
                        ha="center",
                        va="center",
                        fontsize=7,
                        color="white" if value < 60 else "black",
                    )
            ax.set_xticks(range(len(budgets)), [str(b) for b in budgets], fontsize=7)
            ax.set_yticks(range(len(names)), names if c == 0 else [""] * len(names), fontsize=8)
            ax.set_title(f"{method_label(method)} ({protocol})", fontsize=9)
            if r == len(protocols) - 1:
                ax.set_xlabel("budget", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, shrink=0.8, label="class accuracy (%)")
    fig.suptitle("Per-class accuracy (mean over seeds) vs label budget")
    return fig


def save_png(fig: Figure, out: Path) -> Path:
    """Write ``fig`` to ``out`` atomically and close it."""
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    return out


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
