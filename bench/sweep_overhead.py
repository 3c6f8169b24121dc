"""What sentlab adds to each job of a sweep, next to the job's training, and serial against parallel sweeps.

    python -m bench.sweep_overhead            # about 5 minutes on 2 CPU cores; writes docs/benchmarks/sweeps.md

1. Start-up: a fresh `python -c "import sentlab.train, sentlab.pipeline"` (torch, transformers, peft, MLflow),
   paid once per process: once per serial sweep, once per joblib worker, once per job with submitit.
2. Per job, in one process, jobs of a sweep (nested under a parent, resume lookup included) on a tiny random
   BERT and on the packaged MiniLM: Hydra compose; MLflow (every call: run, params, config, per-step metrics,
   confusion plot, adapter upload); data, tokenizer and model loading; training; evaluation.
3. The wall time of one 6-job MiniLM sweep, serial against `hydra/launcher=joblib hydra.launcher.n_jobs=2`.
Medians over the jobs; everything in one invocation so that the ratios compare like with like.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "sweeps.md"
PY = sys.executable
ENV = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true", "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
JOB_ARGS = [
    "train.epochs=1",
    "train.batch_size=16",
    "train.max_length=64",
    "data.max_samples.train=160",
    "data.max_samples.val=48",
    "data.max_samples.test=48",
]
JOBS_PER_MODEL = 4
SWEEP = ["lora.r=4,8,16", "train.lr=1e-3,2e-3"]  # 6 jobs


def startup_s(repeats: int = 3) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([PY, "-c", "import sentlab.train, sentlab.pipeline"], cwd=REPO, env=ENV, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_job(tmp: Path) -> dict:
    """Run in a child process (python -m bench.sweep_overhead --jobs TMP): timings per job, as a dict."""
    import json

    out = subprocess.run(
        [PY, "-m", "bench.sweep_overhead", "--jobs", str(tmp)],
        cwd=REPO,
        env=ENV,
        check=True,
        stdout=subprocess.PIPE,
        text=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _jobs(tmp: Path) -> None:
    """The in-process part: compose and run jobs with the pieces of pipeline.run timed."""
    import contextlib
    import io
    import json

    sys.path.insert(0, str(REPO / "tests"))
    from conftest import _build  # the tests' tiny random models
    from hydra import compose, initialize_config_dir

    from sentlab import pipeline, tracking
    from sentlab.heads.generative import GenerativeHead
    from sentlab.heads.seq_cls import SeqClsHead

    clock: dict[str, float] = {}

    def timed(owner, name, key):
        original = getattr(owner, name)  # an AttributeError here: the function moved, update the patch

        def wrapper(*args, **kwargs):
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                clock[key] = clock.get(key, 0.0) + time.perf_counter() - start

        setattr(owner, name, wrapper)

    timed(pipeline, "fit", "train")
    timed(pipeline, "evaluate", "eval")
    timed(pipeline, "load_data", "load")
    timed(pipeline.backbones, "load_tokenizer", "load")
    timed(pipeline.backbones, "load_model", "load")
    timed(SeqClsHead, "encode", "tokenize")
    timed(GenerativeHead, "encode", "tokenize")
    timed(pipeline.gc, "collect", "free")
    client = tracking.mlflow.MlflowClient  # every MLflow call of a run goes through its client (sentlab.runs)
    for name in (
        "create_run",
        "update_run",
        "set_terminated",
        "log_batch",
        "log_dict",
        "log_artifact",
        "log_artifacts",
        "log_figure",
        "log_inputs",
        "set_tag",
        "delete_tag",
        "search_runs",
        "get_run",
    ):
        timed(client, name, "mlflow")
    timed(tracking, "connect", "mlflow")
    timed(tracking, "git_commit", "mlflow")

    tiny = _build("bert", tmp / "tiny_bert")
    models = {"tiny BERT (hidden 64, 2 layers)": [f"backbone.source={tiny}"], "MiniLM-L6 (22.7M)": []}
    results = {}
    runs_dir = tmp / "runs"
    for label, model_args in models.items():
        rows = []
        for job in range(JOBS_PER_MODEL + 1):  # the first job warms caches up and is not counted
            overrides = [*model_args, *JOB_ARGS, f"train.seed={job}", f"runs_dir={runs_dir}"]
            start = time.perf_counter()
            with initialize_config_dir(config_dir=str(REPO / "sentlab" / "conf"), version_base="1.3"):
                cfg = compose("config", overrides=overrides)
            compose_s = time.perf_counter() - start
            sweep_dir = tmp / "sweep"
            if job == 0:  # a sweep's parent run, as the sweep callback makes it
                tracking.connect(cfg.tracking)
                parent = tracking.mlflow.MlflowClient().create_run(
                    tracking.connect(cfg.tracking), run_name="bench", tags={"sentlab.sweep": "parent"}
                )
                sweep_dir.mkdir(exist_ok=True)
                (sweep_dir / tracking.SWEEP_FILE).write_text(
                    json.dumps({"parent_run_id": parent.info.run_id, "fixed_overrides": []})
                )
            clock.clear()
            start = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                pipeline.run(cfg, overrides=overrides, sweep_dir=str(sweep_dir))
            total = time.perf_counter() - start
            if missed := {"train", "eval", "load", "tokenize", "free", "mlflow"} - set(clock):
                # A patched function that is never called has moved: its time would read 0 without this.
                raise RuntimeError(f"bench.sweep_overhead: nothing timed for {sorted(missed)}: update the patches")
            if job:
                rows.append({"compose": compose_s, "total": total, **clock})
        results[label] = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    print(json.dumps(results))


def sweep_wall(tmp: Path, parallel: bool) -> tuple[float, float]:
    """Wall time of the 6-job sweep and the 1-minute load average at its end."""
    launcher = ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"] if parallel else []
    runs_dir = tmp / ("runs_joblib" if parallel else "runs_serial")
    start = time.perf_counter()
    subprocess.run(
        [PY, "-m", "sentlab.train", "-m", *launcher, *SWEEP, *JOB_ARGS, f"runs_dir={runs_dir}"],
        cwd=REPO,
        env=ENV,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return time.perf_counter() - start, os.getloadavg()[0]


def machine() -> str:
    import torch

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem:.0f} GiB, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}, torch {torch.__version__} (CPU, {torch.get_num_threads()} threads)"
    )


def main() -> None:
    if sys.argv[1:2] == ["--jobs"]:
        return _jobs(Path(sys.argv[2]))
    began, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("start-up ...", flush=True)
        start = startup_s()
        print(f"  {start:.2f} s\nper-job timings ...", flush=True)
        jobs = per_job(tmp)
        print("6-job sweep, serial ...", flush=True)
        serial, serial_load = sweep_wall(tmp, parallel=False)
        print(f"  {serial:.1f} s\n6-job sweep, joblib n_jobs=2 ...", flush=True)
        parallel, parallel_load = sweep_wall(tmp, parallel=True)
        print(f"  {parallel:.1f} s", flush=True)
    write(start, jobs, serial, parallel, time.perf_counter() - began, (serial_load, parallel_load, load))
    print(f"wrote {OUT}")


def write(start: float, jobs: dict, serial: float, parallel: float, bench_s: float, loads: tuple) -> None:
    """loads: the 1-minute load average after the serial sweep, after the joblib sweep, and at the start."""
    labels = list(jobs)
    work = ("load", "tokenize", "train", "eval")  # what any fine-tuning job does; the rest is sentlab's
    for timings in jobs.values():
        timings["rest"] = timings["total"] - sum(timings.get(k, 0.0) for k in ("mlflow", "free", *work))
    rows = [
        ("Hydra compose (before pipeline.run)", "compose"),
        ("MLflow: every call (run, params, config, metrics, plot, adapter)", "mlflow"),
        ("data + tokenizer + model load", "load"),
        ("tokenizing the splits", "tokenize"),
        ("training (1 epoch, 10 steps of 16)", "train"),
        ("evaluation (test; val inside training)", "eval"),
        ("freeing the job's memory (gc.collect)", "free"),
        ("the rest: checks, LoRA wrapping, confusion plot, adapter save", "rest"),
        ("**job total** (pipeline.run)", "total"),
    ]
    lines = [
        "# Sweep overhead: what sentlab adds per job, and serial against parallel sweeps",
        "",
        "```",
        "python -m bench.sweep_overhead      # also part of `make bench`",
        "```",
        "",
        f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d')}; the whole benchmark took "
        f"{bench_s / 60:.1f} min; 1-minute load average when it began: {loads[2]:.1f}. Absolute seconds differ "
        "between machines and runs: compare within this page.",
        "",
        "## Per job",
        "",
        f"Jobs of a sweep (each nested under a parent run, with the resume lookup), {JOBS_PER_MODEL} per model after "
        f"one warm-up job, in one process; medians in seconds. Job: `{' '.join(JOB_ARGS)}` on the demo data. "
        "MLflow time includes the per-step metric logging made from inside training (so it also counts there); "
        "the rest is the job total less the rows above it.",
        "",
        "| | " + " | ".join(labels) + " |",
        "|---|" + "---:|" * len(labels),
    ]
    for text, key in rows:
        lines.append(f"| {text} | " + " | ".join(f"{jobs[label].get(key, 0.0):.2f}" for label in labels) + " |")
    fixed = {
        label: jobs[label]["compose"] + jobs[label]["total"] - sum(jobs[label].get(k, 0.0) for k in work)
        for label in labels
    }
    lines += [
        "| **sentlab's fixed cost per job** (all but load, tokenize, train, evaluate) | "
        + " | ".join(f"**{fixed[label]:.2f}**" for label in labels)
        + " |",
        "| fixed cost / training time | "
        + " | ".join(f"{fixed[label] / max(jobs[label]['train'], 1e-9):.2f}x" for label in labels)
        + " |",
        "",
        f"Start-up, once per process (`import sentlab.train, sentlab.pipeline`: torch, transformers, peft, MLflow; "
        f"median of 3): **{start:.2f} s**. A serial sweep pays it once, a joblib sweep once per worker, "
        "a submitit sweep once per job.",
        "",
        "## A 6-job sweep: serial against joblib with 2 workers",
        "",
        f"`python -m sentlab.train -m {' '.join(SWEEP)} {' '.join(JOB_ARGS)}` (MiniLM), with and without "
        "`hydra/launcher=joblib hydra.launcher.n_jobs=2`; wall time of the whole command, start-up included, "
        "each into a fresh store.",
        "",
        "| launcher | wall time (s) | per job (s) | 1-min load average at its end |",
        "|---|---:|---:|---:|",
        f"| serial (default) | {serial:.1f} | {serial / 6:.1f} | {loads[0]:.1f} |",
        f"| joblib, 2 workers | {parallel:.1f} | {parallel / 6:.1f} | {loads[1]:.1f} |",
        f"| speed-up | {serial / parallel:.2f}x | | |",
        "",
        "A load average above the workers' own (1 serial, 2 with joblib) means other work shared the cores "
        "during that sweep, and the speed-up is then not the launcher's alone.",
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))


if __name__ == "__main__":
    main()
