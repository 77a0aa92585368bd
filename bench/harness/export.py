"""Pretrained weights out of the harness: safetensors, a JSON card, a loader, the trunk for timm.

Why: the weights a method trains are the harness's :class:`~bench.models.base.SegBackbone` state
dict in ``BENCH_HOME/weights``, useless to anyone who does not run the harness. An export is

- ``<stem>.safetensors``: the whole backbone (stem, fusion, trunk, decoder), the card in its
  metadata. It loads back into the harness (:func:`load_export`, identical outputs) and as
  ``--weights`` (``bench run --method imagenet --weights <stem>.safetensors --label NAME``
  evaluates it whole, exactly as the cached weights);
- ``load_backbone.py``: :mod:`bench.models.standalone`, copied unchanged: ``load_backbone(path)``
  rebuilds the backbone from the card with torch + timm only (no harness code) and loads every
  tensor; ``normalise(s1_db, s2_dn, card)`` makes its input from raw S1 dB and S2 DN;
- ``<stem>.json``: the card (:func:`make_card`): method, version and config, pretraining seed,
  backbone spec, the bands in input order with their units (S1 sigma0 in dB, S2 L1C reflectance
  x 10000), the normalisation as a formula and per band (DESIGN 2.3), a timm-style
  ``pretrained_cfg``, pretraining-data and dataset fingerprints, code version, health figures;
- ``<stem>.timm.safetensors`` (timm trunks, by ``bench export`` only): the trunk alone under timm's
  own key names, a complete ``timm.create_model(name)`` state dict, loadable with
  ``pretrained_cfg_overlay=dict(file=...)``. For a standard-stem backbone (``*-stdstem``) it holds
  everything trained, ``conv1`` on all bands included (only ``fc`` is timm's initialisation).
  For a band-shared one the stem and fusion replace the ResNet's first stage, so ``conv1``,
  ``bn1`` and ``fc`` there are timm's fresh initialisation (seed 0), never trained: the card, the
  file's own metadata (``bench.holds``, ``bench.not_trained``) and the command say so; the whole
  trained backbone is ``<stem>.safetensors``. The ``tiny`` backbone's trunk is the harness's own
  U-Net: no timm file, and the card says so.

A trained pretraining run whose weights passed their health gate logs one artifact,
``export/<stem>.safetensors`` (the card is in it), through :func:`log_pretrained`; runs that train
nothing (``random``, ``imagenet``) or failed their gate log none, and the timm file is written
only on demand, by ``bench export``.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bench.core.atomic import atomic_paths
from bench.core.errors import BenchError
from bench.core.integrity import clean_stale_temporaries
from bench.core.provenance import code_version, source_digest
from bench.models import standalone
from bench.models.backbones import SegBackbone, TimmDenseTrunk, TinyTrunk, build_backbone
from bench.models.exported import BACKBONE, CARD_KEY, EXPORT_FORMAT, ROLE_KEY, load_export, read_card

__all__ = [
    "ARTIFACT_DIR",
    "CARD_KEY",
    "EXPORT_FORMAT",
    "cached_record",
    "export_weights",
    "load_cached_file",
    "load_export",
    "log_pretrained",
    "make_card",
    "read_card",
    "write_export",
]

#: The MLflow artifact folder of a pretraining run's export.
ARTIFACT_DIR = "export"
#: What the name of each temporary of an export starts with after its dot (see :func:`write_export`).
TEMP_TAG = "bench-export."
#: The name the standalone loader has in an export folder.
LOADER = "load_backbone.py"
#: Why some backbones have no timm trunk file (said in the card and by ``bench export``).
NO_TIMM_TRUNK = (
    "no timm trunk: backbone {name!r} has the harness's own trunk; only the whole backbone is exported"
)
#: The normalisation of DESIGN 2.3, as the card states it (the numbers are in ``per_band``).
FORMULA = {
    "scaled": "S1 (sigma0, dB): non-finite -> fill, clip to [-25, 0], x / 25 + 1 -> [0, 1]; "
    "S2 (L1C reflectance x 10000): clip to [0, 10000], x / 10000 -> [0, 1]; "
    "per band: (clip(x) - subtract) / divide",
    "zscore": "S1 (dB): non-finite -> fill, clip to [-25, 0]; S2 (DN): clip to [0, 10000]; then each "
    "band (x - mean) / std with fixed DFC2020 statistics; per band: (clip(x) - subtract) / divide",
}


def _tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, detached copies: what safetensors accepts."""
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def timm_trunk_state(model: SegBackbone) -> tuple[dict[str, torch.Tensor], list[str]] | None:
    """The trunk as a complete state dict of ``timm.create_model(name)`` (``in_chans`` = the bands
    for a standard-stem trunk), and the keys in it that the harness did not train (timm's
    initialisation, seed 0: the first stage of a band-shared backbone, and the classifier); None
    when the trunk is not a timm one."""
    trunk = model.trunk
    if not isinstance(trunk, TimmDenseTrunk):
        return None
    import timm

    in_chans = trunk.timm_kwargs.get("in_chans", 3)
    with torch.random.fork_rng(devices=[]):  # the placeholders must not move the caller's RNG
        torch.manual_seed(0)
        full = timm.create_model(trunk.timm_name, pretrained=False, in_chans=in_chans)
    state = _tensors(full.state_dict())
    trained = _tensors(trunk.encoder.state_dict())
    foreign = sorted(set(trained) - set(state))
    if foreign:  # the features_only encoder keeps timm's names; anything else is a bug worth naming
        raise BenchError(f"trunk keys not in timm's {trunk.timm_name}: {', '.join(foreign[:4])}")
    state.update(trained)
    return state, sorted(set(state) - set(trained))


def _health(tags: Mapping[str, str], metrics: Mapping[str, float]) -> dict[str, Any] | None:
    """The health figures of a pretraining run: its health verdict tag and last ``pretrain.*`` values."""
    figures = {k: float(v) for k, v in sorted(metrics.items()) if k.startswith("pretrain.")}
    verdict = tags.get("bench.pretrain_health")
    if not figures and verdict is None:
        return None
    return {"verdict": verdict, "last": figures}


def _as_dict(value: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    return dict(value)


def _normalisation(ds: Any) -> dict[str, Any] | None:
    """The dataset's normalisation: its settings, the formula, and per band what is done to it."""
    norm = getattr(ds, "normalisation", None)
    if norm is None:
        return None
    settings = _as_dict(norm)
    rows = norm.per_band() if hasattr(norm, "per_band") else []  # a plugin dataset's may not say
    per_band = [row for row in rows if row["band"] in ds.band_names]
    return {**settings, "formula": FORMULA.get(settings.get("mode", ""), ""), "per_band": per_band}


def _patch_size(ds: Any) -> list[int]:
    images = getattr(getattr(ds, "labelled", None), "images", None)
    return [int(n) for n in images.shape[-2:]] if images is not None else [256, 256]


def pretrained_cfg(
    model: SegBackbone, ds: Any, method: str, norm: Mapping[str, Any] | None
) -> dict[str, Any]:
    """A timm-style ``pretrained_cfg`` of the export's input: band count and size, ``mean``/``std``
    per band in the raw units (S1 dB, S2 DN; after the clip: the normalisation's ``subtract`` and
    ``divide``), and for a standard-stem timm trunk the overlay that loads ``<stem>.timm.safetensors``
    (``file`` is added by :func:`write_export`)."""
    trunk = model.trunk
    timm_name = trunk.timm_name if isinstance(trunk, TimmDenseTrunk) else None
    bands = norm["per_band"] if norm else []
    whole = isinstance(trunk, TimmDenseTrunk) and trunk.first_stage
    return {
        "architecture": timm_name or model.spec.name,
        "tag": f"bench-{method}",
        "input_size": [model.spec.in_chans, *_patch_size(ds)],
        "fixed_input_size": False,
        "mean": [b["subtract"] for b in bands],
        "std": [b["divide"] for b in bands],
        "interpolation": "bilinear",
        "crop_pct": 1.0,
        "num_classes": 1000 if timm_name else 0,
        "first_conv": "conv1" if whole else ("stem.layers.0.0" if model.band_stem else None),
        "classifier": "fc" if timm_name else None,
        "notes": [
            "mean/std are in raw units per band, after clipping (see normalisation.per_band): "
            "x_in = (clip(x) - mean) / std; not ImageNet RGB statistics",
            "the timm file holds the trained conv1 on all bands: timm.create_model(architecture, "
            "pretrained=True, in_chans=input_size[0], pretrained_cfg_overlay=<this dict>)"
            if whole
            else "no timm-loadable first stage: the band-shared stem replaces conv1; load the whole "
            f"backbone with {LOADER}",
        ],
    }


def make_card(
    model: SegBackbone,
    record: Mapping[str, Any],
    ds: Any,
    *,
    version: str,
    health: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """The card of an export. ``record``: the weights cache's record (``key``, ``method``, ``config``,
    ``backbone``, ``data_fingerprint``, ``seed``; see :class:`bench.harness.pretraining.PretrainRecord`)."""
    spec = dataclasses.asdict(model.spec)
    timm_name = model.trunk.timm_name if isinstance(model.trunk, TimmDenseTrunk) else None
    norm = _normalisation(ds)
    rows = {row["band"]: row for row in (norm["per_band"] if norm else [])}
    builtin = isinstance(model.trunk, TimmDenseTrunk | TinyTrunk)
    return {
        "format": EXPORT_FORMAT,
        "method": record["method"],
        "method_version": version,
        "config": record["config"],
        "pretrain_seed": record["seed"],
        "weights_key": record["key"],
        "backbone": spec,
        "stem": "band-shared (one single-channel stem for every band, then a 1x1 fusion)"
        if model.band_stem
        else "standard (timm conv1 on all bands)",
        "bands": list(ds.band_names),
        "units": {band: rows[band]["unit"] for band in ds.band_names if band in rows},
        "input": "(B, C, H, W) with C = len(bands) in this order, each normalised as `normalisation` says",
        "normalisation": norm,
        "pretrained_cfg": pretrained_cfg(model, ds, record["method"], norm),
        "loader": (
            {
                "file": LOADER,
                "needs": "torch, timm",
                "use": f"from load_backbone import load_backbone; "
                f"model = load_backbone({'<stem>.safetensors'!r})",
            }
            if builtin
            else {
                "file": None,
                "reason": f"backbone {model.spec.name!r} is a plugin's: load it with its package",
            }
        ),
        "pretraining_data_fingerprint": record["data_fingerprint"],
        "dataset_fingerprint": ds.fingerprint,
        "code_version": code_version(),
        "code_digest": source_digest(),
        "health": dict(health) if health is not None else None,
        "timm_trunk": (
            {"model": timm_name}
            if timm_name
            else {"model": None, "reason": NO_TIMM_TRUNK.format(name=model.spec.name)}
        ),
    }


def _holds(timm_name: str, not_trained: list[str], method: str, backbone: str) -> str:
    """One sentence for the timm file's metadata: what it holds, and what in it is not trained."""
    return (
        f"timm {timm_name} state dict of bench method {method!r} ({backbone}): every tensor as the "
        f"method left it except {', '.join(not_trained)}, which are timm's random initialisation "
        "(seed 0), NOT trained"
        + (
            " (the band-shared stem and fusion replaced conv1/bn1; the whole trained backbone is the "
            "export's plain .safetensors file)"
            if any(k.startswith("conv1.") for k in not_trained)
            else ""
        )
    )


def write_export(
    model: SegBackbone, card: Mapping[str, Any], out: Path, stem: str, *, timm: bool = True
) -> dict[str, Path]:
    """Write the export's files into ``out``, all or nothing; returns them by role. ``timm``: also
    the trunk in timm's names (``bench export``; a pretraining run's artifact is the backbone only).

    Every file is written to a temporary in ``out`` first (named ``.bench-export.*.tmp``) and the
    set renamed into place only once all are written: a failure (a full disk, a refused write)
    leaves none of this export's files, never a ``.safetensors`` without its card. Temporaries a
    killed export left in ``out`` are removed once stale (:data:`bench.core.integrity.STALE_AFTER_S`);
    only this writer's, and only directly in ``out``, which may be a folder the user keeps other
    things in.
    """
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out, tag=TEMP_TAG, recursive=False)
    card = dict(card)
    files = {"backbone": out / f"{stem}.safetensors", "card": out / f"{stem}.json"}
    if card.get("loader", {}).get("file"):
        files["loader"] = out / LOADER
        card["loader"] = {**card["loader"], "use": card["loader"]["use"].replace("<stem>", stem)}
    trunk = timm_trunk_state(model) if timm else None
    if trunk is not None:
        files["timm_trunk"] = out / f"{stem}.timm.safetensors"
        timm_name = card["timm_trunk"]["model"]
        whole = isinstance(model.trunk, TimmDenseTrunk) and model.trunk.first_stage
        cfg = {**card["pretrained_cfg"], "file": files["timm_trunk"].name} if whole else None
        load = (
            f"timm.create_model({timm_name!r}, pretrained=True, in_chans={model.spec.in_chans}, "
            f"pretrained_cfg_overlay=card['pretrained_cfg'])"
            if whole
            else f"timm.create_model({timm_name!r}, pretrained=True, "
            f"pretrained_cfg_overlay=dict(file={files['timm_trunk'].name!r}))"
        )
        if cfg is not None:
            card["pretrained_cfg"] = cfg
        card["timm_trunk"] = {
            "model": timm_name,
            "file": files["timm_trunk"].name,
            "load": load,
            "holds": _holds(timm_name, trunk[1], card["method"], model.spec.name),
            "not_trained": trunk[1],
            "why_not_trained": "the harness has no classifier"
            + ("" if whole else "; the band-shared stem and fusion replace the ResNet's first stage")
            + ": these are timm's initialisation (seed 0)",
        }
    card["files"] = {role: path.name for role, path in files.items()}
    text = json.dumps(card, indent=2, sort_keys=True, default=str)
    order = ("backbone", "timm_trunk", "loader", "card")  # the card last: with it, the export is whole
    with atomic_paths({role: files[role] for role in order if role in files}, tag=TEMP_TAG) as tmp:
        meta = {CARD_KEY: text, ROLE_KEY: BACKBONE, "format": "pt"}
        save_file(_tensors(model.state_dict()), str(tmp["backbone"]), metadata=meta)
        if trunk is not None:
            meta = {
                CARD_KEY: text,
                ROLE_KEY: "timm_trunk",
                "format": "pt",
                "bench.holds": card["timm_trunk"]["holds"],
                "bench.not_trained": ",".join(trunk[1]),
            }
            save_file(trunk[0], str(tmp["timm_trunk"]), metadata=meta)
        if "loader" in files:
            tmp["loader"].write_text(Path(standalone.__file__).read_text())
        tmp["card"].write_text(text + "\n")
    return files


def log_pretrained(model: SegBackbone, record: Mapping[str, Any], ds: Any, *, version: str) -> None:
    """Log freshly pretrained weights as one artifact of the active MLflow run (the pretraining
    run): ``export/<stem>.safetensors``, the whole backbone with its card (and the health figures
    that run logged) in the metadata; nothing without an active run. The caller logs only trained
    weights that passed their gate (``bench.harness.pretraining``); the loader, the JSON card and
    the timm trunk come with ``bench export``."""
    import mlflow

    from bench.harness.tracking import retrying

    run = mlflow.active_run()
    if run is None:
        return
    logged = retrying(mlflow.get_run, run.info.run_id).data
    card = make_card(model, record, ds, version=version, health=_health(logged.tags, logged.metrics))
    with tempfile.TemporaryDirectory() as tmp:
        stem = f"{record['method']}-{record['backbone']}-{record['key']}"
        files = write_export(model, card, Path(tmp), stem, timm=False)
        retrying(mlflow.log_artifact, str(files["backbone"]), ARTIFACT_DIR)


def _health_from_store(key: str) -> dict[str, Any] | None:
    """Health figures of the latest finished pretraining run of weights ``key``, when the tracking
    store exists (an export must not create a store just to look)."""
    from bench.harness import tracking

    uri = tracking.tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
        return None
    client, exp_id = tracking.setup_tracking()
    runs = client.search_runs(
        [exp_id],
        f"tags.`bench.kind` = 'pretrain' and tags.`bench.pretrain_key` = '{key}' "
        "and attributes.status = 'FINISHED'",
        order_by=["attributes.end_time DESC"],
        max_results=1,
    )
    return _health(runs[0].data.tags, runs[0].data.metrics) if runs else None


def export_weights(model: SegBackbone, record: Mapping[str, Any], ds: Any, out: Path) -> dict[str, Path]:
    """Export cached weights (``record``: the cache's record of them) into ``out``."""
    from methods import get_method

    health = _health_from_store(record["key"]) or {}
    sidecar = Path(record["path"]).with_suffix(".json")
    verdict = json.loads(sidecar.read_text()).get("health") if sidecar.is_file() else None
    if isinstance(verdict, str):  # the cache's record of the health gate's verdict
        health = {"last": {}, **health, "verdict": verdict}
    card = make_card(model, record, ds, version=get_method(record["method"]).version, health=health or None)
    return write_export(model, card, out, Path(record["path"]).stem)


def cached_record(path: Path) -> dict[str, Any]:
    """The record the weights cache keeps beside ``path`` (``<name>.json``); a one-line error without."""
    sidecar = path.with_suffix(".json")
    if not path.is_file():
        raise BenchError(f"--from {path}: no such file")
    if not sidecar.is_file():
        raise BenchError(
            f"--from {path}: no record {sidecar.name} beside it (the weights cache writes one); "
            "export by --method/--backbone/--pretrain-seed instead"
        )
    record: dict[str, Any] = json.loads(sidecar.read_text())
    return {**record, "path": str(path)}


def load_cached_file(path: Path, record: Mapping[str, Any], in_chans: int) -> SegBackbone:
    """The backbone of a weights-cache file (a harness state dict), checked against its record."""
    model = build_backbone(record["backbone"], in_chans=in_chans)
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    except Exception as exc:  # a file of another backbone, or not a state dict
        raise BenchError(
            f"--from {path}: not {record['backbone']} weights for {in_chans} bands "
            f"({str(exc).strip().splitlines()[0][:160]})"
        ) from exc
    return model
