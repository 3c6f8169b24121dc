"""A real MLflow tracking server (what `make server` starts) on 127.0.0.1: a sweep logged through its HTTP URI
lands in the project's store with its artifacts, as with the embedded store; the server is stopped by its pid."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from contextlib import contextmanager
from pathlib import Path

from conftest import FAST, tiny_args


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def running(command: list[str], ready_url: str, log_path: Path, env: dict | None = None, timeout_s: float = 120):
    """Start `command` in a process group of its own, wait until ready_url answers 200, and stop the group
    by its pid when done (workers included)."""
    log = open(log_path, "w")
    proc = subprocess.Popen(
        command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}, start_new_session=True
    )
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            assert proc.poll() is None, f"{command[:4]} exited: {log_path.read_text()[-2000:]}"
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"{command[:4]} not up in {timeout_s} s: {log_path.read_text()[-2000:]}"
            time.sleep(0.5)
        yield proc
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # the group of the process we started, by its pid
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        log.close()


@contextmanager
def mlflow_server(runs_dir: Path, timeout_s: float = 90, backend_store: str | None = None):
    """`mlflow server` as `make server` runs it, on a free loopback port; yields its URI; stopped by its pid.
    Its store: runs_dir/mlflow.db, or backend_store (e.g. a PostgreSQL URI)."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    store = backend_store or f"sqlite:///{runs_dir}/mlflow.db"
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "server",
        "--backend-store-uri",
        store,
        "--serve-artifacts",
        "--artifacts-destination",
        str(runs_dir / "mlartifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true"}
    uri = f"http://127.0.0.1:{port}"
    with running(command, f"{uri}/health", runs_dir / "server.log", env, timeout_s):
        yield uri


def test_sweep_through_tracking_server(tiny_models, train, store, runs_dir, monkeypatch):
    import mlflow

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "1")  # fail fast if the server is gone
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "60")
    with mlflow_server(runs_dir) as uri:
        train("-m", *tiny_args(tiny_models, "bert"), "lora.r=2,4", f"tracking.uri={uri}", *FAST)
        http = mlflow.MlflowClient(tracking_uri=uri)
        experiment = http.get_experiment_by_name("sentlab")
        runs = http.search_runs([experiment.experiment_id])
        (parent,) = [r for r in runs if r.data.tags.get("sentlab.sweep") == "parent"]
        children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
        assert parent.info.status == "FINISHED" and parent.data.metrics["sweep_finished"] == 2
        assert sorted(r.info.run_name for r in children) == ["lora.r=2", "lora.r=4"]
        assert all(r.info.status == "FINISHED" for r in children)
        for run in children:  # the adapter went up through the server's artifact proxy
            files = {a.path for a in http.list_artifacts(run.info.run_id, "adapter")}
            assert "adapter/adapter_model.safetensors" in files
        assert {a.path for a in http.list_artifacts(parent.info.run_id)} >= {"summary.json"}

    # The same runs are in the project's store, the artifacts in its folder, as with the embedded store.
    local = {r.info.run_id: r.info.status for r in store().search_runs([experiment.experiment_id])}
    assert local == {r.info.run_id: r.info.status for r in runs}
    adapters = list((runs_dir / "mlartifacts").rglob("adapter_model.safetensors"))
    assert sorted("models" in a.parts for a in adapters) == [False, False, True, True]  # each run's, and its model's
