"""Issue 20: pretraining schedules, the BN-statistics decision and per-seed health, on VALIDATION pixels.

Every figure here comes from the budget's validation pixels of the labelled pool (the linear
probe, ``split="val"``; never the test split) and from the health figures the methods log on
held-out pool patches.

Compute rule, one for every self-supervised method: the same number of images seen,
``steps x batch_size = IMAGES`` (SimSiam's two views of an image count as one image; a crop of
it counts as the image). ``sscl`` splits IMAGES between its stages by ``SSCL_UNIFEAT_SHARE``
(UniFeat) and the rest (CoRe): UniFeat trains the stem alone on two single bands, a small
fraction of CoRe's work per image, and its loss plateaus early, so it gets the smaller share.

``schedules`` (the default mode): for each method, candidates (lr, batch_size) at IMAGES
(``steps = IMAGES / batch_size``), pretraining seed 0, scored by the linear probe's validation
AA averaged over budget seeds; a candidate failing its health gate is reported and excluded.
Each candidate is also scored with the backbone's BN running statistics recomputed on clean
pool patches (``methods.training.recompute_bn_statistics``), which is the BN decision's data.

``seeds``: the defaults, pretraining seeds 0..N-1, per seed the health figures (UniFeat rank,
CoRe skill overall/optical/SAR, restored std and its ratio to the target's) and validation AA.

    nice -n 5 .venv/bin/python scripts/choose_pretrain_schedules.py schedules
    nice -n 5 .venv/bin/python scripts/choose_pretrain_schedules.py seeds --methods sscl,core --seeds 5

Results are printed one line per run; the chosen values are written into the config docstrings
(``methods/simsiam.py``, ``unifeat.py``, ``core.py``, ``sscl.py``) by hand.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

warnings.simplefilter("ignore")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
home = tempfile.mkdtemp(prefix="pretrain-schedules-")
os.environ.setdefault("BENCH_HOME", home)
os.environ.setdefault("MLFLOW_TRACKING_URI", f"sqlite:///{home}/mlflow.db")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench.core.device import use_thread_share  # noqa: E402
from bench.harness import runner, tracking  # noqa: E402
from bench.harness.pretraining import UnhealthyPretraining, load_or_pretrain, pretraining_images  # noqa: E402
from bench.harness.runner import CellSpec  # noqa: E402
from bench.models.backbones import SegBackbone  # noqa: E402
from bench.protocols.metrics import Scores  # noqa: E402
from bench.protocols.registry import get_protocol  # noqa: E402
from datasets import load_dataset  # noqa: E402
from methods.training import PRETRAIN_IMAGES, recompute_bn_statistics  # noqa: E402

#: Images seen by every trained method's pretraining (steps x batch_size) under the cpu preset:
#: the one number of the compute rule, ``methods.training.PRETRAIN_IMAGES``.
IMAGES = PRETRAIN_IMAGES["cpu"]
#: ``sscl``: UniFeat's share of IMAGES; CoRe gets the rest.
SSCL_UNIFEAT_SHARE = 1 / 3
#: Candidates (lr, batch_size), small: two shared CPU cores. The previous default (1e-3, 16), a
#: higher learning rate, and a larger batch at the same images (half the steps).
CANDIDATES = ((1e-3, 16), (3e-3, 16), (1e-3, 32))
SAMPLES = 200  # labelled pixels per class of the probe's budget
CPU = torch.device("cpu")


def schedule(method: str, lr: float, batch: int, images: int) -> dict[str, object]:
    """The ``--set`` overrides of one candidate under the compute rule."""
    if method == "sscl":
        uni = round(images * SSCL_UNIFEAT_SHARE / batch)
        core = round(images / batch) - uni
        return {
            **{f"unifeat.{k}": v for k, v in (("steps", uni), ("batch_size", batch), ("lr", lr))},
            **{f"core.{k}": v for k, v in (("steps", core), ("batch_size", batch), ("lr", lr))},
        }
    return {"steps": round(images / batch), "batch_size": batch, "lr": lr}


def figures(key: str) -> dict[str, float]:
    """The last logged health figures of the pretraining run with this weights key."""
    client, exp_id = tracking.setup_tracking()
    runs = client.search_runs([exp_id], f"tags.`bench.pretrain_key` = '{key}'")
    if not runs:
        return {}
    m = runs[0].data.metrics
    wanted = ("effective_rank", "collapse_std", "recon_skill", "restored_std", "target_std")
    return {k.removeprefix("pretrain."): v for k, v in m.items() if any(w in k for w in wanted)}


def validation_aa(backbone: SegBackbone, spec: CellSpec, ds: object, budget_seeds: range) -> float:
    protocol = get_protocol("linear")
    cfg = spec.protocol_config()
    scores = []
    for seed in budget_seeds:
        budget = runner.budget_for(spec, seed, ds)
        cm = protocol.evaluate(backbone, ds, budget, cfg, seed=seed, device=CPU, progress=False, split="val")
        scores.append(Scores.from_confusion(cm).aa)
    return float(np.mean(scores))


def evaluate(method: str, overrides: dict[str, object], seed: int, ds: object, budget_seeds: range) -> str:
    spec = CellSpec(method, SAMPLES, method_overrides=overrides, pretrain_seed=seed)
    start = time.perf_counter()
    try:
        backbone, record = load_or_pretrain(spec.pretrain_spec(), ds, CPU, progress=False)
        health = "passed"
    except UnhealthyPretraining as err:
        allowed = CellSpec(
            method, SAMPLES, method_overrides=overrides, pretrain_seed=seed, allow_unhealthy=True
        )
        backbone, record = load_or_pretrain(allowed.pretrain_spec(), ds, CPU, progress=False)
        health = f"FAILED ({str(err).split(': ', 1)[1].split(' (')[0]})"
    seconds = time.perf_counter() - start
    aa = validation_aa(backbone, spec, ds, budget_seeds)
    bn = copy.deepcopy(backbone)
    images, _ = pretraining_images(ds, None, False)
    recompute_bn_statistics(bn, images, CPU)
    aa_bn = validation_aa(bn, spec, ds, budget_seeds)
    figs = " ".join(f"{k.split('/', 1)[-1]}={v:.3f}" for k, v in sorted(figures(record.key).items()))
    settings = " ".join(f"{k}={v}" for k, v in overrides.items())
    return (
        f"{method:8s} seed {seed} {settings:60s} val AA {100 * aa:5.1f} | BN recomputed {100 * aa_bn:5.1f} "
        f"| {health} | {figs} | pretrain {seconds:.0f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("mode", nargs="?", choices=("schedules", "seeds"), default="schedules")
    parser.add_argument("--methods", default="simsiam,unifeat,core,sscl")
    parser.add_argument("--seeds", type=int, default=5, help="seeds mode: pretraining seeds 0..N-1")
    parser.add_argument("--seed-list", help="seeds mode: these pretraining seeds instead (comma list)")
    parser.add_argument("--budget-seeds", type=int, default=2)
    parser.add_argument("--images", type=int, default=IMAGES)
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="seeds mode: method settings (e.g. core.marker=value for the marker A/B)",
    )
    args = parser.parse_args()
    use_thread_share()
    ds = load_dataset(None, progress=False)
    budget_seeds = range(args.budget_seeds)
    for method in args.methods.split(","):
        if args.mode == "schedules":
            for lr, batch in CANDIDATES:
                print(
                    evaluate(method, schedule(method, lr, batch, args.images), 0, ds, budget_seeds),
                    flush=True,
                )
        else:
            overrides, _ = runner.parse_overrides(args.overrides)
            seeds = [int(v) for v in args.seed_list.split(",")] if args.seed_list else range(args.seeds)
            for seed in seeds:
                print(evaluate(method, overrides, seed, ds, budget_seeds), flush=True)


if __name__ == "__main__":
    main()
