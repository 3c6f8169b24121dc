"""What a run's MLflow model costs to log, and how fast `mlflow models serve` answers with it.

    python -m bench.serving            # about 5 minutes on 2 CPU cores; writes docs/benchmarks/serving.md
    python -m bench.serving --quick    # serving only, a smaller run and fewer requests (about 2 minutes)

1. Logging, per run: MiniLM runs on the demo data in one process (after a warm-up run), with
   sentlab.mlflow_model.log_model (the pyfunc: config, adapter, signature, input example) and log_inputs (the
   splits as MLflow datasets) timed; and log_inputs on the whole of SST-2 (67,349 train rows).
2. Serving: a MiniLM run trained on a slice of SST-2, answered five ways side by side in one sitting, one
   request at a time, single SST-2 test sentences and batches of 32 (requests/s, p50/p95 latency): a plain
   transformers forward of the merged weights (fp32, what the model itself costs), ONNX Runtime on the
   exported model.onnx (sentlab.export --onnx), the pyfunc in-process (mlflow.pyfunc.load_model, as served, and
   in fp32 with the adapter merged), and `mlflow models serve --env-manager local` on 127.0.0.1 (PyTorch, and ONNX
   Runtime with SENTLAB_SERVE_ONNX=1). The ways take turns
   on each request, so that other work on the machine slows them alike.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import subprocess
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
    "data.max_samples.test=200",  # the run's own test pass (the requests take the whole test split)
    "train.epochs=1",
    "train.max_length=64",
]
RUNS = 3
SINGLE, BATCHES, BATCH = 200, 30, 32
QUICK = {"SINGLE": 40, "BATCHES": 6}  # --quick: fewer requests, a smaller run (QUICK_ARGS)
QUICK_ARGS = ["data.max_samples.train=160", "data.max_samples.val=48", "data.max_samples.test=48"]


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


def serving(tmp: Path, quick: bool) -> dict:
    """Seconds per request of each way of answering (see the module's doc), single texts and batches of BATCH."""
    sys.path.insert(0, str(REPO / "tests"))
    from test_serving import invoke, served

    from sentlab import mlflow_model
    from sentlab.data import load_data

    runs_dir = tmp / "serve_runs"
    args = [*_serve_args(quick), f"runs_dir={runs_dir}"]
    # Trained in a process of its own: this one then holds only what it measures (no training left behind).
    subprocess.run([sys.executable, "-m", "sentlab.train", *args], check=True, capture_output=True)
    texts = load_data(_compose(["data=sst2", f"data.dir={SST2}"]).data).splits["test"]["text"]
    store = f"sqlite:///{runs_dir}/mlflow.db"
    mlflow_model.use_store(store)
    (run_id,) = [
        r.info.run_id for r in mlflow_model.mlflow.search_runs(search_all_experiments=True, output_format="list")
    ]
    folder = tmp / "exported"
    # Exported in a process of its own too: after torch.onnx's export, eager PyTorch ran several times slower in
    # the exporting process (measured here).
    export = [sys.executable, "-m", "sentlab.export", run_id, str(folder), "--tracking-uri", store, "--onnx"]
    subprocess.run(export, check=True, capture_output=True)
    ways = _in_process(run_id, folder)
    single, batches = (QUICK["SINGLE"], QUICK["BATCHES"]) if quick else (SINGLE, BATCHES)
    result = {"texts_chars": statistics.mean(len(t) for t in texts[:single])}
    model = f"runs:/{run_id}/model"
    with (
        served(model, store, runs_dir / "serve.log") as url,
        served(model, store, runs_dir / "serve_onnx.log", env={mlflow_model.ONNX_ENV: "1"}) as onnx_url,
    ):
        ways["served"] = lambda b: invoke(url, b)
        ways["served_onnx"] = lambda b: invoke(onnx_url, b)
        result["ways"] = timings(ways, texts, single, batches)
    return result


def _serve_args(quick: bool) -> list[str]:
    """The served run's overrides (--quick: QUICK_ARGS in place of the same keys)."""
    if not quick:
        return SERVE_ARGS
    keys = {a.split("=")[0] for a in QUICK_ARGS}
    return [a for a in SERVE_ARGS if a.split("=")[0] not in keys] + QUICK_ARGS


def _in_process(run_id: str, folder: Path) -> dict:
    """The ways of answering that run in this process, by name: a function of a list of texts each."""
    import mlflow
    import pandas as pd
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sentlab.classifier import merged_for_serving
    from sentlab.onnx_model import OnnxClassifier

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForSequenceClassification.from_pretrained(folder).eval()
    session = OnnxClassifier.session(folder / "model.onnx")
    names = {i.name for i in session.get_inputs()}
    max_length = 64

    def plain(batch):
        with torch.inference_mode():
            encoded = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
            return model(**encoded).logits.softmax(-1)

    def onnx_runtime(batch):
        encoded = tokenizer(batch, padding=True, truncation=True, max_length=max_length, return_tensors="np")
        return session.run(["logits"], {k: v for k, v in encoded.items() if k in names})[0]

    pyfunc = mlflow.pyfunc.load_model(f"runs:/{run_id}/model")
    fp32 = mlflow.pyfunc.load_model(f"runs:/{run_id}/model").unwrap_python_model()
    fp32.classifier.precision = "fp32"
    fp32.classifier = merged_for_serving(fp32.classifier)  # merged (what the pyfunc does where fp32 is chosen)
    return {
        "transformers": plain,
        "onnxruntime": onnx_runtime,
        "pyfunc": lambda b: pyfunc.predict(pd.DataFrame({"text": b})),
        "pyfunc_fp32": lambda b: fp32.predict(None, pd.DataFrame({"text": b})),
    }


def timings(ways: dict, texts: list[str], single: int, batches: int) -> dict[str, dict[str, list[float]]]:
    """Seconds per call, by way and kind (single texts, batches of BATCH), after a warm-up call each; the ways
    take turns on each request."""
    requests = {
        "single": [[t] for t in texts[:single]],
        "batch": [texts[i * BATCH : (i + 1) * BATCH] for i in range(batches)],
    }
    result = {name: {kind: [] for kind in requests} for name in ways}
    for kind, calls in requests.items():
        for call in ways.values():
            call(calls[0])
        for batch in calls:
            for name, call in ways.items():
                start = time.perf_counter()
                call(batch)
                result[name][kind].append(time.perf_counter() - start)
    return result


def _row(name: str, times: list[float], texts_per_request: int) -> str:
    ordered = sorted(times)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * len(ordered)) - 1)]
    rps = len(times) / sum(times)
    return (
        f"| {name} | {len(times)} | {rps:.1f} | {rps * texts_per_request:.0f} | "
        f"{statistics.median(times) * 1000:.0f} | {p95 * 1000:.0f} |"
    )


NOTE = (
    "The in-process ways share one client process (four models, PyTorch's and ONNX Runtime's thread pools "
    "together) while each server has a process of its own: under load that handicaps the in-process ways (--quick "
    "runs at load 5-7 read them slower than the servers), so take the goal ratios from a quiet sitting; "
    "6 batches are few for a p95."
)
WAYS = {
    "transformers": "plain transformers forward, merged weights (fp32)",
    "onnxruntime": "ONNX Runtime, model.onnx (sentlab.export --onnx)",
    "pyfunc": "pyfunc in-process, as served (the run's precision, train.precision=auto)",
    "pyfunc_fp32": "pyfunc in-process, fp32, adapter merged",
    "served": "`mlflow models serve` (HTTP, JSON)",
    "served_onnx": "`mlflow models serve`, ONNX Runtime (`make serve ONNX=1`)",
}


def _logging_lines(cost: dict) -> list[str]:
    return [
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
    ]


def _serving_lines(serve: dict, quick: bool) -> list[str]:
    ways, p50 = serve["ways"], lambda name, kind: statistics.median(serve["ways"][name][kind])
    args = " ".join(_serve_args(quick)).replace(str(SST2), "../shared/data/sst2")
    lines = [
        "## Serving: the model, in-process, ONNX Runtime and `mlflow models serve` side by side",
        "",
        f"A MiniLM run (`{args}`); `mlflow models serve -m runs:/RUN_ID/model --env-manager local -h 127.0.0.1` "
        "(one uvicorn worker), the client in another process on the same machine. One request at a time, the "
        "ways taking turns on each request (after one warm-up request each); SST-2 test sentences (mean "
        f"{serve['texts_chars']:.0f} characters), truncated at 64 tokens.",
        "",
        "| | requests | requests/s | texts/s | p50 latency (ms) | p95 latency (ms) |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for kind, size in (("single", 1), ("batch", BATCH)):
        for name, label in WAYS.items():
            lines.append(
                _row(f"{label}, {'single text' if size == 1 else f'batch of {BATCH}'}", ways[name][kind], size)
            )
    single = p50("served", "single") / p50("transformers", "single")
    batch = p50("served", "batch") / p50("pyfunc", "batch")
    lines += [
        "",
        f"Goals (p50): served single text / plain transformers = **{single:.2f}x** (goal 2x); served batch of "
        f"{BATCH} / in-process batch = **{batch:.2f}x** (goal 1.25x). ONNX Runtime / transformers: single "
        f"{p50('onnxruntime', 'single') / p50('transformers', 'single'):.2f}x, batch "
        f"{p50('onnxruntime', 'batch') / p50('transformers', 'batch'):.2f}x; served through ONNX Runtime / served: "
        f"single {p50('served_onnx', 'single') / p50('served', 'single'):.2f}x, batch "
        f"{p50('served_onnx', 'batch') / p50('served', 'batch'):.2f}x.",
        "",
        NOTE,
        "",
    ]
    return lines


def write(cost: dict | None, serve: dict, bench_s: float, loads: tuple[float, float], quick: bool) -> None:
    from bench.sweep_overhead import machine

    command = "python -m bench.serving --quick" if quick else "python -m bench.serving      # also part of `make bench`"
    lines = [
        "# Serving a run's model, and what logging it costs per run",
        "",
        "```",
        command,
        "```",
        "",
        f"Machine: {machine()}. Measured {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; the whole benchmark "
        f"took {bench_s / 60:.1f} min; 1-minute load average when it began: {loads[0]:.1f}, at its end: "
        f"{loads[1]:.1f} (above 1, other work shared the cores). Absolute figures differ between machines and "
        "runs: compare within this page.",
        "",
        *(_logging_lines(cost) if cost else ["(`--quick`: the logging cost per run was not measured.)", ""]),
        *_serving_lines(serve, quick),
    ]
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text("\n".join(lines))


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="serving only, a smaller run and fewer requests")
    quick = parser.parse_args().quick
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    began, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        cost = None
        if not quick:
            print("logging cost per run ...", flush=True)
            cost = logging_cost(Path(tmp))
            print(f"  log_model {cost['log_model']:.2f} s, log_inputs {cost['log_inputs']:.2f} s", flush=True)
        print("serving ...", flush=True)
        serve = serving(Path(tmp), quick)
    write(cost, serve, time.perf_counter() - began, (load, os.getloadavg()[0]), quick)
    print(OUT.read_text().split("## Serving", 1)[1])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
