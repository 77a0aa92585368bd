"""What every backbone family shares: the registry, the band-shared stem and :class:`SegBackbone`.

Every backbone is a :class:`SegBackbone`: a band-shared single-channel stem (the extractor UniFeat
trains) applied to each band separately at stride 2, a 1x1 fusion across bands at that half
resolution, and a trunk that goes further down and comes back to a coarse feature map (1/2 for
``tiny``, 1/4 for the timm ResNets). The features are upsampled bilinearly to the input resolution
at the very end, so ``forward`` still gives per-pixel features (B, D, H, W).

Why stride 2 in the stem: the stem runs once per band, so at full resolution it costs ``C`` times
a single-image convolution and holds ``C x width`` full-resolution maps for the backward pass; on
15 bands at 256 px that was 21.5 GiB at batch 64 for resnet18 (issue 12). At stride 2 the stem and
the fusion take the place of the trunk's own first stage (a ResNet's 7x7 stride-2 convolution),
which is what a standard segmentation model pays there. Sharing the stem keeps any channel count
valid input and gives UniFeat and CoRe the same module to train; UniFeat's pixel pairs are then the
stem's pixels (half resolution), the same pixels in both branches.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.grad import conv2d_input, conv2d_weight

from bench.core.errors import BenchError
from bench.core.names import check_name, clash

#: Architecture revision, part of every :class:`BackboneSpec` and so of the pretrained-weights cache
#: key: bump it whenever the layers change in a way the other spec fields do not show.
#: 2: stride-2 stem, fusion at half resolution, features upsampled at the end (issue 12).
ARCH_VERSION = 2

_BACKBONES: dict[str, tuple[Callable[..., SegBackbone], str]] = {}


class BackboneRegistrationError(BenchError, ValueError):
    """A backbone (usually a plugin's) that cannot be registered; one line naming it and why."""


def register_backbone(
    name: str, description: str
) -> Callable[[Callable[..., SegBackbone]], Callable[..., SegBackbone]]:
    """Register a backbone factory ``(in_chans) -> SegBackbone`` under ``name``."""

    def wrap(fn: Callable[..., SegBackbone]) -> Callable[..., SegBackbone]:
        where = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)!s}"
        check_name(name, f"backbone ({where})")
        same = clash(name, {n: n for n in _BACKBONES})
        if same is not None:
            raise BackboneRegistrationError(
                f"backbone {name!r} ({where}) is already registered (as {same!r}); names are unique "
                "ignoring case: choose another"
            )
        if not callable(fn):
            raise BackboneRegistrationError(
                f"backbone {name!r} ({where}) is not a factory (in_chans) -> SegBackbone"
            )
        _BACKBONES[name] = (fn, description)
        return fn

    return wrap


def list_backbones() -> dict[str, str]:
    """Registered backbone names with their one-line descriptions (plugins' included)."""
    _load_plugins()
    return {name: desc for name, (_, desc) in sorted(_BACKBONES.items())}


def backbone_module(name: str) -> str:
    """The module that registered backbone ``name`` (its code is part of a result's identity)."""
    _load_plugins()
    return _BACKBONES[name][0].__module__ if name in _BACKBONES else __name__


def _load_plugins() -> None:
    """Import the ``bench.backbones`` plugins (bench.core.plugins); an entry point naming a factory
    without ``@register_backbone`` is registered under its name, described by its docstring."""
    from types import ModuleType

    from bench.core.plugins import load_plugins

    def adopt(name: str, obj: Any) -> None:
        known = [fn for fn, _ in _BACKBONES.values()]
        if callable(obj) and not isinstance(obj, ModuleType) and all(fn is not obj for fn in known):
            _BACKBONES.setdefault(name, (obj, (obj.__doc__ or name).strip().splitlines()[0]))

    load_plugins("backbones", adopt=adopt)


def build_backbone(name: str, in_chans: int = 15) -> SegBackbone:
    """Build the backbone ``name`` for ``in_chans`` input bands, randomly initialised."""
    _load_plugins()
    if name not in _BACKBONES:
        raise KeyError(f"unknown backbone {name!r}; registered: {', '.join(sorted(_BACKBONES))}")
    return _BACKBONES[name][0](in_chans)


def has_band_stem(name: str) -> bool:
    """Whether backbone ``name`` has the band-shared stem; built on the meta device (no memory)."""
    with torch.device("meta"):
        return build_backbone(name, 3).band_stem


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, stride: int = 1) -> nn.Sequential:
    """Convolution (no bias: the BatchNorm has one), BatchNorm, ReLU."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


def upsample(x: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """Bilinear resize to ``size`` (a no-op when already there).

    Bilinear weights sum to one, so a 1x1 head commutes with it: ``head(upsample(f))`` equals
    ``upsample(head(f))``, and a classifier may run at the coarse resolution and upsample its logits.
    """
    if x.shape[-2:] == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


class BandSharedStem(nn.Module):
    """Single-channel extractor: the same convolutions applied to every band on its own.

    The first convolution has stride ``stride``; the second refines at that resolution.
    """

    def __init__(self, width: int, stride: int = 2) -> None:
        super().__init__()
        self.width = width
        self.stride = stride
        self.layers = nn.Sequential(conv_bn_relu(1, width, stride=stride), conv_bn_relu(width, width))

    @property
    def first_conv(self) -> nn.Conv2d:
        """The convolution that sees raw band values (ImageNet initialises it from RGB filters)."""
        first_block = self.layers[0]
        assert isinstance(first_block, nn.Sequential) and isinstance(first_block[0], nn.Conv2d)
        return first_block[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 1, H, W) -> (N, width, ceil(H / stride), ceil(W / stride))."""
        return self.layers(x)


class _BNReLUConv(torch.autograd.Function):
    """``conv(relu(bn(pre(x))))`` that holds only ``x`` for the backward pass.

    Autograd would keep the BatchNorm's input and the ReLU's output (the convolution's input):
    two maps of ``C x stem_width`` channels at half resolution per block, where a standard first
    stage holds two maps of 64 channels. Here the backward recomputes ``relu(bn(pre(x)))`` from
    ``x``: BatchNorm and ReLU are elementwise, and ``pre`` (the stem's first convolution, one input
    channel: 1/16 of the second one's FLOPs) is cheap; the batch statistics are the same ones and
    the running statistics are not touched again. The convolution's gradients come from
    ``conv2d_input``/``conv2d_weight`` without re-running it. The forward calls the very modules
    (running statistics updated once, as before) and the backward the same kernels, so outputs and
    gradients are those of the plain layers. ``fold`` (B, C) reshapes the (B*C, w, h, w') band maps
    into (B, C*w, h, w') before the convolution: the fusion's input (all bands' maps side by side)
    is not held either.
    """

    @staticmethod
    @torch.amp.custom_fwd(device_type="cuda")
    def forward(  # type: ignore[override]
        ctx: Any,
        x: torch.Tensor,
        pre_weight: torch.Tensor | None,
        bn_weight: torch.Tensor,
        bn_bias: torch.Tensor,
        conv_weight: torch.Tensor,
        layers: tuple[nn.Conv2d | None, nn.BatchNorm2d, nn.Conv2d],
        fold: tuple[int, int] | None,
    ) -> torch.Tensor:
        pre, bn, conv = layers
        a = F.relu(bn(x if pre is None else pre(x)))
        if fold is not None:
            a = a.reshape(fold[0], fold[1] * a.shape[1], *a.shape[2:])
        ctx.save_for_backward(x, pre_weight, bn_weight, bn_bias, conv_weight)
        ctx.layers, ctx.fold = layers, fold
        ctx.batch_stats = bn.training or not bn.track_running_stats
        if not ctx.batch_stats:  # eval: the running statistics as they were at this forward
            ctx.stats = (bn.running_mean.clone(), bn.running_var.clone())  # type: ignore[union-attr]
        return conv(a)

    @staticmethod
    @torch.amp.custom_bwd(device_type="cuda")
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        x, pre_weight, bn_weight, bn_bias, conv_weight = ctx.saved_tensors
        pre, bn, conv = ctx.layers
        inputs = (x, pre_weight, bn_weight, bn_bias)
        wanted = [i for i, t in enumerate(inputs) if t is not None and ctx.needs_input_grad[i]]
        with torch.enable_grad():
            leaves: list[Any] = [
                None if t is None else t.detach().requires_grad_(i in wanted) for i, t in enumerate(inputs)
            ]
            y = leaves[0]
            if pre is not None:
                y = F.conv2d(y, leaves[1], None, pre.stride, pre.padding, pre.dilation, pre.groups)
            mean, var = (None, None) if ctx.batch_stats else ctx.stats
            a = F.relu(F.batch_norm(y, mean, var, leaves[2], leaves[3], ctx.batch_stats, 0.0, bn.eps))
            if ctx.fold is not None:
                a = a.reshape(ctx.fold[0], ctx.fold[1] * a.shape[1], *a.shape[2:])
        grad = grad.to(a.dtype)
        weight = conv_weight.to(a.dtype)  # autocast ran the convolution in the activations' dtype
        args = (conv.stride, conv.padding, conv.dilation, conv.groups)
        grad_a = conv2d_input(a.shape, weight, grad, *args)
        grad_w = conv2d_weight(a.detach(), conv_weight.shape, grad, *args)
        found = torch.autograd.grad(a, [leaves[i] for i in wanted], grad_a) if wanted else ()
        grads: list[torch.Tensor | None] = [None] * 4
        for i, g in zip(wanted, found, strict=True):
            grads[i] = g
        return (*grads, grad_w.to(conv_weight.dtype), None, None)


@dataclass
class BackboneSpec:
    """What identifies a backbone in cache keys and run records."""

    name: str
    in_chans: int
    stem_width: int
    fused_width: int
    out_dim: int
    stem_stride: int = 2
    version: int = ARCH_VERSION
    extra: dict[str, Any] = field(default_factory=dict)


class SegBackbone(nn.Module):
    """Stem (per band, stride 2) -> fusion (across bands) -> trunk -> upsample: (B, out_dim, H, W).

    ``trunk`` maps the fused (B, fused_width, H/2, W/2) map to (B, out_dim, h, w) at any coarser
    resolution; :meth:`features` returns that, :meth:`forward` its upsampling to the input size.

    ``lean_stem`` (default True): :meth:`features` runs the stem and the fusion through
    :class:`_BNReLUConv`, which keeps one map of the stem for the backward pass instead of four
    (the input bands and the second convolution's output); the same layers, weights, outputs and
    gradients as :meth:`band_features` followed by
    :meth:`features_from_bands` (False), which every other caller still uses. Measured with
    ``bench perf --stage backbone`` (CPU, fp32; the activations the forward pass holds for the
    backward pass, 2 images, are exact counts; resnet18, against the standard model's):

    ==========  ======================  ======================
    crop        plain stem (before)     lean stem (after)
    ==========  ======================  ======================
    128 px      48.4 MiB, 2.63x         25.9 MiB, 1.41x
    256 px      193.3 MiB, 2.64x        103.3 MiB, 1.41x
    ==========  ======================  ======================

    (tiny: 1.52x -> 0.90x at both sizes.) Before, the stage reported 2.25x at 128 px: it counted
    the whole batch's input storage (8 images, not 2) as held by both models, which flattered the
    ratio; it now counts 2 images and only what the forward pass saves (a backward-pass recompute
    is not held), so both columns are measured alike. FLOPs unchanged (1.10x: the recomputed first
    convolution has one input channel). Throughput, lean / plain, same weights, alternating
    rounds in one process on 2 loaded CPU cores (one thread): resnet18 0.86-0.96x at 128 px
    batch 8 (two runs), 0.83x at 256 px batch 4; tiny 1.02x at 128 px: the recompute is
    elementwise work, which a CPU pays for at full price. On a GPU the ``backbone`` stage's
    "lean / plain stem" rows give both figures (``scripts/gpu_acceptance.sh``);
    ``lean_stem = False`` restores the plain path without touching weights or results.
    """

    #: Whether :meth:`features` takes the memory-lean path (see the class docstring).
    lean_stem: bool = True
    #: Whether the backbone has the band-shared stem (``stem``, :meth:`band_features`): False for
    #: the standard-stem variants (``bench.models.timm_resnet.StandardStemBackbone``).
    band_stem: bool = True

    def __init__(self, spec: BackboneSpec, trunk: nn.Module) -> None:
        super().__init__()
        self.spec = spec
        self.stem = BandSharedStem(spec.stem_width, spec.stem_stride)
        self.fusion = conv_bn_relu(spec.in_chans * spec.stem_width, spec.fused_width, kernel=1)
        self.trunk = trunk

    @property
    def out_dim(self) -> int:
        return self.spec.out_dim

    def band_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem features of every band: (B, C, H, W) -> (B, C, stem_width, H/2, W/2)."""
        b, c, h, w = x.shape
        feats = self.stem(x.reshape(b * c, 1, h, w))
        return feats.reshape(b, c, *feats.shape[1:])

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> the trunk's coarse features (B, out_dim, h, w), before upsampling."""
        if x.shape[1] != self.spec.in_chans:
            raise ValueError(
                f"backbone {self.spec.name!r} was built for {self.spec.in_chans} bands, "
                f"got input with {x.shape[1]}"
            )
        blocks = self._lean_blocks() if self.lean_stem else None
        if blocks is None:
            return self.features_from_bands(self.band_features(x))
        (conv1, bn1), (conv2, bn2), (fuse, fuse_bn, fuse_act) = blocks
        b, c, h, w = x.shape
        bands = x.reshape(b * c, 1, h, w)
        y = _BNReLUConv.apply(
            bands, conv1.weight, bn1.weight, bn1.bias, conv2.weight, (conv1, bn1, conv2), None
        )
        y = _BNReLUConv.apply(y, None, bn2.weight, bn2.bias, fuse.weight, (None, bn2, fuse), (b, c))
        return self.trunk(fuse_act(fuse_bn(y)))

    def _lean_blocks(self) -> tuple[tuple[Any, ...], ...] | None:
        """The stem's and the fusion's (conv, bn[, relu]) when they are the plain layers the lean
        path assumes (a subclass or plugin with other layers takes the plain path)."""
        blocks = [*self.stem.layers, self.fusion]
        plain = all(
            isinstance(blk, nn.Sequential)
            and len(blk) == 3
            and isinstance(blk[0], nn.Conv2d)
            and blk[0].bias is None
            and isinstance(blk[1], nn.BatchNorm2d)
            and isinstance(blk[2], nn.ReLU)
            for blk in blocks
        )
        if not plain or len(blocks) != 3:
            return None
        (c1, b1, _), (c2, b2, _), (cf, bf, af) = blocks
        return (c1, b1), (c2, b2), (cf, bf, af)

    def features_from_bands(self, band_feats: torch.Tensor) -> torch.Tensor:
        """Fusion + trunk on band features (B, C, stem_width, h, w) -> (B, out_dim, h', w').

        What :meth:`features` does after the stem, for callers that change the stem's output first
        (CoRe puts a learned mask embedding at missing band-pixels, ``methods.core``).
        """
        return self.trunk(self.fusion(band_feats.flatten(1, 2)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> per-pixel features (B, out_dim, H, W)."""
        return upsample(self.features(x), x.shape[-2:])
