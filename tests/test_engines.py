"""Tracking stores beyond one process: 8 processes starting together on an empty sqlite store, and a joblib sweep of
4 workers logging to an MLflow server on PostgreSQL. The tests start the engines on 127.0.0.1 themselves and stop
them by pid; where PostgreSQL is not installed, its test skips with the reason."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import slurm
from conftest import FAST, REPO, tiny_args
from test_optuna import EPOCHS, PRUNING, _check_trials, _study
from test_server import _free_port, mlflow_server

WORKER = """
import sys
from omegaconf import OmegaConf
from sentlab import tracking
store, worker = sys.argv[1], sys.argv[2]
cfg = OmegaConf.create({"uri": f"sqlite:///{store}/mlflow.db", "experiment": "sentlab", "artifact_dir": f"{store}/art"})
experiment_id = tracking.connect(cfg)
client = tracking.mlflow.MlflowClient()
for i in range(5):
    run = client.create_run(experiment_id, run_name=f"w{worker}-{i}")
    client.log_metric(run.info.run_id, "x", i)
    client.set_terminated(run.info.run_id)
"""


def test_processes_starting_together_on_an_empty_sqlite_store(tmp_path):
    """The store is created under a lock: all 8 x 5 runs land, and the database is whole (MLflow reads it)."""
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", WORKER, str(tmp_path), str(w)],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(8)
    ]
    errors = [p.communicate(timeout=300)[1] for p in workers]
    assert [p.returncode for p in workers] == [0] * 8, errors
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentlab").experiment_id], max_results=1000)
    assert sorted(r.info.run_name for r in runs) == sorted(f"w{w}-{i}" for w in range(8) for i in range(5))
    assert all(r.info.status == "FINISHED" and r.data.metrics["x"] == int(r.info.run_name[-1]) for r in runs)


def _postgres_bin() -> Path | None:
    """The folder of PostgreSQL's server programs (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


@contextmanager
def postgres():
    """A PostgreSQL server of its own on a free 127.0.0.1 port, run as the `postgres` user when we are root
    (initdb refuses root); yields `postgresql+psycopg://postgres@127.0.0.1:PORT/mlflow`; stopped by its pid.
    Its folder is a fresh one in the system's temporary folder, which that user can reach (pytest's cannot)."""
    bin_dir = _postgres_bin()
    folder = Path(tempfile.mkdtemp(prefix="sentlab-postgres-"))
    data, port = folder / "pgdata", _free_port()
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    if as_user:
        shutil.chown(folder, "postgres")
    subprocess.run(
        [*as_user, str(bin_dir / "initdb"), "-D", str(data), "-U", "postgres", "-A", "trust"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    log = folder / "postgres.log"
    server = subprocess.Popen(
        [
            *as_user,
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            f"unix_socket_directories={folder}",
        ],
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while (
            subprocess.run(
                [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port)], capture_output=True
            ).returncode
            != 0
        ):
            assert server.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.3)
        subprocess.run(
            [str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        yield f"postgresql+psycopg://postgres@127.0.0.1:{port}/mlflow"
    finally:
        os.killpg(server.pid, 15)  # a smart shutdown of the server and its workers, by its process group
        server.wait(timeout=60)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.skipif(_postgres_bin() is None, reason="PostgreSQL is not installed (Debian: apt-get install postgresql)")
def test_joblib_sweep_of_4_workers_against_a_server_on_postgresql(tiny_models, tmp_path):
    pytest.importorskip("psycopg", reason="psycopg is not installed (pip install 'psycopg[binary]')")
    with postgres() as store, mlflow_server(tmp_path / "runs", backend_store=store) as uri:
        sweep = subprocess.run(
            [
                sys.executable,
                "-m",
                "sentlab.train",
                "-m",
                *tiny_args(tiny_models, "bert"),
                *FAST,
                "lora.r=2,4,8,16",
                "hydra/launcher=joblib",
                "hydra.launcher.n_jobs=4",
                f"tracking.uri={uri}",
                f"runs_dir={tmp_path / 'runs'}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert sweep.returncode == 0, sweep.stderr[-3000:]
        import mlflow

        client = mlflow.MlflowClient(uri)
        runs = client.search_runs([client.get_experiment_by_name("sentlab").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sentlab.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED"
    assert sorted(int(r.data.params["lora.r"]) for r in children) == [2, 4, 8, 16]
    assert all(r.info.status == "FINISHED" and "test_accuracy" in r.data.metrics for r in children)


NO_SLURM = (
    f"SLURM is not installed (missing: {' '.join(slurm.missing())}; "
    "Debian: apt-get install slurmctld slurmd slurm-client slurmdbd munge mariadb-server)"
)
SLURM_JOBS = [
    "hydra/launcher=slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]


@pytest.mark.skipif(bool(slurm.missing()), reason=NO_SLURM)
def test_sweep_on_a_slurm_cluster(tiny_models, tmp_path):
    """`hydra/launcher=slurm` (sentlab's preset) on a one-node cluster: each job a SLURM job, every run landing; then
    an Optuna study whose trials, as SLURM jobs, report to the stored study and are pruned there."""
    with slurm.cluster() as env:
        sweep = subprocess.run(
            [
                sys.executable,
                "-m",
                "sentlab.train",
                "-m",
                *tiny_args(tiny_models, "bert"),
                *FAST,
                "lora.r=2,4",
                *SLURM_JOBS,
                f"runs_dir={tmp_path}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, **env},
        )
        assert sweep.returncode == 0, sweep.stderr[-3000:]
        deadline = time.monotonic() + 60  # the results came back; accounting records the jobs' ends a little later
        while True:
            states = subprocess.run(
                ["sacct", "-n", "-X", "-o", "State"], capture_output=True, text=True, env={**os.environ, **env}
            ).stdout.split()
            if "RUNNING" not in states or time.monotonic() > deadline:
                break
            time.sleep(1)
        study = subprocess.run(
            [
                sys.executable,
                "-m",
                "sentlab.train",
                "-m",
                *tiny_args(tiny_models, "bert"),
                *FAST,
                *PRUNING,
                EPOCHS,
                "hydra.sweeper.n_trials=2",
                "hydra.sweeper.n_jobs=2",
                *SLURM_JOBS,
                f"runs_dir={tmp_path / 'optuna'}",
            ],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=600,
            env={**os.environ, **env},
        )
        assert study.returncode == 0, study.stderr[-3000:]
    assert states == ["COMPLETED", "COMPLETED"], states
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentlab").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["lora.r"] for r in children) == ["2", "4"]
    assert all(r.info.status == "FINISHED" for r in children)
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/optuna/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentlab").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(children) == 2 and all(r.data.tags["sentlab.host"] for r in children)
    _check_trials(client, children, _study(tmp_path / "optuna"))  # FINISHED/COMPLETE, or KILLED/PRUNED after epoch 2


@pytest.mark.skipif(bool(slurm.missing()), reason=NO_SLURM)
def test_a_preempted_slurm_job_resumes_from_its_checkpoint(tiny_models, tmp_path):
    """`scontrol requeue` preempts a running job (SIGTERM, then SLURM starts it again): the job stops at a
    checkpoint, its second start resumes the same MLflow run from there, and the sweep finishes in one go."""
    with slurm.cluster() as env:
        env = {**os.environ, **env}
        sweep = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "sentlab.train",
                "-m",
                *tiny_args(tiny_models, "bert"),
                *FAST,
                "lora.r=2,4",
                "data.max_samples.train=240",
                "train.epochs=12",
                "train.checkpoint_every=5",
                *SLURM_JOBS,
                f"runs_dir={tmp_path}",
            ],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        err = slurm.requeue_once_training(sweep, tmp_path, env)
        assert sweep.returncode == 0, err[-3000:]
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentlab").experiment_id])
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert sorted(r.data.params["lora.r"] for r in children) == ["2", "4"]  # resumed, not duplicated
    assert all(r.info.status == "FINISHED" for r in children)
    resumed = [
        r
        for r in children
        if any(a.path.startswith("logs/resume-") for a in client.list_artifacts(r.info.run_id, "logs"))
    ]
    assert len(resumed) == 1, "one job was preempted and resumed"
    epochs = [m.step for m in client.get_metric_history(resumed[0].info.run_id, "epoch/val_accuracy")]
    assert sorted(epochs) == list(range(1, 13))  # each epoch validated once across both attempts (step 0: final)


@pytest.mark.slow
@pytest.mark.skipif(bool(slurm.missing()), reason=NO_SLURM)
def test_a_slurm_job_at_its_time_limit_stops_at_a_checkpoint(tiny_models, tmp_path):
    """SIGUSR2 to a training job's steps (`scancel --signal=USR2`, as SLURM sends it signal_delay_s before the time
    limit): the job stops at a checkpoint, its run KILLED with the sweep's command to resume it, the sweep ends with
    the job's one line and exit code 1 (before, submitit's handler raised in training: the run ended FAILED)."""
    long = ["data.max_samples.train=240", "train.epochs=12", "train.checkpoint_every=5"]
    args = ["-m", *tiny_args(tiny_models, "bert"), *FAST, "lora.r=2", *long, *SLURM_JOBS, f"runs_dir={tmp_path}"]
    with slurm.cluster() as env:
        env = {**os.environ, **env}
        command = [sys.executable, "-m", "sentlab.train", *args]
        sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        deadline = time.monotonic() + 300
        while not list((tmp_path / "checkpoints").glob("*/step-*.pt")):  # the job is training
            assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-3000:]
            time.sleep(0.2)
        (job,) = subprocess.run(
            ["squeue", "-h", "-t", "RUNNING", "-o", "%i"], capture_output=True, text=True, env=env
        ).stdout.split()
        subprocess.run(["scancel", "--signal=USR2", job], check=True, env=env)
        _, err = sweep.communicate(timeout=600)
    assert sweep.returncode == 1, err[-3000:]
    assert "ended without a result" in err, err[-3000:]
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    runs = client.search_runs([client.get_experiment_by_name("sentlab").experiment_id])
    (run,) = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert run.info.status == "KILLED", run.data.tags.get("error")
    assert run.data.tags["sentlab.resume_command"] == "python -m sentlab.train " + " ".join(args)
