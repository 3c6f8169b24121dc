"""MLflow tracking: the store, the run of each job (a child of its sweep's parent run), params and artifacts."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
import mlflow  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from sentlab import PACKAGE_DIR  # noqa: E402

MAX_PARAM_LENGTH = 500  # longer values are cut in params; the full YAML is an artifact
SWEEP_FILE = "sweep.json"  # in a sweep's folder: the parent run every job nests under, the fixed overrides
# Keys that do not change what a run computes: left out of run names and of the config hash.
INFRA_KEYS = (
    "runs_dir",
    "run_name",
    "tracking",
    "hydra",
    "sweep",
    "force",
    "resume",
    "trial",
    "train.checkpoint_every",
    "train.keep_checkpoints",
)


def connect(tracking) -> str:
    """Point MLflow at the configured store; the experiment's id (created once, race-safe).

    A sqlite store is created (and migrated) under a file lock beside it: processes that start together on an
    empty store (parallel sweep jobs) would otherwise each migrate it, and leave it half-migrated.
    """
    uri = tracking.uri
    mlflow.set_tracking_uri(uri)
    if not uri.startswith("sqlite:///"):
        return _experiment_id(tracking)
    import fcntl

    db = Path(uri.removeprefix("sqlite:///"))
    db.parent.mkdir(parents=True, exist_ok=True)
    with open(db.with_name(db.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # held while the store is created and the experiment looked up
        return _experiment_id(tracking)


def _experiment_id(tracking) -> str:
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        return experiment.experiment_id
    local_store = not tracking.uri.startswith(("http://", "https://", "databricks"))
    location = Path(tracking.artifact_dir).resolve().as_uri() if local_store else None
    try:
        return mlflow.create_experiment(tracking.experiment, artifact_location=location)
    except mlflow.exceptions.MlflowException:  # another process created it first
        return mlflow.get_experiment_by_name(tracking.experiment).experiment_id


def is_infra(key: str) -> bool:
    key = key.lstrip("+~")
    return any(key == k or key.startswith(k + ".") for k in INFRA_KEYS)


def run_name(overrides: list[str], cfg, sweep: dict | None = None) -> str:
    """The overrides that set this job apart (in a sweep: from its siblings; seed and infrastructure
    left out), or backbone/head/data when there are none."""
    if cfg.run_name:
        return cfg.run_name
    common = set(sweep["fixed_overrides"]) if sweep else set()
    shown = [
        o for o in overrides if o not in common and not is_infra(o.split("=")[0]) and not o.startswith("train.seed=")
    ]
    return " ".join(shown) or f"{cfg.backbone.name}/{cfg.head.name}/{cfg.data.name}"


def resolved(cfg) -> dict:
    """The resolved run config as plain data (the Hydra node excluded)."""
    return OmegaConf.to_container(cfg, resolve=True)


def config_hash(cfg, seeds: bool = True) -> str:
    """A fingerprint of what a run computes: the resolved config without infrastructure keys. With seeds=False,
    the fingerprint of its setting (tag `sentlab.setting_hash`): runs that share it are repeats over seeds."""

    def drop_infra(node: dict, prefix: str = "") -> dict:
        return {
            k: drop_infra(v, f"{prefix}{k}.") if isinstance(v, dict) else v
            for k, v in node.items()
            if not is_infra(prefix + str(k))
        }

    data = drop_infra(resolved(cfg))
    if data.get("train", {}).get("num_processes") == 1:  # added later: one process hashes as the runs before it
        del data["train"]["num_processes"]
    if not seeds:
        data["train"] = {k: v for k, v in data["train"].items() if k != "seed"}
        data["data"] = {k: v for k, v in data["data"].items() if k != "seed"}
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def flat_params(cfg) -> dict[str, str]:
    """The resolved config flattened to dotted keys, values cut to MAX_PARAM_LENGTH."""
    params = {}

    def walk(prefix: str, node):
        if isinstance(node, dict) and node:
            for key, value in node.items():
                walk(f"{prefix}.{key}" if prefix else str(key), value)
        else:
            text = str(node)
            params[prefix] = text if len(text) <= MAX_PARAM_LENGTH else text[: MAX_PARAM_LENGTH - 3] + "..."

    walk("", resolved(cfg))
    return params


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=PACKAGE_DIR, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() or None


def read_sweep(sweep_dir: str | None) -> dict | None:
    """What the sweep callback wrote before the jobs started: parent_run_id, fixed_overrides."""
    path = Path(sweep_dir) / SWEEP_FILE if sweep_dir else None
    return json.loads(path.read_text()) if path and path.exists() else None


def runs_of(experiment_id: str, config_hash: str, status: str | None = None) -> list:
    """This experiment's runs of one config (tag `sentlab.config_hash`), newest first."""
    search = f"tags.`sentlab.config_hash` = '{config_hash}'"
    if status:
        search += f" and attributes.status = '{status}'"
    return mlflow.MlflowClient().search_runs(
        [experiment_id], filter_string=search, order_by=["attributes.start_time DESC"], max_results=1000
    )


def finished_run(experiment_id: str, config_hash: str, parent_run_id: str):
    """The FINISHED run that answers a sweep job: its own child run if the sweep already has one, else the
    latest from elsewhere (a single run, another sweep); None if the config never finished."""
    runs = runs_of(experiment_id, config_hash, "FINISHED")
    own = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent_run_id]
    return (own or runs or [None])[0]


def process_tags() -> dict:
    """Where a run's process lives (tags `sentlab.host`, `sentlab.pid`): what tells a dead RUNNING run."""
    return {"sentlab.host": socket.gethostname(), "sentlab.pid": str(os.getpid())}


def is_alive(run) -> bool | None:
    """Whether a RUNNING run's process is still at work, looked up by its pid on this host; None for a process of
    another host, which cannot be looked up (resume=RUN_ID resumes such a run once you know it died)."""
    if run.info.status != "RUNNING":
        return False
    if run.data.tags.get("sentlab.host") != socket.gethostname():
        return None
    try:
        os.kill(int(run.data.tags["sentlab.pid"]), 0)
    except ProcessLookupError:
        return False
    except (KeyError, ValueError, PermissionError):
        return True
    return True


def interrupted_runs(experiment_id: str, config_hash: str, parent_run_id: str | None) -> list:
    """Runs of this config, in this sweep (or, for None, in no sweep), that stopped before the end: KILLED by
    a signal, or RUNNING with a dead process (SIGKILL, out of memory). Newest first."""
    return [
        r
        for r in runs_of(experiment_id, config_hash)
        if r.data.tags.get("mlflow.parentRunId") == parent_run_id
        and (r.info.status == "KILLED" or (r.info.status == "RUNNING" and is_alive(r) is False))
    ]


def reuse_run(experiment_id: str, name: str, parent_run_id: str, tags: dict, done) -> str:
    """A sweep job answered by a FINISHED run from elsewhere: a FINISHED child of the sweep that carries that
    run's params and metrics and says whose results it reuses (tag `sentlab.reuses`)."""
    client = mlflow.MlflowClient()
    source = done.data.tags.get("sentlab.reuses", done.info.run_id)
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            **tags,
            "mlflow.parentRunId": parent_run_id,
            "sentlab.reuses": source,
            "mlflow.note.content": f"Reuses the results of run {source} (same config, already FINISHED).",
        },
    )
    try:
        now = int(time.time() * 1000)
        client.log_batch(
            run.info.run_id,
            metrics=[mlflow.entities.Metric(k, v, now, 0) for k, v in done.data.metrics.items()],
            params=[mlflow.entities.Param(k, v) for k, v in done.data.params.items()],
        )
    finally:
        client.set_terminated(run.info.run_id, "FINISHED")
    return run.info.run_id


def failed_run(
    experiment_id: str, name: str, parent_run_id: str | None, tags: dict, params: dict, error: BaseException
):
    """Record a job that failed before its run could start (e.g. a bad setting in one sweep job) as a FAILED run."""
    client = mlflow.MlflowClient()
    run = client.create_run(
        experiment_id,
        run_name=name,
        tags={
            **tags,
            **({"mlflow.parentRunId": parent_run_id} if parent_run_id else {}),
            "error": f"{type(error).__name__}: {error}"[:5000],
        },
    )
    try:
        client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()])
    finally:
        client.set_terminated(run.info.run_id, "FAILED")
    return run.info.run_id


def log_figure(fig, path: str):
    import matplotlib.pyplot as plt

    mlflow.log_figure(fig, path)
    plt.close(fig)
