"""Pretrained weights out of the harness: safetensors, a JSON card, and the trunk in timm's names.

Why: the weights a method trains are the harness's :class:`~bench.models.base.SegBackbone` state
dict in ``BENCH_HOME/weights``, useless to anyone who does not run the harness. An export is

- ``<stem>.safetensors``: the whole backbone (stem, fusion, trunk), loadable back into the
  harness with :func:`load_export` (identical outputs); the card is in its metadata too;
- ``<stem>.json``: the card (:func:`make_card`): method, version and config, pretraining seed,
  backbone spec, bands in input order, normalisation, pretraining-data and dataset fingerprints,
  code version, and the health figures of the pretraining run when it logged any;
- ``<stem>.timm.safetensors`` (timm trunks only): the trunk alone under timm's own key names, a
  complete ``timm.create_model(name)`` state dict, so that
  ``timm.create_model(name, pretrained=True, pretrained_cfg_overlay=dict(file=...))`` loads it
  as timm loads its own weights. The band-shared stem and fusion replace the ResNet's first stage
  (``conv1``/``bn1``) and the harness has no classifier, so those tensors (and only those) are
  timm's fresh initialisation (seed 0); the card and the file's metadata list them. The ``tiny``
  backbone's trunk is the harness's own U-Net: it has no timm trunk, and the card says so.

Every pretraining run logs the same files as MLflow artifacts (``export/``) through
:func:`log_pretrained`, so a run's weights are found where its metrics are.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from bench.core.atomic import atomic_path
from bench.core.errors import BenchError
from bench.core.provenance import code_version, source_digest
from bench.models.backbones import SegBackbone, TimmDenseTrunk, build_backbone

#: Version of the export's layout (files, card keys); readers check it.
EXPORT_FORMAT = "bench-export/1"
#: The MLflow artifact folder of a pretraining run's export.
ARTIFACT_DIR = "export"
#: The safetensors metadata key that holds the card.
CARD_KEY = "bench.card"
#: Why some backbones have no timm trunk file (said in the card and by ``bench export``).
NO_TIMM_TRUNK = (
    "no timm trunk: backbone {name!r} has the harness's own trunk; only the whole backbone is exported"
)


def _tensors(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, detached copies: what safetensors accepts."""
    return {k: v.detach().cpu().contiguous() for k, v in state.items()}


def timm_trunk_state(model: SegBackbone) -> tuple[dict[str, torch.Tensor], list[str]] | None:
    """The trunk as a complete state dict of ``timm.create_model(name)``, and the keys in it that the
    harness did not train (first stage and classifier: timm's initialisation, seed 0); None when the
    trunk is not a timm one."""
    trunk = model.trunk
    if not isinstance(trunk, TimmDenseTrunk):
        return None
    import timm

    with torch.random.fork_rng(devices=[]):  # the placeholders must not move the caller's RNG
        torch.manual_seed(0)
        full = timm.create_model(trunk.timm_name, pretrained=False)
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


def _as_dict(value: Any) -> Any:
    return (
        dataclasses.asdict(value)
        if dataclasses.is_dataclass(value) and not isinstance(value, type)
        else value
    )


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
    return {
        "format": EXPORT_FORMAT,
        "method": record["method"],
        "method_version": version,
        "config": record["config"],
        "pretrain_seed": record["seed"],
        "weights_key": record["key"],
        "backbone": spec,
        "bands": list(ds.band_names),
        "input": "(B, C, H, W) with C = len(bands) in this order, each normalised as `normalisation` says",
        "normalisation": _as_dict(getattr(ds, "normalisation", None)),
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


def write_export(model: SegBackbone, card: Mapping[str, Any], out: Path, stem: str) -> dict[str, Path]:
    """Write the export's files into ``out`` (each atomically); returns them by role."""
    from safetensors.torch import save_file

    out.mkdir(parents=True, exist_ok=True)
    card = dict(card)
    files = {"backbone": out / f"{stem}.safetensors", "card": out / f"{stem}.json"}
    trunk = timm_trunk_state(model)
    if trunk is not None:
        files["timm_trunk"] = out / f"{stem}.timm.safetensors"
        timm_name = card["timm_trunk"]["model"]
        card["timm_trunk"] = {
            "model": timm_name,
            "file": files["timm_trunk"].name,
            "load": f"timm.create_model({timm_name!r}, pretrained=True, "
            f"pretrained_cfg_overlay=dict(file={files['timm_trunk'].name!r}))",
            "not_trained": trunk[1],
            "why_not_trained": "the band-shared stem and fusion replace the ResNet's first stage; the "
            "harness has no classifier: these are timm's initialisation (seed 0)",
        }
    card["files"] = {role: path.name for role, path in files.items()}
    text = json.dumps(card, indent=2, sort_keys=True, default=str)
    with atomic_path(files["backbone"]) as tmp:
        save_file(_tensors(model.state_dict()), str(tmp), metadata={CARD_KEY: text})
    if trunk is not None:
        meta = {CARD_KEY: text, "bench.not_trained": ",".join(trunk[1])}
        with atomic_path(files["timm_trunk"]) as tmp:
            save_file(trunk[0], str(tmp), metadata=meta)
    with atomic_path(files["card"]) as tmp:
        Path(tmp).write_text(text + "\n")
    return files


def read_card(path: Path) -> dict[str, Any]:
    """The card of an exported ``.safetensors`` file (from its metadata)."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            meta = handle.metadata() or {}
    except Exception as exc:  # safetensors raises its own types for a bad file
        raise BenchError(f"{path}: not a safetensors file ({str(exc).splitlines()[0][:120]})") from exc
    if CARD_KEY not in meta:
        raise BenchError(f"{path}: no bench card in its metadata; it is not a `bench export` file")
    card: dict[str, Any] = json.loads(meta[CARD_KEY])
    return card


def load_export(path: Path) -> tuple[SegBackbone, dict[str, Any]]:
    """The harness backbone an export holds, with its card; one-line errors for a file that is not
    one or was written for another architecture revision."""
    from safetensors.torch import load_file

    card = read_card(path)
    spec = card["backbone"]
    model = build_backbone(spec["name"], in_chans=int(spec["in_chans"]))
    if dataclasses.asdict(model.spec) != spec:
        raise BenchError(
            f"{path}: exported for backbone spec {spec}, this harness builds {dataclasses.asdict(model.spec)}"
        )
    model.load_state_dict(load_file(str(path)))
    return model, card


def log_pretrained(model: SegBackbone, record: Mapping[str, Any], ds: Any, *, version: str) -> None:
    """Log the export of freshly pretrained weights as artifacts of the active MLflow run (the
    pretraining run), with the health figures that run logged; nothing without an active run."""
    import mlflow

    from bench.harness.tracking import retrying

    run = mlflow.active_run()
    if run is None:
        return
    logged = retrying(mlflow.get_run, run.info.run_id).data
    card = make_card(model, record, ds, version=version, health=_health(logged.tags, logged.metrics))
    with tempfile.TemporaryDirectory() as tmp:
        write_export(model, card, Path(tmp), f"{record['method']}-{record['backbone']}-{record['key']}")
        retrying(mlflow.log_artifacts, tmp, ARTIFACT_DIR)


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
