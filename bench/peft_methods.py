"""Every method of sentlab.methods on the packaged MiniLM and SST-2, on a small proxy: dev accuracy, trainable
parameters and training examples/s (docs/benchmarks/peft_methods.md). A plain transformers + peft loop that
builds each model with the registry directly (not sentlab.pipeline, which does not read conf/method/ yet).

    OMP_NUM_THREADS=1 python -m bench.peft_methods all 2000   # every method, 2,000 train rows, one epoch
    python -m bench.peft_methods lora,full 4000                # some methods; the number of train rows

The same loop as bench/minilm_sst2_ceiling.py: batch 32, max length 64, batches grouped by length, bf16
autocast where the CPU has bf16 matrix units (sentlab's train.precision=auto rule; else fp32), AdamW (weight decay 0.01; LoRA+: peft's optimizer), linear schedule with 6% warmup, gradient norm
clipped at 1, a seeded sample of train.tsv, the 872 dev rows. Each method's knobs are its conf/method/ file's
with the LoRA family and LyCORIS at r=8 (alpha 16) on MiniLM's default targets (query, value); one learning
rate per method from its paper's or peft's usual range (LR below), not tuned here. One seed: +-1.1 points is
one standard error of accuracy on 872 rows. The machine is shared: each row carries the load average.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from bench.minilm_sst2_ceiling import MINILM, SST2, batches, read_tsv
from sentlab import losses, methods
from sentlab.backbones import resolve_source

REPO = Path(__file__).resolve().parents[1]
# sentlab's train.precision=auto on a CPU: bf16 autocast only where bf16 matrix products are fast (on a CPU
# without avx512_bf16 / AMX, bf16 autocast measured 6x slower than fp32 for a MiniLM step).
BF16 = torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()
LR = {
    "lora": 2e-3,
    "dora": 2e-3,
    "rslora": 2e-3,
    "loraplus": 1e-3,
    "pissa": 2e-3,
    "olora": 2e-3,
    "ia3": 3e-3,
    "vera": 1e-2,
    "loha": 2e-3,
    "lokr": 2e-3,
    "prefix": 1e-2,
    "prompt": 1e-2,
    "bitfit": 1e-3,
    "head_only": 1e-2,
    "full": 1e-4,
}


def method_cfg(name: str):
    """conf/method/<name>.yaml and conf/lora/default.yaml, resolved against MiniLM's backbone config."""
    root = OmegaConf.create(
        {
            "backbone": OmegaConf.load(REPO / "conf" / "backbone" / "minilm.yaml"),
            "lora": OmegaConf.load(REPO / "conf" / "lora" / "default.yaml"),
            "method": OmegaConf.load(REPO / "conf" / "method" / f"{name}.yaml"),
        }
    )
    if name == "vera":
        root.method.r = 256
    OmegaConf.resolve(root)
    return root.method, root.lora


def run(name: str, train, dev, source: str) -> dict:
    from transformers import AutoModelForSequenceClassification, get_scheduler

    torch.manual_seed(0)
    random.seed(0)
    load_before = os.getloadavg()[0]
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    method, lora = method_cfg(name)
    model = methods.build(model, method, lora, "SEQ_CLS")
    counts = methods.trainable_counts(model)
    optimizer = methods.optimizer(model, OmegaConf.create({"lr": LR[name], "weight_decay": 0.01}), method)
    params = [p for p in model.parameters() if p.requires_grad]
    steps = -(-len(train) // 32)
    scheduler = get_scheduler("linear", optimizer, int(0.06 * steps), steps)
    model.train()
    start = time.perf_counter()
    for ids, mask, labels in batches(train, shuffle=True):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
            logits = model(input_ids=ids, attention_mask=mask).logits
        losses.seq_cls_loss(logits, labels).backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad()
    train_s = time.perf_counter() - start
    model.eval()
    correct = 0
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=BF16):
        for ids, mask, labels in batches(dev, shuffle=False):
            correct += (model(input_ids=ids, attention_mask=mask).logits.argmax(-1) == labels).sum().item()
    return {
        "dev": correct / len(dev),
        "trainable": counts["trainable_params"],
        "pct": counts["trainable_pct"],
        "rate": len(train) / train_s,
        "train_s": train_s,
        "load": (load_before, os.getloadavg()[0]),
    }


def main(names: list[str], rows: int) -> None:
    from transformers import AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    source = resolve_source(MINILM)
    tokenizer = AutoTokenizer.from_pretrained(source)
    train = read_tsv(SST2 / "train.tsv")
    random.Random(0).shuffle(train)

    def encode(data):
        return [(tokenizer(s, truncation=True, max_length=64)["input_ids"], label) for s, label in data]

    train, dev = encode(train[:rows]), encode(read_tsv(SST2 / "dev.tsv"))
    print(
        f"{len(train):,} train rows, {len(dev)} dev rows, {'bf16 autocast' if BF16 else 'fp32'}, "
        f"{torch.get_num_threads()} torch threads\n"
    )
    print(
        "| method | lr | dev accuracy | trainable params | trainable % | train examples/s | train s | "
        "load avg (start, end) |\n|---|---|---|---|---|---|---|---|",
        flush=True,
    )
    for name in names:
        r = run(name, train, dev, source)
        print(
            f"| {name} | {LR[name]:g} | {r['dev']:.3f} | {r['trainable']:,} | {r['pct']:.2f} | {r['rate']:.0f} | "
            f"{r['train_s']:.0f} | {r['load'][0]:.1f}, {r['load'][1]:.1f} |",
            flush=True,
        )


if __name__ == "__main__":
    names = list(LR) if len(sys.argv) < 2 or sys.argv[1] == "all" else sys.argv[1].split(",")
    main(names, int(sys.argv[2]) if len(sys.argv) > 2 else 2000)
