"""What the default run reaches on the demo data, over seeds, and whether compare tells settings apart.

    python -m bench.demo_data            # about 10 minutes on 2 idle CPU cores; writes docs/benchmarks/demo_data.md
    python -m bench.demo_data --quick    # 2 runs (epochs 2 and 5, seed 42), printed only

One sweep of the default run (MiniLM + LoRA on the demo data) with `sweep=seeds` (seeds 1, 2, 3) over LoRA rank
(4, 16) and epochs (2, 5): 12 runs in a fresh store; then `python -m sentlab.compare` on it, whose repeats table
(mean ± std and 95 % interval over the seeds) and paired bootstrap tests go into the doc as printed; and each
run's score on the 54 plain sentences of tests/data/plain_sentences.csv (written independently of the demo data).
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "demo_data.md"
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
SWEEP = ["-m", "sweep=seeds", "lora.r=4,16", "train.epochs=2,5"]
QUICK = ["-m", "train.epochs=2,5"]
PLAIN = REPO / "tests" / "data" / "plain_sentences.csv"


def plain_sentences(runs_dir: str) -> str:
    """One line per finished run: its name, the plain sentences it gets right, its test accuracy."""
    import csv

    import mlflow

    from sentlab import mlflow_model

    mlflow_model.use_store(f"sqlite:///{runs_dir}/mlflow.db")
    client = mlflow.MlflowClient()
    with open(PLAIN, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    experiment = client.get_experiment_by_name("sentlab").experiment_id
    lines = []
    for run in client.search_runs([experiment], filter_string="attributes.status = 'FINISHED'"):
        if "lora.r" not in run.data.params:  # the sweep's parent
            continue
        labels = mlflow_model.load(run.info.run_id).predict([row["text"] for row in rows])["label"]
        right = sum(label == row["label"] for label, row in zip(labels, rows))
        accuracy = run.data.metrics["test_accuracy"]
        lines.append(f"{run.info.run_name:<40} {right}/{len(rows)} plain sentences right, test accuracy {accuracy:.4f}")
    return "\n".join(sorted(lines))


def main() -> None:
    quick = "--quick" in sys.argv[1:]
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "sentlab.train", *(QUICK if quick else SWEEP), f"runs_dir={tmp}"],
            cwd=REPO,
            env=ENV,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        plain = plain_sentences(tmp)
        if quick:
            print(f"load average {load:.1f} at the start; {wall / 60:.1f} minutes\n{plain}")
            return
        compare = subprocess.run(
            [sys.executable, "-m", "sentlab.compare", "--runs-dir", tmp, "--no-log", "--out", f"{tmp}/compare"],
            cwd=REPO,
            env=ENV,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    repeats = compare[compare.index("repeats over seeds") : compare.index("saved ")].rstrip()
    shared = " (a machine shared with other work: the wall time is long)" if load > (os.cpu_count() or 1) else ""
    OUT.write_text(f"""# The demo data: what the default run reaches, over seeds

Command: `python -m bench.demo_data` (`make bench`), which runs

```
python -m sentlab.train {" ".join(SWEEP)}
python -m sentlab.compare
```

on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the start{shared},
{time.strftime("%Y-%m-%d")}: 12 runs of MiniLM + LoRA on the synthetic demo data (450 train, 120 val, 120 test
rows; 5 % label noise, so about 0.95 is the ceiling), in {wall / 60:.1f} minutes.

```
{repeats}
```

Each run on the 54 plain sentences of `tests/data/plain_sentences.csv` (written independently of the
generator; `python -m sentlab.predict RUN --file tests/data/plain_sentences.csv`):

```
{plain}
```

The default run is `lora.r=8 train.epochs=5` with seed 42; chance is 0.33. The intervals say how much a setting
varies over seeds; the paired bootstrap says whether the best setting beats another on these test examples. It is
the more sensitive of the two, since both settings meet the same examples: two settings whose intervals overlap
can still differ clearly (an interval of the difference that excludes 0, a small p).
""")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
