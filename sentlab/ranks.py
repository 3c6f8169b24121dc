"""Ranks 1..N-1 of a run with `train.num_processes=N`, each in a process of its own beside rank 0.

The process that runs the job (a plain run, or a Hydra sweep job) is rank 0: it owns the MLflow run, writes the
checkpoints, evaluates, tests and logs, exactly as a one-process run does. `processes()` starts ranks 1..N-1 as
fresh Python processes (`python -m sentlab.ranks PATH`) with the composed config and the prepared head and train
features; each builds the model the same way (sentlab.models) and runs training.fit with no logging and no
checkpoint writing. The N processes meet over a TCPStore that rank 0 opens on 127.0.0.1 at a free port of the
system's choosing (a fresh one per launch), then form a process group: gloo on CPU, nccl on GPUs (rank r on
cuda:r). The collectives training.fit uses are sentlab.distributed's.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import pickle
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path

import torch
import torch.distributed as dist

from sentlab import distributed
from sentlab.errors import RunError

log = logging.getLogger(__name__)

TIMEOUT = datetime.timedelta(minutes=60)  # a collective waits this long (rank 0 validates while the others wait)


@contextlib.contextmanager
def processes(n: int, device: torch.device, worker_args: tuple):
    """Inside: this process is rank 0 of a group of `n`; ranks 1..n-1 run `_worker(..., *worker_args)`, each in a
    process of its own. n == 1: nothing happens. On the way out the group is taken down and the workers waited
    for; if anything failed, the workers still alive are terminated, and a worker's own error, if it reported
    one, is what rank 0 raises (a collective with a dead peer fails at once on gloo)."""
    if n == 1:
        yield
        return
    store = dist.TCPStore("127.0.0.1", 0, n, is_master=True, wait_for_workers=False, timeout=TIMEOUT)
    ok, threads = False, torch.get_num_threads()
    with tempfile.TemporaryDirectory(prefix="sentlab-ranks-") as folder:
        workers = {r: _spawn(Path(folder) / f"rank{r}", (r, n, store.port, device, *worker_args)) for r in range(1, n)}
        log.info(
            f"train.num_processes={n}: rank 0 here (pid {os.getpid()}), ranks 1-{n - 1} in pids "
            f"{', '.join(str(w.pid) for w in workers.values())}; {_backend(device)} on 127.0.0.1:{store.port}"
        )
        try:
            if device.type == "cuda":
                torch.cuda.set_device(0)
            else:
                torch.set_num_threads(distributed.cpu_threads(n))
            _wait_for(workers, store)
            dist.init_process_group(_backend(device), store=store, rank=0, world_size=n, timeout=TIMEOUT)
            yield
            ok = True
        except BaseException as err:
            if not _is_comm_error(err):  # rank 0's own error (or a stop): the finally below ends the others
                raise
            for worker in workers.values():  # rank 0 only saw a peer go: say why it went
                with contextlib.suppress(subprocess.TimeoutExpired):
                    worker.wait(timeout=5)  # a worker that failed has written why by the time it exits
            reported = [(r, f.read_text()) for r in workers if (f := Path(folder) / f"rank{r}.error").exists()]
            if reported:
                r, message = reported[0]
                raise RunError(f"rank {r} of train.num_processes={n} failed: {message}") from err
            raise
        finally:
            torch.set_num_threads(threads)
            if dist.is_initialized():
                dist.destroy_process_group()
            for worker in workers.values():
                try:
                    worker.wait(timeout=60 if ok else 5)
                except subprocess.TimeoutExpired:
                    worker.terminate()
                    worker.wait()


def _spawn(path: Path, args: tuple) -> subprocess.Popen:
    """A fresh Python process for one rank (`python -m sentlab.ranks PATH`), its arguments pickled at PATH.pkl.
    A plain subprocess rather than multiprocessing: it works wherever the job runs (inside joblib's loky workers,
    whose start method a multiprocessing child cannot set up) and never re-imports the caller's __main__."""
    with open(path.with_suffix(".pkl"), "wb") as f:
        pickle.dump(args, f)
    return subprocess.Popen([sys.executable, "-m", "sentlab.ranks", str(path)])


def _wait_for(workers: dict, store) -> None:
    """Until every worker has reached the store; one that dies before (an import that fails) is an error now,
    not a process group that waits for it until TIMEOUT."""
    import time

    keys = [f"started/{r}" for r in workers]
    while not store.check(keys):
        if dead := [(r, w) for r, w in workers.items() if w.poll() is not None]:
            r, w = dead[0]
            raise PeerLost(f"rank {r} (pid {w.pid}) exited with code {w.returncode} before training")
        time.sleep(0.05)


def _backend(device: torch.device) -> str:
    return "nccl" if device.type == "cuda" else "gloo"


class PeerLost(RunError):
    """A rank's process ended before it joined the others."""


def _is_comm_error(err: BaseException) -> bool:
    """A rank gone: a collective that failed for it (gloo raises RuntimeError, nccl DistBackendError)."""
    return isinstance(err, (dist.DistError, PeerLost)) or (isinstance(err, RuntimeError) and "gloo" in str(err))


def _die_with_parent() -> None:
    """Linux: this process gets SIGKILL when rank 0's process dies (SIGKILL included), so that no rank is left."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _worker(
    path: Path, rank_: int, n: int, port: int, device: torch.device, cfg, head, train_features, log_file, checkpoint_dir
) -> None:
    """Rank `rank_` (1..n-1): load the model as rank 0 did, train with it, log nothing to MLflow, write nothing.
    Its log lines go to the run's log file, prefixed `[rank r]`; an error is written to PATH.error for rank 0."""
    _die_with_parent()
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    if log_file:
        handler = logging.FileHandler(log_file)
        handler.setFormatter(logging.Formatter(f"[%(asctime)s][rank {rank_}][%(name)s][%(levelname)s] - %(message)s"))
        root.addHandler(handler)
    try:
        from sentlab import checkpoints, console, models, quant

        quant.import_only_if_needed(cfg.quant)  # as rank 0 did: before peft is imported
        from sentlab.training import fit

        console.quiet_dependencies()
        os.environ["TQDM_DISABLE"] = "1"  # rank 0 draws the progress bars
        device = torch.device("cuda", rank_) if device.type == "cuda" else device
        if device.type == "cuda":
            torch.cuda.set_device(device)
        else:
            torch.set_num_threads(distributed.cpu_threads(n))
        store = dist.TCPStore("127.0.0.1", port, n, is_master=False, timeout=TIMEOUT)
        store.set(f"started/{rank_}", "1")
        dist.init_process_group(_backend(device), store=store, rank=rank_, world_size=n, timeout=TIMEOUT)
        model = models.build(cfg, head, device)
        torch.manual_seed(cfg.train.seed + rank_)  # dropout masks of its own, fixed by (seed, rank)
        saved = checkpoints.Checkpoints(checkpoint_dir, cfg.train.checkpoint_every, cfg.train.keep_checkpoints)
        with saved.catch_signals():  # Ctrl-C reaches every process of the terminal: all stop at the same step
            fit(
                model,
                head,
                {"train": train_features},
                cfg.train,
                device,
                checkpoints=saved,
                method=models.method_of(cfg),
            )
    except BaseException as err:
        if type(err).__name__ == "Stopped":  # a stop signal ends every rank at the same step: not an error
            log.info(f"rank {rank_}: {err}")
        else:
            log.error(traceback.format_exc())
            if not _is_comm_error(err):  # an error of its own, not rank 0 gone: rank 0 reads it
                path.with_suffix(".error").write_text(
                    str(err) if isinstance(err, RunError) else f"{type(err).__name__}: {err}"
                )
            raise SystemExit(1) from None
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()


if __name__ == "__main__":  # a rank's process: python -m sentlab.ranks PATH (see _spawn)
    from sentlab.ranks import _worker as worker  # the module's own copy: its classes are the ones others see

    with open(sys.argv[1] + ".pkl", "rb") as f:
        worker(Path(sys.argv[1]), *pickle.load(f))
