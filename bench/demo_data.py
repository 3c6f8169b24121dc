"""What the default run reaches on the demo data, over seeds, and whether compare tells settings apart.

    python -m bench.demo_data            # about 10 minutes on 2 CPU cores; writes docs/benchmarks/demo_data.md

One sweep of the default run (MiniLM + LoRA on the demo data) with `sweep=seeds` (seeds 1, 2, 3) over LoRA rank
(4, 16) and epochs (2, 5): 12 runs in a fresh store; then `python -m sentlab.compare` on it, whose repeats table
(mean ± std and 95 % interval over the seeds) and paired bootstrap tests go into the doc as printed.
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


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        load = os.getloadavg()[0]
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "sentlab.train", *SWEEP, f"runs_dir={tmp}"],
            cwd=REPO,
            env=ENV,
            check=True,
            stdout=subprocess.DEVNULL,
        )
        wall = time.perf_counter() - start
        compare = subprocess.run(
            [sys.executable, "-m", "sentlab.compare", "--runs-dir", tmp, "--no-log", "--out", f"{tmp}/compare"],
            cwd=REPO,
            env=ENV,
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    repeats = compare[compare.index("repeats over seeds") : compare.index("saved ")].rstrip()
    OUT.write_text(f"""# The demo data: what the default run reaches, over seeds

Command: `python -m bench.demo_data` (`make bench`), which runs

```
python -m sentlab.train {" ".join(SWEEP)}
python -m sentlab.compare
```

on {platform.processor() or platform.machine()}, {os.cpu_count()} cores, load average {load:.1f} at the start,
{time.strftime("%Y-%m-%d")}: 12 runs of MiniLM + LoRA on the synthetic demo data (450 train, 120 val, 120 test
rows; 5 % label noise, so about 0.95 is the ceiling), in {wall / 60:.1f} minutes.

```
{repeats}
```

The default run is `lora.r=8 train.epochs=5` with seed 42; chance is 0.33. The intervals say how much a setting
varies over seeds; the paired bootstrap says whether the best setting beats another on these test examples. It is
the more sensitive of the two, since both settings meet the same examples: two settings whose intervals overlap
can still differ clearly (an interval of the difference that excludes 0, a small p).
""")
    print(OUT.read_text())


if __name__ == "__main__":
    main()
