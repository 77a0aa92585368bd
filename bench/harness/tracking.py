"""MLflow records of cells and seeds (schema: docs/architecture.md, "MLflow records").

Tracking URI: ``$MLFLOW_TRACKING_URI`` when set (an MLflow server or a shared database for several
workers), else ``sqlite:///<cwd>/mlflow.db``. That is the store ``mlflow ui`` opens by default in
the installed MLflow 3.x when started in the same directory (its ``--backend-store-uri`` default
is ``sqlite:///mlflow.db``, falling back to ``./mlruns`` only when an old file store exists there),
so ``mlflow ui`` shows the results with no flags. Artifacts of a local sqlite store go beside it,
``<store dir>/mlruns/<experiment>/`` (set on the experiment when it is created): MLflow's own
default, ``./mlruns`` of whatever directory the creating command ran in, scattered them when the
store was named by path from elsewhere. A server keeps its own artifact root.

Every run carries ``mlflow.source.name`` (``bench <command>``) and ``mlflow.source.type``, which
the UI's source column shows beside the git commit.

A seed run counts as done only when it carries ``bench.status=complete``, which is set after every
metric, param and artifact has been logged; a crashed run never has it and is redone.

A new local sqlite store is created and migrated in a temporary file that is renamed into place
under the store lock, so a kill at any moment leaves no store or a working one. Runs carry the
host and pid of their process; a run left RUNNING by a process that no longer exists is marked
KILLED when the next command of its cell starts, and a cell's parent run is FINISHED once every
seed it has tried is complete.

Against a tracking server (``http://...``) every call waits out an outage: it is retried with
exponential backoff for ``$BENCH_TRACKING_PATIENCE_S`` seconds (default 120; MLflow's own retries
are turned off so that this one window bounds the wait), then fails with
:class:`TrackingUnavailable`, one line naming the server. Readers (``table``, ``plot``) wait only
:data:`READ_PATIENCE_S`: they have nothing to protect and the user is waiting. Parent runs are
found-or-created under a lock in ``BENCH_HOME`` when the store is not a local file (see
:func:`parent_run`).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import socket
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar, cast

import mlflow
import numpy as np
import pandas as pd
from filelock import FileLock
from mlflow.entities import Dataset, DatasetInput, InputTag, Metric, Param, RunTag
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT
from requests.exceptions import ConnectionError as RequestsConnectionError
from requests.exceptions import Timeout

from bench.core.atomic import atomic_path
from bench.core.errors import BenchError
from bench.core.names import check_name
from bench.core.paths import bench_home
from bench.core.provenance import stable_hash

COMPLETE = "complete"
_DONE_FILTER = "tags.`bench.kind` = 'seed' and tags.`bench.status` = 'complete'"
PATIENCE_ENV = "BENCH_TRACKING_PATIENCE_S"
DEFAULT_PATIENCE_S = 120.0
#: How long ``table``/``plot`` wait for a server that does not answer.
READ_PATIENCE_S = 5.0
_MAX_BACKOFF_S = 10.0
_patience_override: ContextVar[float | None] = ContextVar("tracking_patience", default=None)
T = TypeVar("T")
#: The experiment tag MLflow 3's UI reads to open an experiment on its model-training view (runs,
#: metrics, charts) instead of the GenAI one (traces): the runs here are model training.
EXPERIMENT_KIND_TAG = "mlflow.experimentKind"
MODEL_TRAINING = "custom_model_development"


class TrackingUnavailable(BenchError):
    """The tracking server did not answer within the patience window (one line, naming it)."""


def patience_s() -> float:
    """Seconds a call keeps retrying an unreachable server: :func:`patience`, else the environment."""
    override = _patience_override.get()
    if override is not None:
        return override
    raw = os.environ.get(PATIENCE_ENV, "")
    try:
        return float(raw) if raw else DEFAULT_PATIENCE_S
    except ValueError:
        raise BenchError(f"{PATIENCE_ENV}={raw!r}: expected a number of seconds") from None


@contextlib.contextmanager
def patience(seconds: float) -> Iterator[None]:
    """Calls inside wait at most ``seconds`` for an unreachable server."""
    token = _patience_override.set(seconds)
    try:
        yield
    finally:
        _patience_override.reset(token)


def is_unreachable(err: BaseException) -> bool:
    """True when ``err`` says the server did not answer (refused, reset, timed out, 5xx), not that
    the request was wrong: only then is a retry worth anything."""
    if isinstance(err, RequestsConnectionError | Timeout):
        return True
    text = str(err)
    return isinstance(err, MlflowException) and text.startswith("API request to") and "failed" in text


def _reason(err: BaseException) -> str:
    """The innermost cause of a connection error, e.g. ``[Errno 111] Connection refused``."""
    text = str(err)
    match = re.search(r"(\[Errno [^\]]*\][^\"')]*|Read timed out|too many \d+ error responses)", text)
    return match.group(1).strip() if match else text.splitlines()[0][:160]


def retrying(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)``, retried with backoff while the server is unreachable, for
    :func:`patience_s` seconds; then :class:`TrackingUnavailable`. Other errors pass through."""
    deadline: float | None = None
    delay = 0.25
    while True:
        try:
            return fn(*args, **kwargs)
        except Exception as err:
            if not is_unreachable(err):
                raise
            now, window = time.monotonic(), patience_s()
            deadline = now + window if deadline is None else deadline
            if now >= deadline:
                raise TrackingUnavailable(
                    f"tracking server {tracking_uri()} did not answer for {window:g} s ({_reason(err)}); "
                    "complete units are kept: re-run the same command when it is back"
                ) from None
            time.sleep(min(delay, deadline - now))
            delay = min(2 * delay, _MAX_BACKOFF_S)


class _PatientClient:
    """An :class:`MlflowClient` whose every method goes through :func:`retrying`."""

    def __init__(self, client: MlflowClient) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._client, name)
        return functools.partial(retrying, attr) if callable(attr) else attr


def _client(uri: str) -> MlflowClient:
    """The client for ``uri``; against a server, one that waits out outages (module docstring)."""
    if not uri.startswith(("http://", "https://")):
        return MlflowClient(uri)
    # our retry loop bounds the wait; MLflow's own (7 retries, ~8 min) would run inside every call
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
    # the fluent API prints "View run ... at: URL" for every run it ends: once per unit in a sweep's log
    os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
    return cast(MlflowClient, _PatientClient(MlflowClient(uri)))


def tracking_uri() -> str:
    """``$MLFLOW_TRACKING_URI`` or the sqlite file ``mlflow ui`` opens in this directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def artifact_root(uri: str, name: str) -> str | None:
    """Where a new experiment's artifacts go: beside a local sqlite store (module docstring), else
    None (a server or database decides)."""
    if not uri.startswith("sqlite:///"):
        return None
    folder = re.sub(r"[^0-9A-Za-z_.-]", "_", name) or "experiment"
    return (Path(uri.removeprefix("sqlite:///")).parent / "mlruns" / folder).as_uri()


#: Where ``mlflow ui`` serves by default.
LOCAL_UI = "http://127.0.0.1:5000"


def runs_url(uri: str, experiment_id: str) -> str:
    """The experiment's runs page in the MLflow UI, on its model-training view (MLflow 3 may open an
    experiment on the GenAI view; ``workflowType=machine_learning`` opens the runs table): the
    server's for a server URI, else what ``mlflow ui`` serves locally."""
    base = uri.rstrip("/") if uri.startswith(("http://", "https://")) else LOCAL_UI
    return f"{base}/#/experiments/{experiment_id}/runs?workflowType=machine_learning"


def experiment_name() -> str:
    """``$BENCH_EXPERIMENT`` or ``bench``."""
    return os.environ.get("BENCH_EXPERIMENT") or "bench"


def _store_lock(uri: str) -> contextlib.AbstractContextManager[object]:
    """A file lock beside a local sqlite store; servers and other databases serialise themselves.

    Local workers that race to create a fresh sqlite store break MLflow's schema migrations, and
    two that search-then-create the same parent run would make two; the lock orders both.
    """
    if uri.startswith("sqlite:///"):
        return FileLock(uri.removeprefix("sqlite:///") + ".lock")
    return contextlib.nullcontext()


def _create_local_store(uri: str) -> None:
    """Create and migrate a missing sqlite store in a temporary file, then rename it into place.

    Called under the store lock. MLflow's own first use migrates the schema in place, and a kill in
    the middle leaves a half-migrated file that every later command fails on; a temporary that a
    killed creator left behind is simply removed here.
    """
    if not uri.startswith("sqlite:///"):
        return
    db = Path(uri.removeprefix("sqlite:///"))
    if db.exists():
        return
    for stale in db.parent.glob(f".{db.name}.*.tmp*"):
        stale.unlink(missing_ok=True)
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
    from mlflow.tracking._tracking_service.utils import _get_sqlalchemy_store

    with atomic_path(db) as tmp:
        tmp_uri = f"sqlite:///{tmp}"
        _get_sqlalchemy_store(tmp_uri, None)  # creates every table and the default experiment
        engine = SqlAlchemyStore._engine_map.pop(tmp_uri, None)
        if engine is not None:
            engine.dispose()


@functools.cache
def _experiment_id(uri: str, name: str) -> str:
    """The experiment's id (created when missing), marked as a model-training experiment."""
    with _store_lock(uri):
        _create_local_store(uri)
        client = _client(uri)
        exp = client.get_experiment_by_name(name)
        if exp is None:
            with contextlib.suppress(mlflow.exceptions.MlflowException):  # another machine was first
                client.create_experiment(
                    name,
                    artifact_location=artifact_root(uri, name),
                    tags={EXPERIMENT_KIND_TAG: MODEL_TRAINING},
                )
            exp = client.get_experiment_by_name(name)
            if exp is None:
                raise BenchError(f"tracking store {uri}: cannot create experiment {name!r}")
        if EXPERIMENT_KIND_TAG not in exp.tags:  # an experiment made before; a user's choice is kept
            client.set_experiment_tag(exp.experiment_id, EXPERIMENT_KIND_TAG, MODEL_TRAINING)
        return exp.experiment_id


def setup_tracking(experiment: str | None = None) -> tuple[MlflowClient, str]:
    """Point MLflow (client and fluent API) at the store and experiment; returns (client, experiment id)."""
    uri, name = tracking_uri(), experiment or experiment_name()
    check_name(name, "MLflow experiment ($BENCH_EXPERIMENT or --experiment)", any_case=True)
    mlflow.set_tracking_uri(uri)
    exp_id = _experiment_id(uri, name)
    retrying(mlflow.set_experiment, experiment_id=exp_id)
    return _client(uri), exp_id


def metric_name(class_name: str) -> str:
    """MLflow-safe suffix of a class name: ``Urban/Built-up`` -> ``Urban_Built-up``."""
    return re.sub(r"[^0-9A-Za-z_\-. ]", "_", class_name).replace(" ", "_")


def flatten(config: Mapping[str, Any], prefix: str = "") -> dict[str, str]:
    """Nested config -> ``{"a.b": "value"}`` params (MLflow params are flat strings)."""
    flat: dict[str, str] = {}
    for key, value in config.items():
        if isinstance(value, Mapping):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)[:6000]
    return flat


def find_completed(result_key: str, experiment: str | None = None) -> str | None:
    """Run id of a complete seed run with this ``bench.result_key``, or None (work still to do)."""
    client, exp_id = setup_tracking(experiment)
    runs = client.search_runs(
        [exp_id], f"{_DONE_FILTER} and tags.`bench.result_key` = '{result_key}'", max_results=1
    )
    return runs[0].info.run_id if runs else None


def completed_runs(experiment: str | None = None) -> pd.DataFrame:
    """Every complete seed run, one row each, as ``mlflow.search_runs`` lays it out.

    Columns: ``run_id``, ``start_time``, ``end_time``, ``tags.<tag>``, ``metrics.<metric>``,
    ``params.<param>``. Not deduplicated: readers dedupe by ``tags.bench.result_key``.
    A dead server fails within :data:`READ_PATIENCE_S` (or a shorter ``$BENCH_TRACKING_PATIENCE_S``).
    """
    with patience(min(READ_PATIENCE_S, patience_s())):
        _, exp_id = setup_tracking(experiment)
        frame = retrying(mlflow.search_runs, [exp_id], filter_string=_DONE_FILTER, output_format="pandas")
    assert isinstance(frame, pd.DataFrame)
    return frame


def seed_metrics(run_id: str) -> dict[str, float]:
    """The metrics of a recorded run (to report a skipped seed without recomputing it)."""
    client, _ = setup_tracking()
    return dict(client.get_run(run_id).data.metrics)


def parent_run(
    kind: str,
    key_tag: str,
    key: str,
    run_name: str,
    tags: Mapping[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> str:
    """The one parent run tagged ``bench.kind=kind`` and ``key_tag=key``: found, or created once."""
    client, exp_id = setup_tracking()
    with _parent_lock(tracking_uri(), exp_id, kind, key):
        found = client.search_runs(
            [exp_id], f"tags.`bench.kind` = '{kind}' and tags.`{key_tag}` = '{key}'", max_results=1
        )
        if found:
            return found[0].info.run_id
        run = client.create_run(
            exp_id,
            run_name=run_name,
            tags={"bench.kind": kind, key_tag: key, **source_tags(), **(tags or {})},
        )
    if params:
        client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return run.info.run_id


def _parent_lock(uri: str, exp_id: str, kind: str, key: str) -> contextlib.AbstractContextManager[object]:
    """What makes find-or-create of one parent run atomic, for every worker of every machine.

    A local sqlite store: its store lock. Anything else (a server, a database): a lock file per
    parent under ``BENCH_HOME``, which every worker of a sweep already shares (claims, budgets,
    weights), so this adds no new requirement. MLflow has no create-if-absent, and
    create-then-delete-the-loser needs an order every client agrees on (client clocks differ),
    while a loser may already be in use by the time it is deleted; a lock has neither problem.
    The lock is held for one search and one create, and the kernel releases it if its holder dies.
    """
    if uri.startswith("sqlite:///"):
        return _store_lock(uri)
    path = bench_home() / "locks" / f"parent-{stable_hash([uri, exp_id, kind, key])}.lock"
    path.parent.mkdir(parents=True, exist_ok=True)
    return FileLock(str(path))


def source_tags() -> dict[str, str]:
    """MLflow's source tags: ``mlflow.source.name`` = ``bench <command>`` (``bench run``, ``bench
    sweep``, ...), ``mlflow.source.type`` = ``LOCAL``."""
    import sys

    command = sys.argv[1] if len(sys.argv) > 1 and not sys.argv[1].startswith("-") else ""
    return {"mlflow.source.name": f"bench {command}".strip(), "mlflow.source.type": "LOCAL"}


def process_tags() -> dict[str, str]:
    """Tags naming the process that writes a run, so a run it leaves RUNNING can be closed later
    (and the source tags, :func:`source_tags`)."""
    return {
        "bench.host": socket.gethostname(),
        "bench.pid": str(os.getpid()),
        **compute_tags(),
        **source_tags(),
    }


def compute_tags() -> dict[str, str]:
    """Where a run's numbers were computed: torch's CPU thread count and the CPU model. Not part of
    any key (DESIGN 9), but recorded: torch's CPU kernels sum in an order that follows the thread
    count and vector width, so a pretraining or fine-tuning moves in the last digits with them
    (README, "Reproducibility"); ``bench verify`` re-runs a committed seed at its thread count."""
    import torch

    return {"bench.torch_threads": str(torch.get_num_threads()), "bench.cpu": _cpu_model()}


@functools.cache
def _cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), read once per process (every run is tagged)."""
    import platform

    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            cpu = next((line.split(":", 1)[1].strip() for line in fh if line.startswith("model name")), cpu)
    except OSError:
        pass
    return cpu


def _process_gone(tags: Mapping[str, str]) -> bool:
    """True only when the run's writer ran on this host and no longer exists (other hosts: unknown)."""
    if tags.get("bench.host") != socket.gethostname() or not tags.get("bench.pid", "").isdigit():
        return False
    pid = int(tags["bench.pid"])
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def close_dead_runs(parent_id: str | None = None, *, pretrain_key: str | None = None) -> list[str]:
    """Mark KILLED the runs left RUNNING by a process of this host that is gone: the children of
    ``parent_id``, or the pretraining runs of ``pretrain_key`` (a sweep's are not nested)."""
    client, exp_id = setup_tracking()
    which = (
        f"tags.`mlflow.parentRunId` = '{parent_id}'"
        if parent_id
        else f"tags.`bench.pretrain_key` = '{pretrain_key}'"
    )
    running = client.search_runs([exp_id], f"{which} and attributes.status = 'RUNNING'")
    killed = [run.info.run_id for run in running if _process_gone(run.data.tags)]
    for run_id in killed:
        client.set_terminated(run_id, "KILLED")
    return killed


def refresh_parent_status(parent_id: str) -> None:
    """FINISHED once every seed tried under ``parent_id`` has a complete run (a failure is then stale)."""
    client, exp_id = setup_tracking()
    parent = client.get_run(parent_id)
    if parent.info.status in ("RUNNING", "FINISHED"):
        return  # RUNNING: this process is using it and ends it itself
    seeds = client.search_runs(
        [exp_id], f"tags.`mlflow.parentRunId` = '{parent_id}' and tags.`bench.kind` = 'seed'"
    )
    tried = {run.data.tags.get("bench.seed") for run in seeds}
    done = {run.data.tags.get("bench.seed") for run in seeds if run.data.tags.get("bench.status") == COMPLETE}
    if seeds and tried == done:
        client.set_terminated(parent_id, "FINISHED")


def cell_run(
    cell_key: str, tags: Mapping[str, str], params: Mapping[str, str], run_name: str, ds: Any = None
) -> str:
    """The parent run of a cell: the existing one for ``cell_key`` or a new (terminated) one, with
    the git tags and (``ds``) the dataset as its input.

    Children left RUNNING by a killed process of this host are marked KILLED first.
    """
    run_id = parent_run("cell", "bench.cell_key", cell_key, run_name, {**git_tags(), **tags}, params)
    client, _ = setup_tracking()
    close_dead_runs(run_id)
    run = client.get_run(run_id)
    if ds is not None and not (run.inputs and run.inputs.dataset_inputs):
        log_dataset(run_id, ds)
    if run.info.status == "RUNNING":
        client.set_terminated(run_id)
    refresh_parent_status(run_id)
    return run_id


def git_tags(code_version: str | None = None) -> dict[str, str]:
    """MLflow's source tags (``mlflow.source.git.commit``, ``mlflow.source.git.branch``: what its UI
    shows and links) and ``bench.git_dirty``; ``code_version`` (a run's ``+dirty``-marked version)
    decides dirtiness when given, else the tree's state. Empty outside a git checkout."""
    commit, branch = _git_head()
    if not commit:
        return {}
    if code_version is None:
        from bench.core.provenance import code_version as current

        code_version = current()
    tags = {
        "mlflow.source.git.commit": commit,
        "bench.git_dirty": str(code_version.endswith("+dirty")).lower(),
    }
    if branch and branch != "HEAD":
        tags["mlflow.source.git.branch"] = branch
    return tags


@functools.cache
def _git_head() -> tuple[str, str]:
    """(full commit, branch) of the repository this harness runs from; ("", "") without git."""
    import subprocess

    repo = Path(__file__).resolve().parents[2]
    try:
        out = [
            subprocess.run(
                ["git", "-C", str(repo), "rev-parse", *args],
                capture_output=True,
                text=True,
                check=True,
                timeout=10,
            ).stdout.strip()
            for args in (["HEAD"], ["--abbrev-ref", "HEAD"])
        ]
    except (OSError, subprocess.SubprocessError):
        return "", ""
    return out[0], out[1]


def dataset_input(ds: Any, context: str) -> DatasetInput:
    """The dataset as an MLflow run input: its name (layout and folder), its content fingerprint as
    the digest, and the split sizes (patches) as the profile, so the UI's dataset panel says what a
    run was evaluated on and runs on the same data share one dataset entry."""
    root = Path(getattr(ds, "root", "") or ".")
    layout = getattr(ds, "layout", "dataset")
    splits = {name: len(getattr(ds, name).labels) for name in ("labelled", "test") if hasattr(ds, name)}
    profile = {"patches": splits, "bands": len(getattr(ds, "band_names", ()))}
    if getattr(ds, "split_scheme", None):
        profile["split_scheme"] = ds.split_scheme
    entity = Dataset(
        name=f"{layout}:{root.name}",
        digest=str(ds.fingerprint)[:36],
        source_type="local",
        source=json.dumps({"uri": str(root)}),
        schema=None,
        profile=json.dumps(profile, sort_keys=True),
    )
    return DatasetInput(entity, tags=[InputTag(MLFLOW_DATASET_CONTEXT, context)])


def log_dataset(run_id: str, ds: Any, context: str = "evaluation") -> None:
    """Log ``ds`` as an input of ``run_id`` (see :func:`dataset_input`).

    The store keeps one dataset entry per (experiment, name, digest), found-or-inserted without a
    lock: two workers that log it at once collide on the insert, and the loser's retry finds it.
    An input that still fails is left out with a warning; it describes a run, it is not a result.
    """
    client, _ = setup_tracking()
    for attempt in range(3):
        try:
            client.log_inputs(run_id, datasets=[dataset_input(ds, context)])
            return
        except MlflowException as err:
            if attempt == 2:
                line = str(err).splitlines()[0][:160]
                warnings.warn(f"dataset input not logged to run {run_id}: {line}", stacklevel=2)
            else:
                time.sleep(0.2 * (attempt + 1))


def _now_ms() -> int:
    return int(time.time() * 1000)


def start_seed(
    parent_id: str,
    *,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, str] | None = None,
    ds: Any = None,
) -> str:
    """Open a seed run (RUNNING, child of ``parent_id``) before its work starts, so that its start
    and end times are the work's; :func:`record_seed` with ``run_id`` completes it and
    :func:`fail_run` closes it when the work fails."""
    client, exp_id = setup_tracking()
    version = (params or {}).get("code_version")
    run = client.create_run(
        exp_id,
        run_name=run_name,
        tags={
            "bench.kind": "seed",
            "mlflow.parentRunId": parent_id,
            **git_tags(version),
            **tags,
            **process_tags(),
        },
    )
    if params:
        _log_params(client, run.info.run_id, params)
        _STARTED_PARAMS[run.info.run_id] = dict(params)
    if ds is not None:
        log_dataset(run.info.run_id, ds)
    return run.info.run_id


@contextlib.contextmanager
def active_parent(run_id: str) -> Iterator[None]:
    """Make ``run_id`` MLflow's active run, so that runs started inside (a pretraining run) nest
    under it; afterwards its status is what it was (resuming a run marks it RUNNING, ending it
    FINISHED, which would say a cell is done while its seeds still run)."""
    client, _ = setup_tracking()
    status = client.get_run(run_id).info.status
    with retrying(mlflow.start_run, run_id=run_id):
        yield
    if status == "RUNNING":
        client.update_run(run_id, status="RUNNING")
    elif status != "FINISHED":
        client.set_terminated(run_id, status)


#: Params a seed run logged when it started (logged once: MLflow refuses nothing but costs a call).
_STARTED_PARAMS: dict[str, dict[str, str]] = {}


def fail_run(run_id: str, parent_id: str | None = None) -> None:
    """Best effort: mark a run FAILED (the server may be what failed), and its cell's parent run
    ``parent_id`` too: a cell with a failed seed is not FINISHED (it becomes so again once every
    seed tried is complete, :func:`refresh_parent_status`)."""
    _STARTED_PARAMS.pop(run_id, None)
    client, _ = setup_tracking()
    for failed in filter(None, (run_id, parent_id)):
        with contextlib.suppress(Exception), patience(0.0):
            client.set_terminated(failed, "FAILED")


def _log_params(client: MlflowClient, run_id: str, params: Mapping[str, str]) -> None:
    items = list(params.items())
    for i in range(0, len(items), 100):  # MLflow's per-batch param limit
        client.log_batch(run_id, params=[Param(k, v) for k, v in items[i : i + 100]])


def confusion_png(confusion: np.ndarray, class_names: Sequence[str], path: Path, title: str = "") -> None:
    """The confusion matrix as a small PNG: rows (true classes) normalised to recall, counts in
    the cells; what the MLflow UI shows beside the CSV."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    counts = np.asarray(confusion, dtype=np.float64)
    rows = counts.sum(axis=1, keepdims=True)
    recall = np.divide(counts, rows, out=np.zeros_like(counts), where=rows > 0)
    n = len(class_names)
    fig = Figure(figsize=(2.0 + 0.55 * n, 1.6 + 0.5 * n), dpi=80)
    ax = fig.add_subplot()
    ax.imshow(recall, cmap="Blues", vmin=0.0, vmax=1.0)
    for i in range(n):
        for j in range(n):
            if counts[i, j]:
                colour = "white" if recall[i, j] > 0.5 else "black"
                ax.text(j, i, f"{int(counts[i, j])}", ha="center", va="center", fontsize=6, color=colour)
    ax.set_xticks(range(n), list(class_names), rotation=45, ha="right", fontsize=7)
    ax.set_yticks(range(n), list(class_names), fontsize=7)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true (row-normalised colour)")
    if title:
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path)


def record_seed(
    parent_id: str,
    *,
    run_name: str,
    tags: Mapping[str, str],
    params: Mapping[str, str],
    metrics: Mapping[str, float],
    confusion: np.ndarray,
    class_names: Sequence[str],
    run_id: str | None = None,
) -> str:
    """Write one seed run (child of ``parent_id``), marking it complete only once all is logged.

    ``run_id``: the run :func:`start_seed` opened before the work (else one is created now). Then
    the cell's aggregated metrics and table are updated (:func:`update_cell`).
    """
    client, _ = setup_tracking()
    if run_id is None:
        run_id = start_seed(parent_id, run_name=run_name, tags=tags)
    else:
        client.update_run(run_id, name=run_name)
    try:
        logged = _STARTED_PARAMS.pop(run_id, {})
        _log_params(client, run_id, {k: v for k, v in params.items() if logged.get(k) != v})
        now = _now_ms()
        client.log_batch(
            run_id,
            metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
            tags=[RunTag(k, v) for k, v in tags.items()],
        )
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "confusion_matrix.csv"
            frame = pd.DataFrame(confusion, index=list(class_names), columns=list(class_names))
            frame.rename_axis("true \\ predicted").to_csv(path)
            confusion_png(confusion, class_names, Path(tmp) / "confusion_matrix.png", run_name)
            client.log_artifacts(run_id, tmp)
        client.log_batch(run_id, tags=[RunTag("bench.status", COMPLETE)])
    except BaseException:
        fail_run(run_id)
        raise
    client.set_terminated(run_id)
    refresh_parent_status(parent_id)
    update_cell(parent_id, class_names)
    return run_id


#: The health tag of seed runs (``bench.harness.pretraining.HEALTH_TAG``), also set on a cell's
#: parent: ``passed`` or ``failed (n of N seeds): <reasons>``; and the tables' mark for it.
HEALTH_TAG = "bench.pretrain_health"
UNHEALTHY_MARK = "‡"
#: The seed runs' usefulness tag (:mod:`bench.harness.usefulness`): the validation linear AA of
#: their weights against the same seed's random init, starting with :data:`BELOW_INIT` when lower.
USEFULNESS_TAG = "bench.pretrain_usefulness"
BELOW_INIT = "below init:"

#: The summary metrics a cell's parent run carries as ``<name>_mean`` / ``<name>_std``.
CELL_SUMMARIES = ("AA", "OA", "mIoU", "macroF1")


def update_cell(parent_id: str, class_names: Sequence[str]) -> dict[str, float]:
    """Aggregate the cell's complete seed runs onto its parent run: ``<metric>_mean`` and
    ``<metric>_std`` (sample std, ddof=1, from two seeds) of AA, OA, mIoU, macroF1 and of every
    class's accuracy and IoU, ``seeds_complete``, and ``cell_table.md`` (the cell's table), so that
    cells can be sorted and charted in the MLflow UI. Called as each seed finishes: the step is the
    number of seeds aggregated, so the metric history shows how the mean settled. Seeds with the
    same result key count once (the latest).

    The parent's end time moves to the latest seed's end (a parent is created terminated, and its
    duration would otherwise be the milliseconds of its creation, not its seeds' minutes); its
    status is kept. Seeds evaluated on weights that failed their health gate (``--allow-unhealthy``)
    mark the parent (:data:`HEALTH_TAG` = the first ``failed: ...`` line) and its table (a line
    naming how many seeds and why); a healthy cell's parent carries ``passed``."""
    from bench.protocols.metrics import STD_NOTE, format_cell, mean_std

    client, exp_id = setup_tracking()
    children = client.search_runs(
        [exp_id], f"tags.`mlflow.parentRunId` = '{parent_id}' and {_DONE_FILTER}", max_results=5000
    )
    latest: dict[str, Any] = {}
    for run in sorted(children, key=lambda r: r.info.end_time or 0):
        latest[run.data.tags.get("bench.result_key", run.info.run_id)] = run
    runs = list(latest.values())
    if not runs:
        return {}
    names = [*CELL_SUMMARIES]
    names += [f"{p}.{metric_name(c)}" for p in ("acc", "iou") for c in class_names]
    aggregated: dict[str, float] = {"seeds_complete": float(len(runs))}
    values: dict[str, list[float]] = {}
    for name in names:
        values[name] = [r.data.metrics[name] for r in runs if name in r.data.metrics]
        if not values[name]:
            continue
        mean, std = mean_std(values[name])
        aggregated[f"{name}_mean"] = mean
        if not np.isnan(std):
            aggregated[f"{name}_std"] = std
    now, step = _now_ms(), len(runs)
    # seeds on weights that failed their health gate (--allow-unhealthy): the parent says so too
    bad = sorted({h for r in runs if (h := r.data.tags.get(HEALTH_TAG, "")).startswith("failed:")})
    n_bad = sum(r.data.tags.get(HEALTH_TAG, "").startswith("failed:") for r in runs)
    health = f"failed ({n_bad} of {len(runs)} seeds): {'; '.join(bad)}"[:5000] if bad else "passed"
    client.log_batch(
        parent_id,
        metrics=[Metric(k, v, now, step) for k, v in aggregated.items()],
        tags=[RunTag(HEALTH_TAG, health)],
    )
    tags = runs[0].data.tags

    def tag(name: str) -> str:
        return tags.get(f"bench.{name}", "")

    label = (tag("label") or tag("method")) + (f" {UNHEALTHY_MARK}" if bad else "")
    failed, n_failed = bad, n_bad
    parent = client.get_run(parent_id).info  # the cell lasts as long as its seeds (not its creation)
    ends = [r.info.end_time for r in runs if r.info.end_time]
    if parent.status != "RUNNING" and ends and max(ends) > (parent.end_time or 0):
        client.set_terminated(parent_id, parent.status, end_time=max(ends))
    rows = [(c, values.get(f"acc.{metric_name(c)}", [])) for c in class_names]
    rows += [(m, values.get(m, [])) for m in ("AA", "OA", "mIoU")]
    seeds = sorted(
        int(r.data.tags["bench.seed"]) for r in runs if r.data.tags.get("bench.seed", "").isdigit()
    )
    lines = [
        f"{tag('protocol')} | {tag('budget')} {tag('budget_unit')} | backbone {tag('backbone')}"
        f" | seeds {', '.join(map(str, seeds))}",
        "",
        f"| | {label} |",
        "| --- | ---: |",
        *(f"| {name} | {format_cell(vals) if vals else 'n/a'} |" for name, vals in rows),
        "",
        f"{STD_NOTE}; n = {len(runs)}",
        *(
            [f"{UNHEALTHY_MARK} {n_bad} of {len(runs)} seeds on weights that failed their health gate"]
            if bad
            else []
        ),
    ]
    if failed:
        lines += [
            "",
            f"UNHEALTHY: {n_failed} of {len(runs)} seeds used pretrained weights that failed their health "
            "gate (--allow-unhealthy): " + "; ".join(h.removeprefix("failed: ") for h in failed),
        ]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "cell_table.md"
        path.write_text("\n".join(lines) + "\n")
        client.log_artifact(parent_id, str(path))
    return aggregated
