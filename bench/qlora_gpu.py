"""The pythia recipe's QLoRA on a CUDA GPU: a pythia-1b-shaped model (built from GPTNeoXConfig, random
weights: no download), 4-bit NF4 base + LoRA r=16 on query_key_value, sentlab's generative head
and training loop, a few hundred optimizer steps; peak GPU memory and tokens per second.

    python -m bench.qlora_gpu                 # 300 steps, batch 8, 256 tokens; prints a Markdown table
    python -m bench.qlora_gpu --steps 50      # shorter

Exits with a message (status 2) where there is no CUDA GPU: bitsandbytes QLoRA on CPU is
covered by the tests, and this benchmark is about GPU memory.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=256, help="tokens per example (prompt + label)")
    args = parser.parse_args()

    import torch

    if not torch.cuda.is_available():
        print(
            "bench.qlora_gpu: no CUDA GPU here (torch.cuda.is_available() is False); nothing measured. "
            "Run it on a machine with an NVIDIA GPU.",
            file=sys.stderr,
        )
        sys.exit(2)

    import datasets
    from omegaconf import OmegaConf
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, GPTNeoXConfig, PreTrainedTokenizerFast

    from sentlab import adapters, quant
    from sentlab.data import Labels
    from sentlab.heads.generative import GenerativeHead
    from sentlab.training import fit

    # pythia-1b: 16 layers, hidden 2048, 8 heads, vocab 50304 (its config; weights random).
    config = GPTNeoXConfig(
        vocab_size=50304,
        hidden_size=2048,
        num_hidden_layers=16,
        num_attention_heads=8,
        intermediate_size=8192,
        rotary_pct=0.25,
        max_position_embeddings=2048,
        eos_token_id=0,
        bos_token_id=0,
        tie_word_embeddings=False,
    )
    words = ["negative", "positive"]
    vocab = {"<|endoftext|>": 0, **{w: i + 1 for i, w in enumerate(words)}, **{f"w{i}": 10 + i for i in range(50000)}}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<|endoftext|>"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>")

    with tempfile.TemporaryDirectory() as folder:
        torch.manual_seed(0)
        AutoModelForCausalLM.from_config(config).save_pretrained(folder)
        qcfg = OmegaConf.create(
            {
                "name": "nf4",
                "quant_type": "nf4",
                "double_quant": True,
                "compute_dtype": "bf16",
                "fallback": "error",
                "gradient_checkpointing": True,
            }
        )
        torch.cuda.reset_peak_memory_stats()
        model = AutoModelForCausalLM.from_pretrained(folder, quantization_config=quant.quantization_config(qcfg))
    model = quant.prepare(model, qcfg)
    lora = OmegaConf.create(
        {
            "r": 16,
            "alpha": 32,
            "dropout": 0.05,
            "target_modules": ["query_key_value"],
            "bias": "none",
            "modules_to_save": None,
        }
    )
    model = adapters.add_lora(model, lora, "CAUSAL_LM")
    load_mb = torch.cuda.max_memory_allocated() / 2**20

    train = OmegaConf.load(
        Path(__file__).resolve().parents[1] / "sentlab" / "conf" / "train" / "default.yaml"
    )  # every key fit reads
    train = OmegaConf.merge(
        train,
        {
            "max_length": args.length,
            "epochs": 1,
            "lr": 2e-4,
            "batch_size": args.batch,
            "weight_decay": 0.0,
            "warmup_ratio": 0.0,
            "scheduler": "constant",
            "log_every": 50,
            "eval_every_epoch": False,
            "keep": "last",
            "select_metric": "accuracy",
            "eval_batch_size": 16,
            "seed": 0,
            "precision": "bf16",
        },
    )
    cfg = OmegaConf.create({"head": {"template": "{text}", "label_prefix": " ", "add_bos": False}, "train": train})
    head = GenerativeHead(cfg, tokenizer, Labels(words, words))
    n = args.steps * args.batch
    text = " ".join(f"w{i}" for i in range(args.length - 2))  # every example exactly `length` tokens
    split = datasets.Dataset.from_dict({"text": [text] * n, "label": [i % 2 for i in range(n)]})
    features = head.encode(split)
    val = head.encode(split.select(range(32)))

    torch.cuda.synchronize()
    start = time.perf_counter()
    fit(model, head, {"train": features, "val": val}, cfg.train, torch.device("cuda"))
    torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    tokens = n * args.length
    print("| model | steps | batch x tokens | peak GPU memory (MB) | after loading (MB) | tokens/s | s/step |")
    print("|---|---|---|---|---|---|---|")
    print(
        f"| pythia-1b-shaped, NF4 + double quant, LoRA r=16, bf16, grad. checkpointing | {args.steps} "
        f"| {args.batch} x {args.length} | {torch.cuda.max_memory_allocated() / 2**20:.0f} | {load_mb:.0f} "
        f"| {tokens / seconds:.0f} | {seconds / args.steps:.3f} |"
    )
    print(f"device: {torch.cuda.get_device_name()}; time includes one validation pass of 32 examples")


if __name__ == "__main__":
    main()
