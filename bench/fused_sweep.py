"""The 9-job LoRA grid (lora.r=4,8,16 x train.lr=5e-4,1e-3,2e-3) on SST-2 with MiniLM, one epoch, four ways:
serial (Hydra's basic launcher), `hydra/launcher=joblib hydra.launcher.n_jobs=2`, `hydra/launcher=fused` (a group
of 8, then the 9th job alone) and `hydra/launcher=fused hydra.launcher.max_members=3` (3 groups of 3).

    python -m bench.fused_sweep              # 3,200 train rows, dev (872) as val, the test set: writes its
                                             # table into docs/benchmarks/fused_sweep.md (between markers)
    python -m bench.fused_sweep --quick      # 320 train rows, 128 val, 128 test, max_length 64: prints only

Each sweep is the real command (`python -m sentlab.train -m ...`) in a fresh process, into a fresh runs folder,
in one sitting, one after another. Reported: wall time of the whole sweep; train examples/s (the grid's train
rows over the wall time); training time (the runs' train_time_s summed, once per fused group: for joblib two
jobs train at once, so it exceeds the wall time); the fused groups' phases (built, trained, tested, logged) from
their log lines; peak memory (the largest sum of the resident memory of the sweep's processes, sampled
every 0.2 s: for joblib, the parent and its workers together); each job's dev accuracy (val_accuracy: dev.tsv is
the val split here) read back from MLflow.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "fused_sweep.md"
SST2 = os.environ.get("SENTLAB_BENCH_SST2", str(REPO.parent / "shared" / "data" / "sst2"))
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
GRID = ["lora.r=4,8,16", "train.lr=5e-4,1e-3,2e-3"]
LAUNCHERS = {
    "serial": [],
    "joblib n_jobs=2": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
    "fused": ["hydra/launcher=fused"],  # max_members=8: a group of 8 jobs, then the 9th alone
    "fused max_members=3": ["hydra/launcher=fused", "hydra.launcher.max_members=3"],  # 3 groups of 3
}
PHASES = re.compile(r"fused group \w+ of \d+: (.*)")  # sentlab.fused_pipeline's line: "built 2.1 s, trained ..."
FULL = {"rows": 3200, "val": None, "test": None, "max_length": 128}
RESULTS = ("<!-- results: bench/fused_sweep.py writes between these lines -->", "<!-- end of results -->")
QUICK = {"rows": 320, "val": 128, "test": 128, "max_length": 64}


def job_args(size: dict) -> list[str]:
    caps = [f"data.max_samples.{split}={size[split]}" for split in ("val", "test") if size[split]]
    return [
        "data=sst2",
        f"data.dir={SST2}",
        f"data.max_samples.train={size['rows']}",
        *caps,
        f"train.max_length={size['max_length']}",
        "train.epochs=1",
        "train.batch_size=32",
    ]


def peak_rss_mb(pid: int, stop: threading.Event, out: list) -> None:
    """The largest sum of resident memory over the process tree of `pid`, sampled until `stop` is set."""
    import psutil

    peak = 0
    root = psutil.Process(pid)
    while not stop.is_set():
        try:
            procs = [root, *root.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
        except psutil.Error:
            pass
        time.sleep(0.2)
    out.append(peak / 2**20)


def run_sweep(name: str, size: dict, runs_dir: Path) -> dict:
    cmd = [
        sys.executable,
        "-m",
        "sentlab.train",
        "-m",
        *GRID,
        *job_args(size),
        *LAUNCHERS[name],
        f"runs_dir={runs_dir}",
    ]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=REPO, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    stop, peak = threading.Event(), []
    sampler = threading.Thread(target=peak_rss_mb, args=(proc.pid, stop, peak))
    sampler.start()
    err, _ = proc.communicate()
    wall = time.perf_counter() - start
    stop.set()
    sampler.join()
    if proc.returncode:
        raise SystemExit(f"{name} sweep failed ({proc.returncode}):\n{err[-3000:]}")
    accuracy, train_s = read_runs(runs_dir)
    return {"wall_s": wall, "peak_mb": peak[0], "accuracy": accuracy, "train_s": train_s, "phases": phases(err)}


def phases(output: str) -> dict[str, float]:
    """Seconds per phase summed over the sweep's fused groups (built, trained, tested, logged), from their log lines."""
    total: dict[str, float] = {}
    for match in PHASES.finditer(output):
        for part in match.group(1).split(", "):
            name, seconds, _ = part.split(" ")
            total[name] = total.get(name, 0.0) + float(seconds)
    return total


def read_runs(runs_dir: Path) -> tuple[dict[str, float], float]:
    """Each job's dev accuracy, and the sum of the jobs' train_time_s (a fused group's members each log the
    group's training time: it counts once per group)."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("sentlab")
    runs = client.search_runs([experiment.experiment_id], filter_string="attributes.status = 'FINISHED'")
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    per_group = {
        r.data.tags.get("sentlab.fused_group", r.info.run_id): r.data.metrics["train_time_s"] for r in children
    }
    return {r.info.run_name: r.data.metrics["val_accuracy"] for r in children}, sum(per_group.values())


def report(results: dict, size: dict, load: str, command: str) -> str:
    serial = results["serial"]["wall_s"]
    examples = size["rows"] * 9
    lines = [
        f"Command: `{command}`; load average before: {load}"
        + (" (above 1 before the benchmark began: other work was running)." if float(load.split()[0]) > 1 else "."),
        "",
        "| launcher | wall time (s) | x serial | training, summed (s) | train examples/s | peak memory (MB) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| {name} | {r['wall_s']:.0f} | {r['wall_s'] / serial:.2f} | {r['train_s']:.0f} | "
            f"{examples / r['wall_s']:.1f} | {r['peak_mb']:.0f} |"
        )
    for name, r in results.items():
        if r["phases"]:
            where = ", ".join(f"{phase} {seconds:.0f} s" for phase, seconds in r["phases"].items())
            lines.append(f"\n{name}: its groups' time (sentlab.fused_pipeline's log line, summed): {where}.")
    jobs = sorted(results["serial"]["accuracy"])
    lines += ["", "Dev accuracy (val_accuracy) per job:", "", "| job | " + " | ".join(results) + " |"]
    lines.append("|---|" + "---:|" * len(results))
    for job in jobs:
        cells = [f"{r['accuracy'].get(job, float('nan')):.4f}" for r in results.values()]
        lines.append(f"| {job} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small data: a check that it runs, prints only")
    parser.add_argument("--out", type=Path, default=None, help=f"write the table here (default: {OUT} unless --quick)")
    args = parser.parse_args()
    size = QUICK if args.quick else FULL
    load = Path("/proc/loadavg").read_text().split()[:3]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in LAUNCHERS:
            results[name] = run_sweep(name, size, Path(tmp) / re.sub(r"\W+", "_", name))
            print(f"{name}: {results[name]['wall_s']:.0f} s", file=sys.stderr)
    command = "python -m bench.fused_sweep" + (" --quick" if args.quick else "")
    text = report(results, size, " ".join(load), command)
    print(text)
    out = args.out or (None if args.quick else OUT)
    if out:
        write_results(out, text)


def write_results(out: Path, text: str) -> None:
    """The results between the page's RESULTS markers (the prose around them is kept), or the whole file."""
    page = out.read_text() if out.exists() else ""
    if RESULTS[0] in page and RESULTS[1] in page:
        before, rest = page.split(RESULTS[0], 1)
        text = before + RESULTS[0] + "\n" + text + "\n" + RESULTS[1] + rest.split(RESULTS[1], 1)[1]
    out.write_text(text if text.endswith("\n") else text + "\n")


if __name__ == "__main__":
    main()
