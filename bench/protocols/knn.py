"""The kNN protocol: weighted k-nearest-neighbour classification of frozen per-pixel features.

The self-supervised field's standard monitor of a frozen representation, with nothing trained on
top of it: the weighted kNN classifier of Wu et al. 2018 ("Unsupervised Feature Learning via
Non-Parametric Instance Discrimination", CVPR, section 3.4), as lightly's ``knn_predict``
(``lightly.utils.benchmarking``) and solo-learn's ``WeightedKNNClassifier`` report it:

    features are L2-normalised; the k training features most cosine-similar to a query vote, each
    with weight ``exp(s_i / T)`` (``s_i`` its cosine similarity, ``T`` the temperature), and the
    class with the largest summed weight wins.

Defaults: k = 20 and T = 0.07 (Wu et al.; solo-learn's defaults; lightly's monitor uses k = 200,
T = 0.1 on ImageNet-size banks). The feature bank is the budget's training pixels only, their
frozen features extracted once per checkpoint and cached like the linear probe's
(:mod:`bench.protocols.features`); k larger than the bank uses the whole bank. No seed enters: the
same features give the same predictions.

The test split is streamed batch by batch (:func:`bench.protocols.validation.confusion_on_split`)
and each batch's queries in chunks of :data:`QUERY_CHUNK` pixels, so memory holds one
(chunk, bank) similarity block at a time. Queries are the backbone's coarse feature map
(:meth:`SegBackbone.features`); their vote shares (per-query class weights summing to one) are
upsampled bilinearly to the input and the argmax taken there, as the linear protocol upsamples its
logits: a 4x-coarse trunk costs 16x fewer similarity rows than querying every upsampled pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from bench.core.device import autocast, to_device
from bench.core.settings import SettingError
from bench.models.backbones import SegBackbone, upsample
from bench.protocols.features import budget_features
from bench.protocols.registry import EvalProtocol, FitJob, register_protocol
from bench.protocols.validation import Predict

#: Query pixels per similarity block: (QUERY_CHUNK, bank size) float32 scores at a time.
QUERY_CHUNK = 4096


@dataclass(frozen=True)
class KnnConfig:
    """kNN settings (hashed into result keys): neighbours ``k`` and the vote temperature."""

    k: int = 20
    temperature: float = 0.07

    def __post_init__(self) -> None:
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise SettingError(f"knn.k must be an integer >= 1 (neighbours that vote), got {self.k!r}")
        if not (isinstance(self.temperature, int | float) and math.isfinite(self.temperature)) or (
            self.temperature <= 0
        ):
            raise SettingError(
                f"knn.temperature must be a finite number > 0 (votes weigh exp(similarity / T)), "
                f"got {self.temperature!r}"
            )


@dataclass
class FeatureBank:
    """L2-normalised training features ``(n, D)`` and their labels ``(n,)``, on one device."""

    feats: torch.Tensor
    labels: torch.Tensor
    num_classes: int

    @classmethod
    def of(cls, feats: torch.Tensor, labels: torch.Tensor, num_classes: int) -> FeatureBank:
        return cls(F.normalize(feats.float(), dim=1), labels.long(), num_classes)


@torch.no_grad()
def knn_shares(
    query: torch.Tensor, bank: FeatureBank, cfg: KnnConfig, chunk: int = QUERY_CHUNK
) -> torch.Tensor:
    """(N, D) query features -> (N, K) vote shares (each row sums to one), ``chunk`` queries at a time.

    Wu et al. 2018's weighted vote (module doc). The weights are ``exp((s_i - s_max) / T)``, which
    differ from ``exp(s_i / T)`` by one factor per query, so the shares and the winning class are
    the same and no exponential overflows.
    """
    k = min(cfg.k, bank.feats.shape[0])
    out = torch.empty(query.shape[0], bank.num_classes, dtype=torch.float32, device=query.device)
    for start in range(0, query.shape[0], chunk):
        q = F.normalize(query[start : start + chunk].float(), dim=1)
        sim, idx = (q @ bank.feats.T).topk(k, dim=1)
        weight = ((sim - sim[:, :1]) / cfg.temperature).exp()
        votes = torch.zeros(q.shape[0], bank.num_classes, dtype=torch.float32, device=q.device)
        votes.scatter_add_(1, bank.labels[idx], weight)
        out[start : start + chunk] = votes / votes.sum(1, keepdim=True)
    return out


def knn_predictor(backbone: SegBackbone, bank: FeatureBank, cfg: KnnConfig, device: torch.device) -> Predict:
    """``x -> class map``: kNN shares of the coarse features, upsampled to the input, argmax."""
    to_device(backbone, device).eval()

    @torch.no_grad()
    def predict(x: torch.Tensor) -> torch.Tensor:
        with autocast(device):
            coarse = backbone.features(x)
        b, d, h, w = coarse.shape
        shares = knn_shares(coarse.movedim(1, -1).reshape(-1, d), bank, cfg)
        return upsample(shares.reshape(b, h, w, -1).movedim(-1, 1), x.shape[-2:]).argmax(1)

    return predict


@register_protocol("knn")
class Knn(EvalProtocol):
    """Frozen backbone, weighted kNN (Wu et al. 2018) on cached budget-pixel features."""

    description = "frozen backbone + weighted kNN (k=20, cosine, T=0.07) on budget pixels; nothing trained"
    Config = KnnConfig

    def fit(self, job: FitJob) -> Predict:
        """The bank: cached features of the budget's training pixels (only those), normalised."""
        assert job.backbone is not None, "the knn protocol needs a backbone"
        budget = job.budget
        feats = budget_features(job.backbone, job.ds, budget, job.device, job.progress)
        bank = FeatureBank.of(
            torch.from_numpy(feats).to(job.device),
            torch.from_numpy(budget.label).to(job.device),
            job.ds.classes.num_classes,
        )
        return knn_predictor(job.backbone, bank, job.cfg, job.device)
