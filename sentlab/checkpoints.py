"""Checkpoints and stop signals: what lets a run be killed or preempted and go on later from where it was.

A checkpoint is one file, `<runs_dir>/checkpoints/<run_id>/step-000120.pt`, written to a temporary name and
renamed (a reader never sees half a file); only the latest `keep` are kept. training.fit decides what goes in
it (trainable weights, optimizer, scheduler, RNG states, position in the epoch, early-stopping state) and when.

SIGTERM (SLURM preemption, Kubernetes, `timeout`) and SIGINT (Ctrl-C) only set a flag while a run trains:
the loop finishes its optimizer step, saves a checkpoint and raises Stopped, which ends the run KILLED.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import sys
import threading
from pathlib import Path

import numpy as np
import torch


class Stopped(BaseException):
    """A run stopped by a signal after saving a checkpoint: not an error (like KeyboardInterrupt)."""

    def __init__(self, signum: int, epoch: int, step: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} at epoch {epoch}, step {step}")
        self.signum, self.epoch, self.step = signum, epoch, step
        self.command: str | None = None  # what continues it (Run.closing sets it)

    @property
    def exit_code(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT

    def exit(self):
        """End the process as a stop ends it: one line on stderr with the resume command, the signal's code."""
        print(f"sentlab: {self}; checkpoint saved; resume with: {self.command}", file=sys.stderr)
        sys.exit(self.exit_code)


def folder(runs_dir: str, run_id: str) -> Path:
    return Path(runs_dir) / "checkpoints" / run_id


class Checkpoints:
    """A run's checkpoint folder: save every `every` optimizer steps (None: only at epoch ends and on a
    signal), keep the latest `keep`; `stop_signal` is set by catch_signals()."""

    def __init__(self, path: Path, every: int | None, keep: int):
        self.path, self.every, self.keep = Path(path), every, keep
        self.stop_signal: int | None = None

    def files(self) -> list[Path]:
        return sorted(self.path.glob("step-*.pt"))  # zero-padded steps: sorted by name is sorted by step

    def due(self, step: int) -> bool:
        return bool(self.every) and step % self.every == 0

    def save(self, state: dict, step: int) -> Path:
        """Write `state` with the RNG states atomically (temp file + rename), then prune to the latest `keep`."""
        self.path.mkdir(parents=True, exist_ok=True)
        target = self.path / f"step-{step:06d}.pt"
        temporary = target.with_suffix(".tmp")
        torch.save({**state, "rng": rng_states()}, temporary)
        os.replace(temporary, target)
        for old in self.files()[: -self.keep]:
            old.unlink()
        return target

    def latest(self) -> dict | None:
        """The latest checkpoint, RNG states restored; None if there is none."""
        state = self.read()
        if state is not None:
            set_rng_states(state.pop("rng"))
        return state

    def read(self) -> dict | None:
        """The latest checkpoint as saved (its RNG states under "rng", not restored); None if there is none."""
        files = self.files()
        if not files:
            return None
        # sentlab's own file; weights_only would refuse numpy's RNG state
        return torch.load(files[-1], map_location="cpu", weights_only=False)

    def remove(self) -> None:
        """Drop the checkpoints of a run that finished: its adapter is in MLflow."""
        for file in self.path.glob("step-*"):
            file.unlink()
        with contextlib.suppress(OSError):
            self.path.rmdir()

    @contextlib.contextmanager
    def catch_signals(self):
        """While inside, SIGTERM and SIGINT set `stop_signal` instead of ending the process; a second signal
        acts as usual (the handlers are put back at the first one)."""
        if threading.current_thread() is not threading.main_thread():  # Python handles signals there only
            yield self
            return
        previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}

        def handler(signum, frame):
            self.stop_signal = signum
            for s, h in previous.items():
                signal.signal(s, h)

        for s in previous:
            signal.signal(s, handler)
        try:
            yield self
        finally:
            for s, h in previous.items():
                signal.signal(s, h)


def rng_states() -> dict:
    """This process's RNG states (torch, CUDA, numpy, Python): what a checkpoint restores."""
    return {
        "torch": torch.get_rng_state(),
        "numpy": np.random.get_state(),
        "python": random.getstate(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
    }


def set_rng_states(states: dict) -> None:
    torch.set_rng_state(states["torch"])
    np.random.set_state(states["numpy"])
    random.setstate(states["python"])
    if states["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
