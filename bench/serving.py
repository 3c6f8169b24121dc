"""What a run's MLflow model costs to log, and how fast `mlflow models serve` answers with it.

    python -m bench.serving            # about 2 minutes on 2 CPU cores; writes docs/benchmarks/serving.md

1. Logging, per run: MiniLM runs on the demo data in one process (after a warm-up run), with
   sentlab.mlflow_model.log_model (the pyfunc: config, adapter, signature, input example) and log_inputs (the
   splits as MLflow datasets) timed; and log_inputs on the whole of SST-2 (67,349 train rows).
2. Serving: a MiniLM run trained on a slice of SST-2, served by `mlflow models serve --env-manager local`
   on 127.0.0.1; POST /invocations one request at a time with single SST-2 test sentences and with batches
   of 32: requests/s and p50/p95 latency.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
OUT = REPO / "docs" / "benchmarks" / "serving.md"
SST2 = REPO.parent / "shared" / "data" / "sst2"
RUN_ARGS = [
    "train.epochs=1",
    "train.batch_size=16",
    "train.max_length=64",
    "data.max_samples.train=160",
    "data.max_samples.val=48",
    "data.max_samples.test=48",
]
SERVE_ARGS = [
    "data=sst2",
    f"data.dir={SST2}",
    "data.max_samples.train=800",
    "data.max_samples.val=200",
    "train.epochs=1",
    "train.max_length=64",
]
RUNS = 3
SINGLE, BATCHES, BATCH = 200, 30, 32


def _compose(overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "sentlab" / "conf"), version_base="1.3"):
        return compose("config", overrides=overrides)


def _run(overrides: list[str]) -> str:
    from sentlab import pipeline

    with contextlib.redirect_stdout(io.StringIO()):
        return pipeline.run(_compose(overrides), overrides=overrides)["run_id"]


def logging_cost(tmp: Path) -> dict:
    """Medians over RUNS MiniLM runs of the seconds log_model and log_inputs take, the run's total, and sizes."""
    from sentlab import mlflow_model
    from sentlab.runs import Run, Store

    clock: dict[str, float] = {}
    for name in ("log_model", "log_inputs"):
        original = getattr(mlflow_model, name)

        def timed(*args, _original=original, _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                clock[_name] = time.perf_counter() - start

        setattr(mlflow_model, name, timed)
    rows = []
    for i in range(RUNS + 1):  # the first run warms caches up and is not counted
        clock.clear()
        start = time.perf_counter()
        _run([*RUN_ARGS, f"train.seed={i}", f"runs_dir={tmp / 'runs'}"])
        if i:
            rows.append({**clock, "total": time.perf_counter() - start})
    result = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
    models = list((tmp / "runs" / "mlartifacts" / "models").iterdir())
    result["model_mb"] = statistics.median(
        sum(f.stat().st_size for f in m.rglob("*") if f.is_file()) / 2**20 for m in models
    )

    from sentlab.data import load_data

    cfg = _compose(["data=sst2", f"data.dir={SST2}", f"runs_dir={tmp / 'runs'}"])
    data = load_data(cfg.data)
    run = Run.new(Store.of(cfg.tracking), "log_inputs on SST-2", {})
    with run.closing():
        start = time.perf_counter()
        mlflow_model.log_inputs(run, cfg, data)
        result["inputs_sst2"] = time.perf_counter() - start
    result["sst2_rows"] = sum(len(s) for s in data.splits.values())
    return result


def serving(tmp: Path) -> dict:
    """Latencies (s) of single texts and batches of BATCH through the served model."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_serving import invoke, served

    from sentlab.data import load_data

    runs_dir = tmp / "serve_runs"
    run_id = _run([*SERVE_ARGS, f"runs_dir={runs_dir}"])
    texts = load_data(_compose(["data=sst2", f"data.dir={SST2}"]).data).splits["test"]["text"]
    store = f"sqlite:///{runs_dir}/mlflow.db"
    result = {"texts_chars": statistics.mean(len(t) for t in texts[:SINGLE])}
    with served(f"runs:/{run_id}/model", store, runs_dir / "serve.log") as url:
        result["served"] = timings(lambda b: invoke(url, b), texts)
    return result


def timings(call, texts: list[str]) -> dict[str, list[float]]:
    """Seconds per call of SINGLE single texts and of BATCHES batches of BATCH, one at a time, after a warm-up."""
    runs = {
        "single": [[t] for t in texts[:SINGLE]],
        "batch": [texts[i * BATCH : (i + 1) * BATCH] for i in range(BATCHES)],
    }
    result = {}
    for kind, batches in runs.items():
        call(batches[0])
        result[kind] = []
        for batch in batches:
            start = time.perf_counter()
            call(batch)
            result[kind].append(time.perf_counter() - start)
    return result


def _row(name: str, times: list[float], texts_per_request: int) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    rps = len(times) / sum(times)
    return (
        f"| {name} | {len(times)} | {rps:.1f} | {rps * texts_per_request:.0f} | "
        f"{statistics.median(times) * 1000:.0f} | {p95 * 1000:.0f} |"
    )


def write(cost: dict, serve: dict, bench_s: float, loads: tuple[float, float]) -> None:
    from bench.sweep_overhead import machine

    lines = [
        "# Serving a run's model, and what logging it costs per run",
        "",
        "```",
        "python -m bench.serving      # also part of `make bench`",
        "```",
        "",
        f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d')}; the whole benchmark took {bench_s / 60:.1f} "
        f"min; 1-minute load average when it began: {loads[0]:.1f}, at its end: {loads[1]:.1f} (above 1, other "
        "work shared the cores). Absolute figures differ between machines and runs: compare within this page.",
        "",
        "## Logging the model and the data sets, per run",
        "",
        f"MiniLM runs on the demo data (`{' '.join(RUN_ARGS)}`), {RUNS} after a warm-up run, in one process; medians.",
        "",
        "| | seconds |",
        "|---|---:|",
        f"| `mlflow_model.log_model`: the pyfunc (config + adapter copied from the run, signature, input example) "
        f"| {cost['log_model']:.2f} |",
        f"| `mlflow_model.log_inputs`: train/val/test as MLflow datasets (digest, rows, source) "
        f"| {cost['log_inputs']:.2f} |",
        f"| the whole run (pipeline.run) | {cost['total']:.2f} |",
        f"| `log_inputs` on all of SST-2 ({cost['sst2_rows']:,} rows) | {cost['inputs_sst2']:.2f} |",
        "",
        f"Model size in the store: {cost['model_mb']:.1f} MB a run (the base is referenced by its source, not "
        "copied; `tracking.log_model=merged` stores the full model instead).",
        "",
        "## `mlflow models serve`",
        "",
        f"A MiniLM run (`{' '.join(SERVE_ARGS).replace(str(SST2), '../shared/data/sst2')}`) served with "
        "`mlflow models serve -m runs:/RUN_ID/model --env-manager local -h 127.0.0.1` (one uvicorn worker), the "
        "client in another process on the same machine, one request at a time (after one warm-up request); "
        f"SST-2 test sentences (mean {serve['texts_chars']:.0f} characters).",
        "",
        "| | requests | requests/s | texts/s | p50 latency (ms) | p95 latency (ms) |",
        "|---|---:|---:|---:|---:|---:|",
        _row("served, single text", serve["served"]["single"], 1),
        _row(f"served, batch of {BATCH}", serve["served"]["batch"], BATCH),
        "",
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    began, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        print("logging cost per run ...", flush=True)
        cost = logging_cost(Path(tmp))
        print(f"  log_model {cost['log_model']:.2f} s, log_inputs {cost['log_inputs']:.2f} s\nserving ...", flush=True)
        serve = serving(Path(tmp))
    write(cost, serve, time.perf_counter() - began, (load, os.getloadavg()[0]))
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
