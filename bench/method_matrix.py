"""Which method fits which head and quantization, as measured: every method of sentlab.methods on tiny random
models (BERT and GPT-NeoX, shapes as tests/conftest.py builds them), with quant none, int8 and nf4 through
sentlab.quant (bitsandbytes on this CPU). For each cell: refused (and why), or trained 5 steps, saved,
reloaded onto a fresh base and merged, with the largest logit difference of each against the trained model.

    OMP_NUM_THREADS=1 python -m bench.method_matrix   # about 80 s on 2 shared cores; prints a markdown table
    python -m bench.method_matrix lora,full none      # some methods / quantizations only

Not part of `make bench` (it measures support, not speed); its table is in docs/benchmarks/peft_methods.md.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from sentlab import methods, quant  # noqa: E402
from sentlab.errors import ConfigError  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
TARGETS = {"bert": ["query", "value"], "gpt_neox": ["query_key_value"]}
CASES = [("bert", "seq_cls"), ("gpt_neox", "seq_cls"), ("gpt_neox", "generative")]
QUANTS = {
    "none": {"name": "none"},
    "int8": {"name": "int8", "fallback": "error"},
    "nf4": {"name": "nf4", "quant_type": "nf4", "double_quant": True, "compute_dtype": "fp32", "fallback": "error"},
}


def method_cfg(name: str, arch: str):
    """conf/method/<name>.yaml with conf/lora/default.yaml, as a run composes them (tiny ranks)."""
    root = OmegaConf.create(
        {
            "backbone": {"target_modules": TARGETS[arch]},
            "lora": OmegaConf.load(REPO / "sentlab" / "conf" / "lora" / "default.yaml"),
            "method": OmegaConf.load(REPO / "sentlab" / "conf" / "method" / f"{name}.yaml"),
        }
    )
    root.lora.r, root.lora.alpha, root.lora.dropout = 4, 8, 0.0
    if "r" in root.method:
        root.method.r = 16 if name == "vera" else 4
    if "num_virtual_tokens" in root.method:
        root.method.num_virtual_tokens = 4
    return root.method, root.lora


def load(folder: Path, head: str, quant_name: str):
    """Tokenizer and model as a run loads them: the head's AutoModel class, sentlab.quant's config and prep."""
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    cls = tf.AutoModelForSequenceClassification if head == "seq_cls" else tf.AutoModelForCausalLM
    kwargs = {"num_labels": 3} if head == "seq_cls" else {}
    torch.manual_seed(0)
    q = OmegaConf.create(QUANTS[quant_name])
    model = cls.from_pretrained(folder, quantization_config=quant.quantization_config(q), **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, quant.prepare(model, q)


def batch(tokenizer, head):
    texts = ["a great film", "terrible and long, really bad", "okay I guess", "great great"]
    tokenizer.padding_side = "right" if head == "seq_cls" else "left"
    b = tokenizer(texts, padding=True, return_tensors="pt")
    if head == "seq_cls":
        b["labels"] = torch.tensor([2, 0, 1, 2])
    else:
        b["labels"] = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
    return b


def logits(model, b):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in b.items() if k != "labels"}).logits.float()


def cell(name, arch, head, quant_name, folder) -> str:
    method_node, lora_node = method_cfg(name, arch)
    try:
        methods.check(name, head, quant_name)
        tokenizer, model = load(folder, head, quant_name)
        model = methods.build(model, method_node, lora_node, "SEQ_CLS" if head == "seq_cls" else "CAUSAL_LM")
    except ConfigError as err:
        return f"refused: {str(err).split(': ', 1)[1][:70]}"
    b = batch(tokenizer, head)
    train = OmegaConf.create({"lr": 1e-2, "weight_decay": 0.0})
    optimizer = methods.optimizer(model, train, method_node)
    losses = []
    for _ in range(5):
        model.train()
        loss = model(**b).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        losses.append(loss.item())
    trained = logits(model, b)
    with tempfile.TemporaryDirectory() as tmp:
        methods.save(model, tmp)
        reloaded = methods.load(load(folder, head, quant_name)[1], tmp)
        reload_diff = (logits(reloaded, b) - trained).abs().max().item()
    if methods.get(name).saves == "weights":
        return f"loss {losses[0]:.2f}->{losses[-1]:.2f}, reload {reload_diff:.0e}, merge: a plain model already"
    try:
        merge = f"{(logits(methods.merge(model), b) - trained).abs().max().item():.0e}"
    except ConfigError as err:
        merge = "no (" + str(err).split(": ", 1)[1].split(";")[0][:45] + ")"
    return f"loss {losses[0]:.2f}->{losses[-1]:.2f}, reload {reload_diff:.0e}, merge {merge}"


def main(names: list[str], quants: list[str]) -> None:
    sys.path.insert(0, str(REPO))
    from tests.conftest import _build

    with tempfile.TemporaryDirectory() as tmp:
        folders = {arch: _build(arch, Path(tmp) / arch) for arch in TARGETS}
        print("| method | model / head | quant | result |\n|---|---|---|---|")
        for name in names:
            for arch, head in CASES:
                for quant_name in quants:
                    print(
                        f"| {name} | {arch} {head} | {quant_name} | {cell(name, arch, head, quant_name, folders[arch])} |",
                        flush=True,
                    )


if __name__ == "__main__":
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    names = sys.argv[1].split(",") if len(sys.argv) > 1 else [m for m in methods.METHODS if m != "lexicon"]
    main(names, sys.argv[2].split(",") if len(sys.argv) > 2 else list(QUANTS))
