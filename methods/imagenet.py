"""``imagenet``: ImageNet (or any other ResNet) weights in the trunk.

The weights come from the Hugging Face hub cache (``timm.create_model(..., pretrained=True)``) or,
with ``--weights FILE``, from the file a user has: torchvision's ``resnet18-f37072fd.pth``, timm's
``pytorch_model.bin`` / ``model.safetensors``, a Lightning ``.ckpt`` (weights under ``state_dict``,
a prefix such as ``model.`` or ``backbone.`` stripped), or this field's multispectral checkpoints
(torchgeo / SSL4EO-S12 style, a ``conv1`` of 13 or any number of bands, MoCo's ``encoder_q.``).
Everything that maps onto the trunk by name and shape is loaded, and one line (a warning, printed
once by the command) says what was left out and why: the ResNet's first stage always (the
band-shared stem and fusion replace ``conv1``/``bn1``, so the band count of ``conv1`` does not
matter), heads (``fc``), and any trunk tensor the file lacks or has in another shape (kept at
random init). A file of another architecture (fewer than 90 % of the trunk's tensors map) is a
one-line error listing what differs. Run such weights as a row of their own with a label:
``bench run --method imagenet --weights ssl4eo.pth --label SSL4EO``. Nothing is trained
(``needs_data = False``). A sweep asks :meth:`ImageNet.unavailable_reason` first, so a backbone
without a timm trunk or a machine without weights skips the method once instead of failing every unit.

Two more kinds of ``--weights`` file:

- a ``bench export`` backbone (``<stem>.safetensors`` with its card): the whole backbone it holds is
  loaded, every tensor (stem, fusion, trunk, decoder), for the backbone it was exported for, so
  ``--method imagenet --weights <export> --label NAME`` evaluates exactly the exported weights
  (the same linear AA as the cached ones); a card of another backbone is a one-line error;
- on a standard-stem backbone (``resnet18-stdstem``: timm's ``conv1`` on all bands) the file's
  ``conv1`` and ``bn1`` are loaded too, so band-specific weights are evaluated as they were trained.
  The ``conv1`` is placed by its band count (:func:`first_conv_for`): as many bands as the input,
  as is; 3 (RGB, ImageNet), by timm's own ``adapt_input_conv`` (as ``timm.create_model(...,
  in_chans=C)`` does); 13 (Sentinel-2 L1C B1 ... B12, the order of SSL4EO-S12 and torchgeo, whose
  inputs are also DN / 10000, as here) or 2 (Sentinel-1 VV, VH) at those bands by name, the other
  bands' filters at zero, so the network starts as the file's network on its own bands. Through
  the hub (no file), timm's own ``in_chans`` adaptation.

How the pieces are initialised (band-shared backbones):

- Trunk encoder: the checkpoint, less the ResNet's first stage (``conv1``/``bn1``), which the
  band-shared stem and the fusion replace in the trunk (``bench.models.timm_resnet``).
- Band-shared stem, first conv (``width`` 3x3 filters on one band): from the file's first
  conv (64 filters of 7x7 on RGB, or on 13 bands), averaged over its bands (a band is treated as
  a grey image); the central 3x3 of each, and of those the ``width`` filters with the most
  energy in that 3x3
  (colour-opponent filters average to about zero over RGB and would give dead filters).
  Each is rescaled to the L2 norm of its full 7x7 mean filter, so the crop keeps the filter's
  response scale; the BatchNorm that follows makes the exact scale matter little. Off with
  ``stem_from_rgb=False``.
- Fusion, decoder and the rest of the stem: the harness's seeded random initialisation.
  Inputs are [0, 1] reflectance / scaled dB, not ImageNet-standardised: the fusion layer and
  the BatchNorms adapt during evaluation (finetune) or the features are used as they are (linear).
"""

from __future__ import annotations

import dataclasses
import functools
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.models.backbones import SegBackbone, TimmDenseTrunk, build_backbone
from bench.models.exported import is_export, load_export_into, read_card
from bench.models.timm_resnet import RESNET_FIRST_STAGE
from methods.registry import PretrainContext, PretrainMethod, register_method


@dataclass
class ImageNetConfig:
    """``stem_from_rgb``: initialise the stem's first conv from the mean ImageNet RGB filters."""

    stem_from_rgb: bool = True


def _how_to_provide(timm_name: str) -> str:
    return (
        f"provide them with --weights FILE (torchvision's {timm_name}-*.pth, timm's pytorch_model.bin or "
        f"model.safetensors from huggingface.co/timm/{timm_name}.a1_in1k, or a Lightning .ckpt; README, "
        f"'ImageNet weights'), or fill the Hugging Face hub cache ($HF_HOME) on a machine with internet: "
        f"python -c \"import timm; timm.create_model('{timm_name}', pretrained=True)\""
    )


#: Containers that checkpoints wrap the weights in: Lightning (``state_dict``), DeiT/MAE (``model``).
CHECKPOINT_WRAPPERS = ("state_dict", "model", "module")
#: Seconds the Hugging Face hub gets to answer before ImageNet counts as unavailable.
HUB_TIMEOUT_S = 3.0


def read_checkpoint(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file: torchvision ``.pth``, timm ``pytorch_model.bin`` /
    ``model.safetensors``, or a Lightning ``.ckpt`` (its ``state_dict``); a one-line error otherwise.

    Loaded with ``weights_only=True``: a checkpoint is data, and must not run code when opened.
    """
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            content: object = load_file(path)
        else:
            content = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch/safetensors raise many types for a bad file; all mean "unreadable"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise BenchError(f"cannot read ImageNet weights {path}: {first}") from exc
    while isinstance(content, dict):
        wrapper = next((k for k in CHECKPOINT_WRAPPERS if isinstance(content.get(k), dict)), None)
        if wrapper is None:
            break
        content = content[wrapper]
    tensors = (
        {k: v for k, v in content.items() if isinstance(v, torch.Tensor)} if isinstance(content, dict) else {}
    )
    if not tensors:
        raise BenchError(
            f"--weights {path}: holds no state dict (no tensors under {', '.join(CHECKPOINT_WRAPPERS)})"
        )
    return tensors


def _reference_state(timm_name: str) -> tuple[dict[str, torch.Size], str, str]:
    """Tensor shapes of the complete timm classifier model (on the meta device: no memory, no
    download), its first conv's name and its classifier's prefix."""
    import timm

    with torch.device("meta"):
        model = timm.create_model(timm_name, pretrained=False)
    cfg: dict[str, Any] = dict(model.pretrained_cfg)  # type: ignore[arg-type]
    shapes = {k: v.shape for k, v in model.state_dict().items()}
    return shapes, str(cfg["first_conv"]), f"{cfg['classifier']}."


def _network_prefix(keys: list[str], anchors: Sequence[str]) -> str:
    """The prefix a framework put before the network's own keys (``model.``, ``backbone.``,
    ``module.encoder_q.``, ...): the shortest one under which an ``anchor`` key (the first conv,
    else the trunk's first tensor) is found; ``""`` for a plain file."""
    for anchor in anchors:
        candidates = [k[: -len(anchor)] for k in keys if k.endswith(anchor)]
        candidates = [c for c in candidates if c == "" or c.endswith(".")]
        if candidates:
            return min(candidates, key=len)
    return ""


#: Below this fraction of the trunk's tensors mapping by name and shape, a file is another network.
MIN_MAPPED = 0.9


@dataclass(frozen=True)
class MappedCheckpoint:
    """What a ``--weights`` file gives the harness, under timm's key names.

    ``trunk``: the trunk tensors that map by name and shape; ``first_conv``: the file's first conv
    (any number of input bands), whose band mean initialises the stem, or None; ``note``: one line
    saying what was left out and why.
    """

    trunk: dict[str, torch.Tensor]
    first_conv: torch.Tensor | None
    note: str
    #: The file's ``bn1`` tensors (timm's names), for a standard-stem trunk that keeps its own.
    first_bn: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def _listed(keys: Sequence[str]) -> str:
    return f"{', '.join(keys[:3])}{', ...' if len(keys) > 3 else ''}"


def checkpoint_state(path: Path, timm_name: str, first_stage: bool = False) -> MappedCheckpoint:
    """The tensors of ``path`` that map onto the trunk of ``timm_name`` (timm's key names), and one
    line on what was left out.

    Whatever framework wrote it (timm, torchvision, Lightning, torchgeo, MoCo's ``encoder_q``), the
    network's keys are found under a common prefix. The ResNet's first stage (``conv1``, ``bn1``) is
    always left out: the band-shared stem and the fusion replace it, so a ``conv1`` of 3, 13 or any
    number of bands is fine (its band mean initialises the stem). Classifier or projection heads
    (``fc.*``) are left out: the harness has none. Trunk tensors missing from the file or of another
    shape keep their random initialisation and are named; tensors the trunk does not have are named
    too. A file where fewer than :data:`MIN_MAPPED` of the trunk's tensors map is another
    architecture: a one-line error listing what differs (never a trunk loaded at random in parts).
    ``first_stage`` (a standard-stem trunk): ``conv1`` and ``bn1`` are kept, not left out, and the
    note says what ``conv1`` had; the caller places it (:func:`first_conv_for`).
    """
    shapes, first_conv, classifier = _reference_state(timm_name)
    raw = read_checkpoint(path)
    stage = tuple(f"{name}." for name in RESNET_FIRST_STAGE)
    trunk_keys = [k for k in shapes if not k.startswith((*stage, classifier))]
    prefix = _network_prefix(list(raw), [f"{first_conv}.weight", trunk_keys[0]])
    state = {k.removeprefix(prefix): v for k, v in raw.items() if k.startswith(prefix)}
    wanted = [k for k in trunk_keys if not k.endswith("num_batches_tracked")]
    mapped = {k: state[k] for k in trunk_keys if k in state and state[k].shape == shapes[k]}
    missing = [k for k in wanted if k not in state]
    wrong = [k for k in wanted if k in state and state[k].shape != shapes[k]]
    unexpected = sorted(k for k in state if k not in shapes and not k.startswith((*stage, classifier)))
    where = f" under prefix {prefix!r}" if prefix else ""
    problems = [
        f"{len(keys)} {what} ({_listed(keys)})"
        for what, keys in (("missing", missing), ("unexpected", unexpected), ("of another shape", wrong))
        if keys
    ]
    n_mapped = sum(k in mapped for k in wanted)
    if n_mapped < MIN_MAPPED * len(wanted):
        raise BenchError(
            f"--weights {path} is not a {timm_name} checkpoint{where}: only {n_mapped} of {len(wanted)} "
            f"trunk tensors map; tensors " + "; ".join(problems) + f"; {_how_to_provide(timm_name)}"
        )
    conv = state.get(f"{first_conv}.weight")
    conv = conv if conv is not None and conv.ndim == 4 else None
    stem = (
        f"{first_conv} ({conv.shape[1]} band{'s' if conv.shape[1] != 1 else ''}) and "
        if conv is not None
        else f"{first_conv} (not in the file: the stem keeps its random init) and "
    )
    heads = sorted({k.split(".")[0] for k in state if k.startswith(classifier)})
    left = [
        stem
        + "bn1: the band-shared stem and fusion replace the ResNet's first stage"
        + ("; the stem starts from conv1's band-mean filters" if conv is not None else "")
    ]
    first_bn: dict[str, torch.Tensor] = {}
    if first_stage:
        first_bn = {k: v for k, v in state.items() if k.startswith("bn1.") and v.shape == shapes.get(k)}
        left = [] if conv is not None else [f"{first_conv} (not in the file): kept at random init"]
    left += [f"{', '.join(heads)}: no classifier in the harness"] if heads else []
    left += [
        f"{p}, kept at random init" if "unexpected" not in p else f"{p}, not in timm's {timm_name}"
        for p in problems
    ]
    note = (
        f"--weights {path.name}{where}: loaded {n_mapped} of {len(wanted)} {timm_name} trunk tensors; "
        f"left out: {'; '.join(left) or 'nothing'}"
    )
    return MappedCheckpoint(mapped, conv, note, first_bn)


def hub_weights(timm_name: str) -> Path | None:
    """The ImageNet weights file of ``timm_name`` in the local caches (Hugging Face hub, then the
    torch hub that timm falls back to), or None. Looks only: never downloads."""
    import timm.models

    cfg = timm.models.get_pretrained_cfg(timm_name)
    if cfg is None:
        return None
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        for filename in ("model.safetensors", "pytorch_model.bin"):
            found = try_to_load_from_cache(cfg.hf_hub_id, filename)
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        cached = Path(torch.hub.get_dir()) / "checkpoints" / Path(str(cfg.url)).name
        if cached.is_file():
            return cached
    return None


def hub_reachable() -> bool:
    """Whether timm could download weights now: not offline, and the hub answers within a few seconds."""
    from huggingface_hub import constants

    return not constants.HF_HUB_OFFLINE and _answers(constants.ENDPOINT)


@functools.cache
def _answers(url: str) -> bool:
    """A HEAD request to ``url`` succeeds within :data:`HUB_TIMEOUT_S` (asked once per process)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=HUB_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False


def timm_trunk_name(backbone: str) -> str | None:
    """The timm model behind ``--backbone NAME`` (None when its trunk is not a timm one); built on
    the meta device, so asking costs no memory."""
    with torch.device("meta"):
        trunk = build_backbone(backbone, 3).trunk
    return trunk.timm_name if isinstance(trunk, TimmDenseTrunk) else None


def weights_status(backbone: str) -> str:
    """One line for ``bench doctor``: where ImageNet weights for ``backbone`` would come from."""
    timm_name = timm_trunk_name(backbone)
    if timm_name is None:
        return "not a timm trunk (imagenet needs resnet18 or resnet50)"
    cached = hub_weights(timm_name)
    if cached is not None:
        return f"timm {timm_name}: hub cache {cached}"
    if hub_reachable():
        return f"timm {timm_name}: none cached; the hub answers, the first imagenet run downloads them"
    return f"timm {timm_name}: none (offline, not in the hub cache); use --weights FILE"


def imagenet_state(trunk: TimmDenseTrunk, weights: Path | None) -> MappedCheckpoint:
    """Weights for ``trunk``'s timm model under timm's key names: from ``weights`` (what maps, see
    :func:`checkpoint_state`) or through timm's pretrained loading (the hub cache)."""
    name = trunk.timm_name
    if weights is not None:
        if not weights.is_file():
            raise BenchError(f"--weights {weights}: no such file; {_how_to_provide(name)}")
        return checkpoint_state(weights, name, first_stage=trunk.first_stage)
    try:  # a standard-stem trunk: timm adapts the RGB conv1 to its in_chans itself
        overrides = {} if trunk.first_stage else {"in_chans": 3}
        state = trunk.create_encoder(pretrained=True, **overrides).state_dict()
    except (OSError, RuntimeError) as exc:
        detail = f"no ImageNet weights for {name} from the Hugging Face hub (offline, or not in the cache)"
        raise BenchError(f"{detail}: {exc}; {_how_to_provide(name)}") from exc
    _, first_conv, _ = _reference_state(name)
    bn = {k: v for k, v in state.items() if k.startswith("bn1.")} if trunk.first_stage else {}
    return MappedCheckpoint(state, state[f"{first_conv}.weight"], "", bn)


#: Band-specific ``conv1`` layouts of this field's checkpoints, by their band count: Sentinel-2 L1C
#: in SSL4EO-S12 / torchgeo order (all 13 bands), Sentinel-1 (VV, VH).
CONV1_BANDS: dict[int, tuple[str, ...]] = {
    13: ("B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"),
    2: ("VV", "VH"),
}


def first_conv_for(
    weight: torch.Tensor, in_chans: int, band_names: Sequence[str] | None
) -> tuple[torch.Tensor, str]:
    """A checkpoint's ``conv1`` (out, k, kh, kw) placed on ``in_chans`` input bands, and one line
    saying how (module docstring): as is, timm's RGB adaptation, or at its bands by name."""
    from timm.models import adapt_input_conv

    k = weight.shape[1]
    if k == in_chans:
        return weight, f"conv1 ({k} bands) loaded as is"
    if k == 3:
        adapted = adapt_input_conv(in_chans, weight)
        return adapted, f"conv1 (RGB) adapted to {in_chans} bands by timm's adapt_input_conv"
    names = CONV1_BANDS.get(k)
    if names is not None and band_names is not None and set(names) <= set(band_names):
        placed = weight.new_zeros(weight.shape[0], in_chans, *weight.shape[2:])
        for i, name in enumerate(names):
            placed[:, list(band_names).index(name)] = weight[:, i]
        rest = [b for b in band_names if b not in names]
        return placed, (
            f"conv1 ({k} bands: {names[0]}..{names[-1]}) at those input bands; "
            f"{', '.join(rest)} start at zero"
        )
    raise BenchError(
        f"--weights: conv1 has {k} input bands; a standard-stem backbone on {in_chans} bands takes "
        f"{in_chans}, 3 (RGB), 13 (S2 B1..B12) or 2 (S1 VV, VH); use a band-shared backbone "
        "(resnet18), which averages conv1 over its bands"
    )


def stem_filters_from_rgb(rgb: torch.Tensor, width: int, kernel: int) -> torch.Tensor:
    """(out, bands, k, k) first-conv filters (RGB or any band count) -> (width, 1, kernel, kernel)
    single-band filters: their band mean, cropped and rescaled (see module doc)."""
    mean = rgb.float().mean(dim=1, keepdim=True)
    k = mean.shape[-1]
    lo = (k - kernel) // 2
    centre = mean[..., lo : lo + kernel, lo : lo + kernel]
    energy = centre.flatten(1).norm(dim=1)
    chosen = energy.argsort(descending=True)[:width]
    if len(chosen) < width:
        raise BenchError(f"ImageNet first conv has {len(chosen)} filters, the stem needs {width}")
    scale = mean[chosen].flatten(1).norm(dim=1) / energy[chosen].clamp(min=1e-12)
    return centre[chosen] * scale.view(-1, 1, 1, 1)


@register_method("imagenet")
class ImageNet(PretrainMethod):
    """ImageNet-supervised weights for the trunk (timm), the stem from their mean RGB filters."""

    description = "timm ImageNet weights in the trunk (hub cache or --weights FILE); stem from mean RGB"
    label = "ImageNet"
    Config = ImageNetConfig
    needs_data = False
    reads_weights = True

    @classmethod
    def weights_origin(cls, backbone: str) -> str | None:
        """:func:`weights_status`: the hub cache, the hub, or ``--weights FILE``."""
        return weights_status(backbone)

    @classmethod
    def unavailable_reason(cls, backbone: str, weights: Path | None) -> str | None:
        """No timm trunk, a ``--weights`` file that is not there, or no weights cached and no hub;
        a ``bench export`` file runs on the backbone it was exported for, and no other."""
        if weights is not None and is_export(Path(weights)):
            exported = read_card(Path(weights))["backbone"]["name"]
            return (
                None
                if exported == backbone
                else f"--weights {weights} is a {exported} export, not {backbone}"
            )
        timm_name = timm_trunk_name(backbone)
        if timm_name is None:
            return f"needs a timm trunk (--backbone resnet18|resnet50), not {backbone!r}"
        if weights is not None:
            return None if Path(weights).is_file() else f"--weights {weights}: no such file"
        if hub_weights(timm_name) is None and not hub_reachable():
            return (
                f"no ImageNet weights for {timm_name}: no --weights FILE, none in the hub cache, hub offline"
            )
        return None

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Load the weights into ``backbone.trunk.encoder`` (and the stem's first conv); a
        ``bench export`` file into the whole backbone."""
        if ctx.weights is not None and is_export(ctx.weights):
            card = load_export_into(backbone, ctx.weights)
            warnings.warn(
                f"--weights {ctx.weights.name}: a bench export of {card['method']} weights (key "
                f"{card['weights_key']}); loaded the whole {backbone.spec.name} backbone, every tensor",
                UserWarning,
                stacklevel=2,
            )
            return
        trunk = backbone.trunk
        if not isinstance(trunk, TimmDenseTrunk):
            raise BenchError(
                f"imagenet needs a timm trunk: --backbone resnet18|resnet50 (got {backbone.spec.name!r})"
            )
        loaded = imagenet_state(trunk, ctx.weights)
        own = trunk.encoder.state_dict()
        tensors, note = dict(loaded.trunk), loaded.note
        if trunk.first_stage and loaded.first_conv is not None:  # standard stem: conv1 and bn1 too
            placed, how = first_conv_for(loaded.first_conv, backbone.spec.in_chans, ctx.band_names)
            tensors.update({**loaded.first_bn, "conv1.weight": placed})
            note = f"{note}; {how}, bn1 loaded" if note else ""
        # what the file lacks (named in the note) keeps the seeded random initialisation
        trunk.encoder.load_state_dict({k: tensors.get(k, v) for k, v in own.items()})
        if note:
            warnings.warn(note, UserWarning, stacklevel=2)
        if not trunk.first_stage and self.config.stem_from_rgb and loaded.first_conv is not None:
            conv = backbone.stem.first_conv
            with torch.no_grad():
                conv.weight.copy_(
                    stem_filters_from_rgb(loaded.first_conv, conv.out_channels, conv.kernel_size[0])
                )
