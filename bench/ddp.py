"""One run in 1 process against 2 DDP processes (train.num_processes=2) at the same effective batch, on this CPU.

    python -m bench.ddp          # a few minutes on 2 CPU cores; writes docs/benchmarks/ddp.md

MiniLM + LoRA on the demo data (450 train rows), 2 epochs, max length 64, effective batch 16: `train.batch_size=16`
in one process against `train.batch_size=8 train.num_processes=2`. Reported: the run's `train_time_s` (training
and per-epoch validation, from MLflow), train examples/s from it, the command's wall time (process start, the
worker's spawn and model load included), and the final val/test metrics, which should agree.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.sweep_overhead import machine

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "ddp.md"
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
COMMON = ["train.epochs=2", "train.max_length=64", "train.device=cpu"]
SETUPS = {"1 process, batch 16": ["train.batch_size=16"],
          "2 processes, batch 8 each": ["train.batch_size=8", "train.num_processes=2"]}


def one(name: str, overrides: list[str], runs: Path) -> dict:
    import mlflow

    args = [*COMMON, *overrides, f"run_name={name}", f"runs_dir={runs}"]
    load, start = os.getloadavg()[0], time.perf_counter()
    subprocess.run([sys.executable, "-m", "sentlab.train", *args], cwd=REPO, env=ENV, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    client = mlflow.MlflowClient(f"sqlite:///{runs}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("sentlab").experiment_id],
                                filter_string=f"attributes.run_name = '{name}'")
    m = run.data.metrics
    return {"args": " ".join(overrides), "wall": wall, "train": m["train_time_s"], "rate": 2 * 450 / m["train_time_s"],
            "val": m["val_f1_macro"], "test": m["test_accuracy"], "load": (load + os.getloadavg()[0]) / 2}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: one(name, overrides, Path(tmp)) for name, overrides in SETUPS.items()}
    rows = "\n".join(f"| {name} | `{r['args']}` | {r['train']:.1f} | {r['rate']:.1f} | {r['wall']:.1f} | "
                     f"{r['val']:.4f} | {r['test']:.4f} | {r['load']:.1f} |" for name, r in results.items())
    OUT.write_text(f"""# One run in 2 DDP processes on the CPU

```bash
python -m bench.ddp      # part of make bench
```

Machine: {machine()}. Each rank gets cores // N threads.

MiniLM + LoRA on the demo data (450 train rows, 2 epochs, max length 64), the same effective batch (16) both ways.
`train_time_s` is training plus per-epoch validation (rank 0 alone validates); examples/s = 900 / train_time_s.

| setup | overrides | train_time_s | train examples/s | wall (s) | val_f1_macro | test_accuracy | load avg |
|---|---|---|---|---|---|---|---|
{rows}

On 2 cores a second process brings no speed: the two ranks share the same cores (each gets one thread), every
step adds a gradient all-reduce and a loss exchange over gloo, and the worker's spawn and model load add to
the wall time. The load average column says how much other work shared the machine. DDP pays where each rank has
hardware of its own: one GPU per process, or a CPU with many more cores than one process can keep busy. The
metrics differ between the two only by float summation order (the test suite checks this to 1e-5).
""")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
