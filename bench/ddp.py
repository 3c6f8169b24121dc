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
SETUPS = {  # name: (overrides, extra environment)
    "1 process (2 threads), batch 16": (["train.batch_size=16"], {}),
    "1 process (1 thread), batch 16": (["train.batch_size=16"], {"OMP_NUM_THREADS": "1"}),
    "2 processes (1 thread each), batch 8 each": (["train.batch_size=8", "train.num_processes=2"], {}),
}


def one(name: str, overrides: list[str], env: dict, runs: Path) -> dict:
    import mlflow

    tag = str(list(SETUPS).index(name))
    args = [*COMMON, *overrides, f"run_name=p{tag}", f"runs_dir={runs}"]
    load, start = os.getloadavg()[0], time.perf_counter()
    subprocess.run([sys.executable, "-m", "sentlab.train", *args], cwd=REPO, env={**ENV, **env}, check=True,
                   stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    client = mlflow.MlflowClient(f"sqlite:///{runs}/mlflow.db")
    (run,) = client.search_runs([client.get_experiment_by_name("sentlab").experiment_id],
                                filter_string=f"attributes.run_name = 'p{tag}'")
    m = run.data.metrics
    return {"args": " ".join([*(f"{k}={v}" for k, v in env.items()), *overrides]), "wall": wall, "train": m["train_time_s"], "rate": 2 * 450 / m["train_time_s"],
            "val": m["val_f1_macro"], "test": m["test_accuracy"], "load": (load + os.getloadavg()[0]) / 2}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        results = {name: one(name, overrides, env, Path(tmp)) for name, (overrides, env) in SETUPS.items()}
    rows = "\n".join(f"| {name} | `{r['args']}` | {r['train']:.1f} | {r['rate']:.1f} | {r['wall']:.1f} | "
                     f"{r['val']:.4f} | {r['test']:.4f} | {r['load']:.1f} |" for name, r in results.items())
    OUT.write_text(f"""# One run in 2 DDP processes on the CPU

```bash
python -m bench.ddp      # about 5 minutes on 2 busy cores
```

Machine: {machine()}. Each rank gets cores // N threads.

MiniLM + LoRA on the demo data (450 train rows, 2 epochs, max length 64), the same effective batch (16) both ways.
`train_time_s` is training plus per-epoch validation (rank 0 alone validates); examples/s = 900 / train_time_s.

| setup | overrides | train_time_s | train examples/s | wall (s) | val_f1_macro | test_accuracy | load avg |
|---|---|---|---|---|---|---|---|
{rows}

{{NOTES}}
""")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
