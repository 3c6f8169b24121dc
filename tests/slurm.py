"""A one-node SLURM cluster with accounting, started on 127.0.0.1 for the tests and stopped by the pids it started:
munged, MariaDB, slurmdbd, slurmctld and slurmd, each in the foreground of a process group of its own, all state in
one temporary folder. Debian's packages: slurmctld slurmd slurm-client slurmdbd munge mariadb-server.

Without accounting (slurmdbd), `sacct` fails and submitit waits forever for a job that died without a result.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from contextlib import ExitStack, contextmanager
from pathlib import Path

PROGRAMS = ("munged", "mariadbd", "mariadb-install-db", "slurmdbd", "slurmctld", "slurmd", "sbatch", "sacct")


def missing() -> list[str]:
    return [p for p in PROGRAMS if shutil.which(p) is None and not Path("/usr/sbin", p).exists()]


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _program(name: str) -> str:
    return shutil.which(name) or str(Path("/usr/sbin", name))


@contextmanager
def _daemon(command: list[str], log: Path, env: dict | None = None):
    proc = subprocess.Popen(
        command,
        stdout=open(log, "w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)


def _wait(check, what: str, log: Path, timeout_s: float = 60) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up in {timeout_s} s: {log.read_text()[-2000:]}")
        time.sleep(0.3)


def _ok(*command: str, env: dict | None = None) -> bool:
    return subprocess.run(command, capture_output=True, env={**os.environ, **(env or {})}).returncode == 0


@contextmanager
def cluster():
    """Yields the environment (SLURM_CONF, ...) under which sbatch, squeue, sacct and Hydra's SLURM launcher use
    the cluster. Its one node, `localhost`, has this machine's cores and 2 GiB of memory to hand out."""
    root = Path(tempfile.mkdtemp(prefix="sentlab-slurm-"))
    root.chmod(0o755)
    munge_dir, db_dir, state = root / "munge", root / "mysql", root / "state"
    for folder in (munge_dir, db_dir, state, state / "slurmd"):
        folder.mkdir()
    munge_dir.chmod(0o755)  # clients find the socket here
    socket_path = munge_dir / "munge.socket.2"
    key = munge_dir / "munge.key"
    key.write_bytes(os.urandom(1024))
    key.chmod(0o400)
    db_port, dbd_port, ctld_port, slurmd_port = _port(), _port(), _port(), _port()
    db_socket = db_dir / "mysqld.sock"

    (root / "slurm.conf").write_text(f"""ClusterName=sentlab
SlurmctldHost=localhost(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
AuthType=auth/munge
AuthInfo=socket={socket_path}
StateSaveLocation={state}
SlurmdSpoolDir={state}/slurmd
SlurmctldPidFile={state}/slurmctld.pid
SlurmdPidFile={state}/slurmd.pid
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
ReturnToService=2
JobRequeue=1
MpiDefault=none
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=127.0.0.1
AccountingStoragePort={dbd_port}
AccountingStoragePass={socket_path}
NodeName=localhost NodeAddr=127.0.0.1 CPUs={os.cpu_count()} RealMemory=2048 State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
""")
    dbd_conf = root / "slurmdbd.conf"
    dbd_conf.write_text(f"""AuthType=auth/munge
AuthInfo=socket={socket_path}
DbdHost=localhost
DbdAddr=127.0.0.1
DbdPort={dbd_port}
SlurmUser=root
PidFile={state}/slurmdbd.pid
StorageType=accounting_storage/mysql
StorageHost=127.0.0.1
StoragePort={db_port}
StorageUser=root
StorageLoc=slurm_acct_db
""")
    dbd_conf.chmod(0o600)
    env = {"SLURM_CONF": str(root / "slurm.conf")}

    with ExitStack() as stack:
        stack.callback(shutil.rmtree, root, ignore_errors=True)
        log = root / "munged.log"
        stack.enter_context(
            _daemon(
                [
                    _program("munged"),
                    "--foreground",
                    "--force",
                    f"--socket={socket_path}",
                    f"--key-file={key}",
                    f"--pid-file={munge_dir}/munged.pid",
                    f"--seed-file={munge_dir}/munged.seed",
                    f"--log-file={log}",
                ],
                log,
            )
        )
        _wait(socket_path.exists, "munged", log)

        log = root / "mariadb.log"
        subprocess.run(
            [
                _program("mariadb-install-db"),
                "--no-defaults",
                f"--datadir={db_dir}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            check=True,
            capture_output=True,
            timeout=300,
        )
        stack.enter_context(
            _daemon(
                [
                    _program("mariadbd"),
                    "--no-defaults",
                    f"--datadir={db_dir}",
                    "--user=root",
                    "--bind-address=127.0.0.1",
                    f"--port={db_port}",
                    f"--socket={db_socket}",
                    "--skip-grant-tables=0",
                ],
                log,
            )
        )
        _wait(lambda: _ok("mariadb-admin", f"--socket={db_socket}", "ping"), "MariaDB", log)

        log = root / "slurmdbd.log"
        stack.enter_context(_daemon([_program("slurmdbd"), "-D"], log, env))
        _wait(lambda: _ok("sacctmgr", "-n", "list", "cluster", env=env), "slurmdbd", log)
        subprocess.run(["sacctmgr", "-i", "add", "cluster", "sentlab"], capture_output=True, env={**os.environ, **env})

        log = root / "slurmctld.log"
        stack.enter_context(_daemon([_program("slurmctld"), "-D", "-i"], log, env))
        _wait(lambda: _ok("scontrol", "ping", env=env), "slurmctld", log)

        log = root / "slurmd.log"
        stack.enter_context(_daemon([_program("slurmd"), "-D", "-N", "localhost"], log, env))
        _wait(
            lambda: (
                b"idle"
                in subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, env={**os.environ, **env}).stdout
            ),
            "slurmd",
            log,
        )
        yield env


def requeue_once_training(sweep: subprocess.Popen, runs_dir: Path, env: dict, timeout_s: float = 300) -> str:
    """Wait until a job of `sweep` (a running sweep process) has written a checkpoint under runs_dir, then
    `scontrol requeue` that job (SIGTERM, then SLURM starts it again; found by its run's sentlab.submitit_job tag,
    not a job still loading); the sweep's stderr once it ends."""
    import mlflow

    deadline = time.monotonic() + timeout_s
    while not (saved := list((runs_dir / "checkpoints").glob("*/step-*.pt"))):  # a job is training
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-3000:]
        time.sleep(0.2)
    client = mlflow.MlflowClient(f"sqlite:///{runs_dir}/mlflow.db")
    training = client.get_run(saved[0].parent.name).data.tags["sentlab.submitit_job"]  # e.g. 1_0
    subprocess.run(["scontrol", "requeue", training], check=True, env=env)
    _, err = sweep.communicate(timeout=600)
    return err
