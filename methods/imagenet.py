"""``imagenet``: timm ImageNet weights in the trunk, through timm's own pretrained loading.

The weights come from the Hugging Face hub cache (``timm.create_model(..., pretrained=True)``) or,
with ``--weights FILE``, from a local timm / torchvision checkpoint of the same architecture
(``pretrained_cfg_overlay=dict(file=...)``, so timm still does the loading and key cleaning).
Nothing is trained (``needs_data = False``).

How the pieces are initialised:

- Trunk encoder: the checkpoint, except the first conv, whose RGB filters are adapted to the
  trunk's ``fused_width`` input channels with timm's own ``adapt_input_conv`` (RGB repeated
  cyclically, rescaled by 3 / channels), exactly what timm does when ``in_chans`` != 3.
- Band-shared stem, first conv (``width`` 3x3 filters on one band): from the ImageNet first
  conv (64 filters of 7x7 on RGB), averaged over RGB (a band is treated as a grey image); the
  central 3x3 of each, and of those the ``width`` filters with the most energy in that 3x3
  (colour-opponent filters average to about zero over RGB and would give dead filters).
  Each is rescaled to the L2 norm of its full 7x7 mean filter, so the crop keeps the filter's
  response scale; the BatchNorm that follows makes the exact scale matter little. Off with
  ``stem_from_rgb=False``.
- Fusion, decoder and the rest of the stem: the harness's seeded random initialisation.
  Inputs are [0, 1] reflectance / scaled dB, not ImageNet-standardised: the fusion layer and
  the BatchNorms adapt during evaluation (finetune) or the features are used as they are (linear).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from bench.core.errors import BenchError
from bench.models.backbones import SegBackbone, TimmDenseTrunk
from methods.registry import PretrainContext, PretrainMethod, register_method


@dataclass
class ImageNetConfig:
    """``stem_from_rgb``: initialise the stem's first conv from the mean ImageNet RGB filters."""

    stem_from_rgb: bool = True


def _how_to_provide(timm_name: str) -> str:
    return (
        f"provide them with --weights FILE (a timm or torchvision {timm_name} ImageNet checkpoint, "
        f"e.g. pytorch_model.bin / model.safetensors from huggingface.co/timm/{timm_name}.a1_in1k or "
        f"torchvision's {timm_name}-*.pth), or populate the Hugging Face hub cache ($HF_HOME) on a machine "
        f"with internet: python -c \"import timm; timm.create_model('{timm_name}', pretrained=True)\""
    )


def load_rgb_encoder(trunk: TimmDenseTrunk, weights: str | None) -> Any:
    """The trunk's encoder with 3 input channels and ImageNet weights, or a BenchError saying why not.

    Typed ``Any``: timm's feature extractors carry ``pretrained_cfg`` beside the ``nn.Module`` API.
    """
    import timm.models

    name = trunk.timm_name
    overrides: dict[str, object] = {"in_chans": 3}
    if weights is not None:
        if not Path(weights).is_file():
            raise BenchError(f"--weights {weights}: no such file; {_how_to_provide(name)}")
        overrides["pretrained_cfg_overlay"] = {"file": weights}
        try:  # timm drops keys it cannot place without an error; check the file covers the encoder
            keys = set(timm.models.load_state_dict(weights))
        except (OSError, RuntimeError, ValueError) as exc:
            raise BenchError(f"cannot read ImageNet weights {weights}: {exc}") from exc
        needed = {k for k in trunk.encoder.state_dict() if not k.endswith("num_batches_tracked")}
        missing = sorted(needed - keys)
        if missing:
            raise BenchError(
                f"{weights} is not a {name} checkpoint: it lacks {len(missing)} of the encoder's tensors "
                f"(e.g. {', '.join(missing[:3])}); {_how_to_provide(name)}"
            )
    try:
        return trunk.create_encoder(pretrained=True, **overrides)
    except (OSError, RuntimeError) as exc:
        source = weights or "the Hugging Face hub (offline, or not in the cache)"
        detail = f"no ImageNet weights for {name} from {source}: {exc}"
        raise BenchError(f"{detail}; {_how_to_provide(name)}") from exc


def stem_filters_from_rgb(rgb: torch.Tensor, width: int, kernel: int) -> torch.Tensor:
    """(out, 3, k, k) RGB filters -> (width, 1, kernel, kernel) single-band filters (see module doc)."""
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

    def pretrain(self, backbone: SegBackbone, images: np.ndarray, ctx: PretrainContext) -> None:
        """Load the weights into ``backbone.trunk.encoder`` (and the stem's first conv)."""
        trunk = backbone.trunk
        if not isinstance(trunk, TimmDenseTrunk):
            raise BenchError(
                f"imagenet needs a timm trunk: --backbone resnet18|resnet50 (got {backbone.spec.name!r})"
            )
        from timm.models import adapt_input_conv

        encoder = load_rgb_encoder(trunk, None if ctx.weights is None else str(ctx.weights))
        first_conv = f"{encoder.pretrained_cfg['first_conv']}.weight"
        state = encoder.state_dict()
        rgb = state[first_conv]
        state[first_conv] = adapt_input_conv(trunk.encoder.state_dict()[first_conv].shape[1], rgb.clone())
        trunk.encoder.load_state_dict(state)
        if self.config.stem_from_rgb:
            conv = backbone.stem.first_conv
            with torch.no_grad():
                conv.weight.copy_(stem_filters_from_rgb(rgb, conv.out_channels, conv.kernel_size[0]))
