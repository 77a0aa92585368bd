# ruff: noqa: E402
# (an experiment script: the environment is set before imports, v1 patches before the harness loads)
"""Issue 8 evidence: unifeat, core, sscl before (v1 pairing, v1 CoRe) and after the fix, same harness.

    .venv/bin/python scripts/sscl_before_after.py after
    .venv/bin/python scripts/sscl_before_after.py before


Per method: final loss, effective rank (UniFeat), CoRe reconstruction skill (held-out pool
patches), and validation AA (linear probe at the budget's validation pixels, 800 per class, 3
seeds; test never read). "before" re-creates the v1 algorithms by patching the v2 code:
UniFeat compares image k with image k + B/2; CoRe: unweighted MSE on [0, 1] targets, 0 fill,
linear 1x1 head, stem at the full learning rate.
"""

import json
import os
import sys
import tempfile
import time
import warnings

warnings.simplefilter("ignore")
mode = sys.argv[1]
home = tempfile.mkdtemp(prefix=f"i8{mode}")
os.environ["BENCH_HOME"] = home
os.environ["MLFLOW_TRACKING_URI"] = f"sqlite:///{home}/m.db"
import torch
from torch import nn

import methods.core as core
import methods.unifeat as unifeat

if mode == "before":

    def v1_views(batch, pairs, crop, gen, augment):
        b = batch.shape[0]
        x = batch[torch.arange(b, device=batch.device)[:, None], pairs]
        x = unifeat.random_crop(x, crop, gen)
        if augment:
            x = unifeat.random_dihedral(x, gen)
        h, w = x.shape[-2:]
        return x.reshape(2 * b, 1, h, w).view(2, b, 1, h, w)

    unifeat.band_pair_views = v1_views
    core.RestoreHead = lambda in_dim, hidden, bands: nn.Conv2d(in_dim, bands, 1)

    class V1Stats(core.BandStatistics):
        pass

    real_standardise = core.BandStatistics.standardise
    # v1 loss: targets are the clean [0, 1] values; the skill still compares in standardised units
    orig_skill = core.reconstruction_skill

    def loss_identity(self, x):
        return x

    def skill_v1(backbone, head, holdout, stats, cfg, device, chunk=8):
        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.h = head

            def forward(self, f):
                return real_standardise(stats, self.h(f))

        core.BandStatistics.standardise = real_standardise
        try:
            return orig_skill(backbone, Wrapped(), holdout, stats, cfg, device, chunk)
        finally:
            core.BandStatistics.standardise = loss_identity

    core.BandStatistics.standardise = loss_identity
    core.reconstruction_skill = skill_v1
    overrides = {
        "core": {"missing_value": 0.0},
        "sscl": {"core.missing_value": 0.0, "core.stem_lr_factor": 1.0},
        "unifeat": {},
    }
else:
    overrides = {"core": {}, "sscl": {}, "unifeat": {}}

import mlflow

from bench.harness import tracking
from bench.harness.runner import CellSpec
from bench.harness.tune import validation_aa
from datasets import load_dataset

cpu = torch.device("cpu")
ds = load_dataset(None, progress=False)
out = {}
for method in ("unifeat", "core", "sscl"):
    t = time.time()
    spec = CellSpec(method, 800, method_overrides=overrides[method])
    tracking.setup_tracking()
    with mlflow.start_run(run_name=f"{mode} {method}") as run:
        aa = validation_aa(spec, range(3), ds, cpu)
    client = mlflow.tracking.MlflowClient()
    runs = client.search_runs(
        [r.experiment_id for r in client.search_experiments()], "tags.`bench.kind` = 'pretrain'"
    )
    metrics = {}
    for r in runs:
        metrics.update(
            {k: round(v, 4) for k, v in r.data.metrics.items() if k.startswith(f"pretrain.{method}")}
        )
    keep = {
        k.replace("pretrain.", ""): v
        for k, v in metrics.items()
        if any(s in k for s in ("loss", "effective_rank", "recon_skill", "collapse_std"))
    }
    out[method] = {"val_AA": round(100 * aa, 1), **keep, "seconds": round(time.time() - t)}
    print(mode, method, json.dumps(out[method]), flush=True)
