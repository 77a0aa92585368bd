"""Seed runs from the tracking store -> tidy frames -> mean and std over seeds.

Everything here is pure pandas on a *wide* frame of runs (one row per finished seed run, the
columns of :data:`ID_COLUMNS` plus one column per logged score: ``acc.<class>``, ``iou.<class>``,
``AA``, ``OA``, ``mIoU``, ``macroF1``, all fractions), so the statistics are testable on a hand-made
frame and the table and plot never retrain anything. :func:`runs_from_mlflow` is the only function
that talks to MLflow.

Std is the sample standard deviation over seeds (``ddof=1``), undefined (NaN) for a single seed.
Display labels and the column order come from the method registry (``PretrainMethod.label``);
reference rows (``raw``, ``rf``: runs with protocol ``reference``) are attached to every protocol's
table by :func:`with_references`, because they share its budgets, seeds and test pixels; so are
the runs of methods that pretrain nothing to every compute level (``pretrain_images``,
:func:`across_compute`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from bench.core.roles import MethodInfo
from bench.harness.tracking import BELOW_INIT, completed_runs, metric_name
from datasets.classes import DFC_NAMES

#: Identity of a seed run: the MLflow tags (``bench.<name>``) and params the frame keeps.
ID_TAGS: dict[str, str] = {
    "result_key": "bench.result_key",
    "method": "bench.method",
    "protocol": "bench.protocol",
    "budget": "bench.budget",
    "budget_unit": "bench.budget_unit",
    "seed": "bench.seed",
    "backbone": "bench.backbone",
    "dataset": "bench.dataset_fingerprint",
    # ``passed`` or ``failed: <one line>`` when the weights came from a pretraining that failed its
    # health gate (``--allow-unhealthy``); absent on runs recorded before the gate existed
    "pretrain_health": "bench.pretrain_health",
    # ``below init: <line>`` when the weights' validation linear AA is below that of the same seed's
    # random init (``not below init: ...`` otherwise; bench.harness.usefulness); absent on runs of
    # methods that train nothing and on runs recorded before the figure existed
    "pretrain_usefulness": "bench.pretrain_usefulness",
    # torch's CPU threads of the evaluating process (bench verify re-runs a seed at the same count)
    "threads": "bench.torch_threads",
}
#: Params kept beside the tags: the code that produced the run, its pretraining seed and the
#: images its pretraining saw (the compute rule's level, ``--pretrain-images``).
ID_PARAMS: tuple[str, ...] = ("code_version", "pretrain_seed", "pretrain_images")
ID_COLUMNS: tuple[str, ...] = ("run_id", *ID_TAGS, *ID_PARAMS, "end_time")
#: Runs that differ in these are never averaged together: one table per distinct combination.
#: ``pretrain_images`` is 0 for runs that pretrain nothing (and for runs recorded before it was a
#: param); :func:`with_references` copies those into every level of their table.
TABLE_KEYS: tuple[str, ...] = ("dataset", "backbone", "budget_unit", "protocol", "budget", "pretrain_images")
#: The table key that is a level of compute rather than of evaluation.
COMPUTE_KEY = "pretrain_images"
#: The seed table's summary rows (and the plot's curves).
SUMMARY_METRICS: tuple[str, ...] = ("AA", "OA")
#: Segmentation summaries, shown under AA and OA.
SEGMENTATION_METRICS: tuple[str, ...] = ("mIoU", "macroF1")
#: Wide-column prefix of a per-class score -> its ``metric`` in the long form.
PER_CLASS_METRICS: dict[str, str] = {"acc": "accuracy", "iou": "IoU"}
#: ``metric`` values in row order: per-class accuracy, the summaries, then per-class IoU.
METRICS: tuple[str, ...] = ("accuracy", *SUMMARY_METRICS, *SEGMENTATION_METRICS, "IoU")
#: The protocol tag of reference runs (no pretraining, no deep model).
REFERENCE_PROTOCOL = "reference"
#: Suffix of a code version recorded from a tree with uncommitted changes (not traceable to a commit).
DIRTY_SUFFIX = "+dirty"
STD_KIND = "sample std over seeds (ddof=1)"

#: Sanitised metric suffix -> (display name, DFC id): the runs carry only the sanitised suffix
#: (``Urban_Built-up``), so the display name and the row order come from the DFC class list.
_KNOWN_CLASSES: dict[str, tuple[str, int]] = {metric_name(n): (n, i) for i, n in DFC_NAMES.items()}


#: Roles whose columns follow the competitors and ablations (compared against, never ranked).
REFERENCE_ROLES = frozenset({"reference", "control"})
#: Prefix of the ``pretrain_health`` of a run whose weights failed their health gate.
FAILED_HEALTH = "failed:"


def method_order(
    methods: list[str] | set[str] | pd.Series, references: set[str] | frozenset[str] = frozenset()
) -> list[str]:
    """Column order: registered competitors and ablations in the registry's order (the baseline
    first, ``PretrainMethod.role``), unregistered methods by name, then the reference rows and
    controls (registered ones in the registry's order; ``references`` names unregistered ones)."""
    present = set(methods)
    roles = {m.name: m.role for m in method_infos()}
    known = [m for m in roles if m in present]
    last = {m for m in known if roles[m] in REFERENCE_ROLES} | (present & set(references))
    unknown = sorted(present - set(known) - last)
    return (
        [m for m in known if m not in last]
        + unknown
        + [m for m in known if m in last]
        + sorted(last - set(known))
    )


def method_label(method: str) -> str:
    """Column header of a method: its registry label (``random`` -> ``Baseline``), else its name."""
    return next((m.label for m in method_infos() if m.name == method), method)


_SOURCE_INFOS: list[MethodInfo] | None = None


@contextlib.contextmanager
def using_method_infos(infos: list[MethodInfo] | None) -> Iterator[None]:
    """Within the block, labels, roles and the baseline come from ``infos`` instead of the registry
    (None: the registry's).

    ``bench table`` and ``bench plot`` read them from the methods' source (``bench.cli.table``),
    which spares importing every method (torch, lightly, timm: seconds) only to name columns.
    """
    global _SOURCE_INFOS
    before, _SOURCE_INFOS = _SOURCE_INFOS, infos
    try:
        yield
    finally:
        _SOURCE_INFOS = before


def method_infos() -> list[MethodInfo]:
    """Every registered method's label, role and baseline flag, in column order (the registry's,
    or those given to :func:`use_method_infos`)."""
    if _SOURCE_INFOS is not None:
        return _SOURCE_INFOS
    from methods.registry import method_infos as registered

    return registered()


def baseline_name() -> str:
    """The method every other is compared against: the one flagged ``baseline`` (exactly one)."""
    flagged = [m.name for m in method_infos() if m.baseline]
    if len(flagged) != 1:
        raise ValueError(f"exactly one registered method must set baseline = True; found {flagged}")
    return flagged[0]


def _class_order(suffix: str) -> tuple[int, str]:
    return _KNOWN_CLASSES.get(suffix, ("", 99))[1], suffix


def class_columns(runs: pd.DataFrame, prefix: str = "acc") -> list[str]:
    """The ``<prefix>.<class>`` columns, in DFC id order (unknown classes after, alphabetically)."""
    cols = [c for c in runs.columns if c.startswith(f"{prefix}.")]
    return sorted(cols, key=lambda c: _class_order(c.partition(".")[2]))


def class_display_name(column: str) -> str:
    """``acc.Urban_Built-up`` -> ``Urban/Built-up`` (the DFC name when the class is known)."""
    suffix = column.partition(".")[2]
    return _KNOWN_CLASSES.get(suffix, (suffix, 0))[0]


def runs_from_mlflow(experiment: str | None = None) -> pd.DataFrame:
    """Every finished seed run of the experiment as a wide frame (empty frame when none)."""
    raw = completed_runs(experiment)
    if raw.empty:
        return pd.DataFrame(columns=list(ID_COLUMNS))
    runs = pd.DataFrame({"run_id": raw["run_id"]})
    for col, tag in ID_TAGS.items():
        runs[col] = raw.get(f"tags.{tag}")
    for param in ID_PARAMS:
        runs[param] = raw.get(f"params.{param}")
    runs["end_time"] = raw.get("end_time")
    if "tags.bench.label" in raw:  # a row under the user's label (--label): a column of its own
        runs["method"] = raw["tags.bench.label"].fillna(runs["method"])
    wanted = {f"metrics.{m}" for m in (*SUMMARY_METRICS, *SEGMENTATION_METRICS)}
    prefixes = tuple(f"metrics.{p}." for p in PER_CLASS_METRICS)
    for col in raw.columns:
        if col in wanted or col.startswith(prefixes):
            runs[col.removeprefix("metrics.")] = raw[col]
    runs["budget"] = pd.to_numeric(runs["budget"])
    runs["seed"] = pd.to_numeric(runs["seed"])
    runs["pretrain_seed"] = pd.to_numeric(runs["pretrain_seed"], errors="coerce")  # "None": reference rows
    runs[COMPUTE_KEY] = _images(runs[COMPUTE_KEY])
    return runs


def _images(values: pd.Series | None) -> pd.Series | int:
    """``pretrain_images`` as integers, 0 where not recorded (reference rows, older runs)."""
    if values is None:
        return 0
    return pd.to_numeric(values, errors="coerce").fillna(0).astype(int)


def dedupe(runs: pd.DataFrame) -> pd.DataFrame:
    """One run per result key (the latest finished), so a repeated cell is never counted twice."""
    if runs.empty:
        return runs
    return runs.sort_values("end_time").drop_duplicates("result_key", keep="last").reset_index(drop=True)


def long_form(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per run x score: the long-form CSV and the input of every statistic.

    ``metric`` is ``accuracy`` or ``IoU`` (per class, ``class`` names it) or a summary (``AA``,
    ``OA``, ``mIoU``, ``macroF1``; ``class`` empty); ``value`` is a fraction in [0, 1]. Both are
    ordered categoricals (metrics as :data:`METRICS`, classes in DFC id order).
    """
    runs = dedupe(runs)
    if COMPUTE_KEY not in runs.columns:  # frames made by hand, runs of older stores
        runs = runs.assign(**{COMPUTE_KEY: 0})
    per_class = [c for prefix in PER_CLASS_METRICS for c in class_columns(runs, prefix)]
    summaries = [m for m in (*SUMMARY_METRICS, *SEGMENTATION_METRICS) if m in runs.columns]
    ids = [c for c in ID_COLUMNS if c in runs.columns]
    long = runs.melt(id_vars=ids, value_vars=per_class + summaries, var_name="column", value_name="value")
    long = long.dropna(subset=["value"])
    prefix = long["column"].str.partition(".")[0]
    metric = prefix.map(PER_CLASS_METRICS).fillna(long["column"])
    names = list(dict.fromkeys(class_display_name(c) for c in class_columns(runs)))
    names += [n for n in dict.fromkeys(class_display_name(c) for c in per_class) if n not in names]
    classes = long["column"].map(lambda c: class_display_name(c) if c in per_class else "")
    long = long.drop(columns="column").assign(
        metric=pd.Categorical(metric, categories=list(METRICS)),
        **{"class": pd.Categorical(classes, categories=["", *names])},
    )
    long = long[[*ids, "metric", "class", "value"]]
    order = [c for c in ("protocol", "budget", "method", "seed", "metric", "class") if c in long.columns]
    return long.sort_values(order).reset_index(drop=True)


def with_references(long: pd.DataFrame) -> pd.DataFrame:
    """The long form with reference runs copied into every other protocol's table, flagged ``reference``.

    Reference runs share the budgets, seeds and test pixels of the deep protocols, so each of
    their rows joins the tables of the same dataset, budget unit and budget. They use no backbone:
    when references were recorded under several backbone tags, the table's own backbone wins, else
    the latest run of each (method, seed). Where no deep protocol ran (or none is selected) they
    form a ``reference`` table of their own rather than vanish.
    """
    is_ref = long["protocol"] == REFERENCE_PROTOCOL
    refs, deep = long[is_ref], long[~is_ref].assign(reference=False)
    join = ["dataset", "budget_unit", "budget"]
    targets = deep[[*join, "backbone", "protocol"]].drop_duplicates()
    found = refs[join].merge(targets[join].drop_duplicates(), on=join, how="left", indicator=True)
    alone = refs[(found["_merge"] == "left_only").to_numpy()].assign(reference=True)
    if targets.empty or alone.shape[0] == refs.shape[0]:
        return across_compute(pd.concat([deep, alone], ignore_index=True))
    attached = refs.drop(columns="protocol").merge(targets, on=join, suffixes=("_ran", ""))
    attached = attached.assign(_own=attached["backbone_ran"] == attached["backbone"])
    attached = attached.sort_values(["_own", "end_time"] if "end_time" in attached else ["_own"])
    unique = [*TABLE_KEYS, "method", "seed", "metric", "class"]
    attached = attached.drop_duplicates(unique, keep="last").drop(columns=["backbone_ran", "_own"])
    view = pd.concat([deep, attached.assign(reference=True), alone], ignore_index=True)[[*deep.columns]]
    return across_compute(view)


def across_compute(view: pd.DataFrame) -> pd.DataFrame:
    """Rows at ``pretrain_images`` 0 (a method that trains nothing, a reference row) copied into
    every compute level (> 0) of their table, so each level's table has its Baseline.

    A method with runs at a level keeps only those there: its level-0 runs (recorded before the
    level was a param) join only the levels where it has none. Tables with no level keep their
    level-0 rows as they are.
    """
    if COMPUTE_KEY not in view.columns:
        return view.assign(**{COMPUTE_KEY: 0})
    levels_of = view[COMPUTE_KEY] > 0
    if not levels_of.any():
        return view
    group = [k for k in TABLE_KEYS if k != COMPUTE_KEY]
    zero, rest = view[~levels_of], view[levels_of]
    levels = rest[[*group, COMPUTE_KEY]].drop_duplicates()
    copied = zero.drop(columns=COMPUTE_KEY).merge(levels, on=group)
    have = rest[[*group, COMPUTE_KEY, "method"]].drop_duplicates()
    copied = copied.merge(have, on=[*group, COMPUTE_KEY, "method"], how="left", indicator=True)
    copied = copied[copied["_merge"] == "left_only"].drop(columns="_merge")
    alone = zero.merge(levels[group].drop_duplicates(), on=group, how="left", indicator=True)
    alone = alone[alone["_merge"] == "left_only"].drop(columns="_merge")
    return pd.concat([rest, copied, alone], ignore_index=True)[[*view.columns]]


def summarise(long: pd.DataFrame) -> pd.DataFrame:
    """Mean, sample std (ddof=1) and seed count per table key x method x metric x class."""
    keys = [*TABLE_KEYS, "method", "metric", "class"]
    grouped = long.groupby(keys, observed=True, sort=True)["value"]
    return grouped.agg(mean="mean", std=lambda s: s.std(ddof=1), n="count").reset_index()


def select(runs: pd.DataFrame, **equal: object) -> pd.DataFrame:
    """Runs whose columns equal the given values; ``None`` values do not filter."""
    for col, value in equal.items():
        if value is not None:
            runs = runs[runs[col] == value]
    return runs


def select_for_tables(
    runs: pd.DataFrame, *, protocol: str | None = None, backbone: str | None = None, **equal: object
) -> pd.DataFrame:
    """:func:`select` that keeps reference runs whatever protocol or backbone is asked.

    They join every protocol's table (:func:`with_references`) and use no backbone.
    """
    is_ref = runs["protocol"] == REFERENCE_PROTOCOL
    deep = select(runs[~is_ref], protocol=protocol, backbone=backbone)
    return select(pd.concat([deep, runs[is_ref]]), **equal)


def dirty_versions(frame: pd.DataFrame) -> list[str]:
    """The ``+dirty`` code versions among the runs of ``frame`` (wide or long), sorted."""
    versions = frame["code_version"].dropna().astype(str).unique()
    return sorted(v for v in versions if v.endswith(DIRTY_SUFFIX))


def long_from_csv(path: Path) -> pd.DataFrame:
    """A long-form CSV written by ``bench table --long-csv`` read back as :func:`long_form` returns it.

    Metrics and classes become the same ordered categoricals (classes in DFC id order, unknown
    ones after), the budget and seed integers, an empty ``class`` the summaries' class. A file
    that is not such a CSV is one clear error naming it and the missing columns.
    """
    from bench.core.errors import BenchError

    try:
        raw = pd.read_csv(
            path, keep_default_na=False, na_values={"value": [""], "pretrain_seed": ["", "None"]}
        )
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as err:
        reason = " ".join(str(err).split())
        raise BenchError(
            f"--from {path}: not a long-form CSV of `bench table --long-csv` ({reason})"
        ) from err
    needed = {*TABLE_KEYS, "method", "seed", "metric", "class", "value"} - {COMPUTE_KEY}
    missing = sorted(needed - set(raw.columns))
    if missing:
        raise BenchError(
            f"--from {path}: not a long-form CSV of `bench table --long-csv` "
            f"(missing columns: {', '.join(missing)})"
        )
    unknown_metrics = sorted(set(raw["metric"]) - set(METRICS))
    if unknown_metrics:
        raise BenchError(
            f"--from {path}: unknown metric(s) {', '.join(unknown_metrics)}; known: {', '.join(METRICS)}"
        )
    known = {name: i for i, name in DFC_NAMES.items()}
    names = sorted((c for c in set(raw["class"]) if c), key=lambda c: (known.get(c, 99), c))
    raw["budget"] = pd.to_numeric(raw["budget"]).astype(int)
    raw["seed"] = pd.to_numeric(raw["seed"]).astype(int)
    raw["value"] = pd.to_numeric(raw["value"])
    for col in ("pretrain_seed",):
        if col in raw.columns:
            raw[col] = pd.to_numeric(raw[col], errors="coerce")
    raw[COMPUTE_KEY] = _images(raw[COMPUTE_KEY]) if COMPUTE_KEY in raw.columns else 0  # older CSVs
    for col in (
        "dataset",
        "code_version",
        "backbone",
        "budget_unit",
        "protocol",
        "method",
        "result_key",
        "run_id",
    ):
        if col in raw.columns:
            raw[col] = raw[col].astype(str)
    return raw.assign(
        metric=pd.Categorical(raw["metric"], categories=list(METRICS)),
        **{"class": pd.Categorical(raw["class"], categories=["", *names])},
    )


def failed_health(frame: pd.DataFrame) -> pd.Series:
    """True for rows whose weights came from a pretraining that failed its health gate."""
    if "pretrain_health" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["pretrain_health"].fillna("").astype(str).str.startswith(FAILED_HEALTH)


def below_init(frame: pd.DataFrame) -> pd.Series:
    """True for rows whose weights score below their own random init on validation pixels (a
    usefulness figure, not a gate: such rows are kept and marked, never dropped)."""
    if "pretrain_usefulness" not in frame.columns:
        return pd.Series(False, index=frame.index)
    return frame["pretrain_usefulness"].fillna("").astype(str).str.startswith(BELOW_INIT)


def unhealthy_methods(frame: pd.DataFrame) -> dict[str, str]:
    """``{method: reasons}`` of the methods with seed runs on weights that failed their health gate
    (``--allow-unhealthy``): what plots and printed tables mark, as the tables do."""
    bad = frame[failed_health(frame)]
    return {
        str(method): "; ".join(sorted(rows["pretrain_health"].astype(str).unique()))
        for method, rows in bad.groupby("method", sort=True, observed=True)
    }
