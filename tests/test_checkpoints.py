"""Checkpoints, stop signals, resume and early stopping, through the real entry point on a tiny BERT.

Runs that are stopped run in a subprocess (`python -m sentlab.train`): the test waits for the first checkpoint
file, then sends the signal, so the stop always lands mid-training."""

from __future__ import annotations

import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import FAST, REPO, all_runs, tiny_args

# Long enough to be stopped mid-training: 96 rows in batches of 4, 24 steps an epoch, a checkpoint every 3 steps.
LONG = [
    *FAST,
    "data.max_samples.train=96",
    "train.batch_size=4",
    "train.epochs=2",
    "train.checkpoint_every=3",
    "train.log_every=3",
]


def test_checkpoints_are_atomic_and_pruned(tmp_path, monkeypatch):
    from sentlab.checkpoints import Checkpoints

    saved = Checkpoints(tmp_path / "run", every=5, keep=2)
    assert saved.latest() is None and saved.due(10) and not saved.due(7)
    for step in (5, 10, 15):
        saved.save({"step": step, "weights": torch.full((3,), float(step))}, step)
    assert [f.name for f in saved.files()] == ["step-000010.pt", "step-000015.pt"]  # the latest 2

    expected = torch.rand(4)  # what the global RNG gives after the last save...
    assert torch.equal(saved.latest()["weights"], torch.full((3,), 15.0))
    assert torch.equal(torch.rand(4), expected)  # ...and gives again once that checkpoint is loaded

    def interrupted(obj, path):  # a write that dies half-way
        open(path, "wb").write(b"half")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", interrupted)
    with pytest.raises(OSError):
        saved.save({"step": 20}, 20)
    assert [f.name for f in saved.files()] == ["step-000010.pt", "step-000015.pt"]  # no half file under a real name
    assert saved.latest()["step"] == 15
    saved.remove()
    assert not (tmp_path / "run").exists()


def _start(args, runs_dir):
    return subprocess.Popen(
        [sys.executable, "-m", "sentlab.train", *args, f"runs_dir={runs_dir}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _stop_after_first_checkpoint(process, runs_dir, signum) -> tuple[int, str]:
    """Wait for the first checkpoint file, send `signum`, wait for the exit: (exit code, stderr)."""
    deadline = time.monotonic() + 240
    while not list(runs_dir.glob("checkpoints/*/step-*.pt")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    process.send_signal(signum)
    _, err = process.communicate(timeout=240)
    return process.returncode, err


def test_sigterm_stops_at_a_checkpoint_and_resume_equals_an_uninterrupted_run(
    tiny_models, train, store, runs_dir, capsys
):
    args = [*tiny_args(tiny_models, "bert"), *LONG]
    code, err = _stop_after_first_checkpoint(_start(args, runs_dir), runs_dir, signal.SIGTERM)
    (stopped,) = all_runs(store())
    run_id = stopped.info.run_id
    assert code == 143
    assert stopped.info.status == "KILLED"
    line = f"resume with: python -m sentlab.train resume={run_id} runs_dir={runs_dir}"
    assert err.strip().splitlines() == [err.strip()] and err.startswith("sentlab: stopped by SIGTERM at epoch ")
    assert err.strip().endswith(f"checkpoint saved; {line}"), err
    assert stopped.data.tags["sentlab.resume_command"] == line.removeprefix("resume with: ")

    train(f"resume={run_id}")  # the command the stop printed
    (resumed,) = all_runs(store())
    assert resumed.info.run_id == run_id and resumed.info.status == "FINISHED"
    assert "sentlab.resume_command" not in resumed.data.tags
    client = store()
    epochs = [m.step for m in client.get_metric_history(run_id, "epoch/val_f1_macro")]
    assert epochs == [1, 2]  # each epoch once
    steps = [m.step for m in client.get_metric_history(run_id, "train_loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 48  # steps continue, none twice
    assert not (runs_dir / "checkpoints" / run_id).exists()  # a FINISHED run's checkpoints are dropped

    train(*args)  # the same config, never interrupted
    (fresh,) = [r for r in all_runs(store()) if r.info.run_id != run_id]
    # Same batches (epoch_order) and same dropout masks (RNG states restored): equal to 1e-6 on CPU. Without the
    # RNG states restored, test_loss differs in the third decimal.
    for key in ("test_loss", "test_accuracy", "test_f1_macro", "val_loss", "val_f1_macro", "kept_epoch"):
        assert resumed.data.metrics[key] == pytest.approx(fresh.data.metrics[key], abs=1e-6), key

    capsys.readouterr()
    train(f"resume={run_id}")  # FINISHED: nothing to do
    assert f"resume: run {run_id} (" in capsys.readouterr().out and len(all_runs(store())) == 2
    with pytest.raises(SystemExit) as exit_info:
        train("resume=0123456789abcdef")
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("sentlab: error: resume: no run 0123456789abcdef in ")


def test_sigkill_then_the_same_command_resumes_instead_of_duplicating(tiny_models, train, store, runs_dir):
    args = [*tiny_args(tiny_models, "bert"), *LONG, "train.epochs=1"]
    code, _ = _stop_after_first_checkpoint(_start(args, runs_dir), runs_dir, signal.SIGKILL)
    assert code == -signal.SIGKILL
    (dead,) = all_runs(store())
    assert dead.info.status == "RUNNING"  # nobody could close it

    train(*args)
    (run,) = all_runs(store())
    assert run.info.run_id == dead.info.run_id and run.info.status == "FINISHED"
    assert "logs/resume-" in str([a.path for a in store().list_artifacts(run.info.run_id, "logs")])


def _sweep(runs):
    (parent,) = [r for r in runs if r.data.tags.get("sentlab.sweep") == "parent"]
    return parent, {r.info.run_name: r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id}


def test_a_stopped_sweep_continues_its_parent_when_rerun(tiny_models, train, store, runs_dir, capsys):
    args = ["-m", *tiny_args(tiny_models, "bert"), *LONG, "train.epochs=1", "lora.r=2,4"]
    code, err = _stop_after_first_checkpoint(_start(args, runs_dir), runs_dir, signal.SIGINT)
    assert code == 130 and "sentlab: stopped by SIGINT" in err
    parent, children = _sweep(all_runs(store()))
    assert parent.info.status == "KILLED"
    assert list(children) == ["lora.r=2"] and children["lora.r=2"].info.status == "KILLED"  # the sweep stopped
    command = children["lora.r=2"].data.tags["sentlab.resume_command"]
    assert command == "python -m sentlab.train " + " ".join([*args, f"runs_dir={runs_dir}"])  # the sweep's own

    train(*args)  # the same sweep command
    parent2, children2 = _sweep(all_runs(store()))
    assert parent2.info.run_id == parent.info.run_id and parent2.info.status == "FINISHED"
    assert sorted(children2) == ["lora.r=2", "lora.r=4"]
    assert all(r.info.status == "FINISHED" for r in children2.values())
    assert children2["lora.r=2"].info.run_id == children["lora.r=2"].info.run_id  # resumed, in its own run
    assert "sweep: continuing MLflow parent run" in capsys.readouterr().out


def test_patience_stops_early(tiny_models, train, store):
    # lr so small that validation never improves after the first epoch
    train(*tiny_args(tiny_models, "bert"), *FAST, "train.epochs=5", "train.patience=2", "train.lr=1e-12")
    (run,) = all_runs(store())
    assert run.data.metrics["stopped_epoch"] == 3 and run.data.metrics["kept_epoch"] == 1
    assert [m.step for m in store().get_metric_history(run.info.run_id, "epoch/val_f1_macro")] == [1, 2, 3]


def test_a_running_run_is_dead_only_when_its_process_is_gone_from_this_host():
    import os
    import socket
    from types import SimpleNamespace

    from sentlab.runs import is_alive

    def run(status, host, pid):
        return SimpleNamespace(
            info=SimpleNamespace(status=status),
            data=SimpleNamespace(tags={"sentlab.host": host, "sentlab.pid": str(pid)}),
        )

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    here = socket.gethostname()
    assert is_alive(run("RUNNING", here, os.getpid())) is True
    assert is_alive(run("RUNNING", here, gone.pid)) is False
    assert is_alive(run("RUNNING", "another-host", gone.pid)) is None  # cannot tell: left alone
    assert is_alive(run("KILLED", here, os.getpid())) is False
