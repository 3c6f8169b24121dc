"""MLflow tracking basics: the store and experiment, what a run is named, its config as params and as a hash.
A run's life (new, reused, resumed, closed) is sentlab.runs'."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from pathlib import Path

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
import mlflow  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from sentlab import PACKAGE_DIR, tags  # noqa: E402

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
    """The experiment's id, created as a model-training experiment (its kind tag; one created before sentlab tagged
    them gets the tag if it has no kind yet)."""
    experiment = mlflow.get_experiment_by_name(tracking.experiment)
    if experiment is not None:
        if tags.EXPERIMENT_KIND not in experiment.tags:
            client = mlflow.MlflowClient()
            client.set_experiment_tag(experiment.experiment_id, tags.EXPERIMENT_KIND, tags.MODEL_TRAINING)
        return experiment.experiment_id
    local_store = not tracking.uri.startswith(("http://", "https://", "databricks"))
    location = Path(tracking.artifact_dir).resolve().as_uri() if local_store else None
    try:
        return mlflow.create_experiment(
            tracking.experiment, artifact_location=location, tags={tags.EXPERIMENT_KIND: tags.MODEL_TRAINING}
        )
    except mlflow.exceptions.MlflowException:  # another process created it first
        return mlflow.get_experiment_by_name(tracking.experiment).experiment_id


def ui_link(server: str, experiment_id: str, run_id: str | None = None) -> str:
    """The MLflow UI's page of an experiment's runs (or of one run). MLflow 3.17's UI picks its view from the
    workflowType in the link (else from the browser's last choice, GenAI at first), not from the experiment's kind."""
    page = f"{server}/#/experiments/{experiment_id}/runs" + (f"/{run_id}" if run_id else "")
    return f"{page}?workflowType=machine_learning"


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
    if data.get("method") == {"name": "lora"}:  # added later: the default method hashes as the runs before it
        del data["method"]
    if data.get("train", {}).get("class_weights", "set") is None:
        del data["train"]["class_weights"]
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
