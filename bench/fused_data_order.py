"""The padding that "each member its own batches" costs a fused group whose members' seeds differ.

    python -m bench.fused_data_order                   # prints the table (a few seconds)
    python -m bench.fused_data_order --out docs/benchmarks/fused_data_order.md

3,200 SST-2 train rows (data=sst2 data.dir=../shared/data/sst2 data.max_samples.train=3200, as a run loads
them), tokenized for MiniLM at train.max_length=128, batch 32. For K members of seeds 42, 43, ... each epoch
has the batches training.epoch_batches(lengths, 32, seed, epoch) gives the same job alone. A fused step stacks
batch i of every member, padded to the longest of them; alone, each batch is padded to its own longest. The
cost is the token positions the stack computes over those the members compute alone (attention grows faster
than that with length, the rest of the model in proportion). With one shared order (the first member's
seed) there is no extra padding at all.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SST2 = os.environ.get("SENTLAB_BENCH_SST2", str(REPO.parent / "shared" / "data" / "sst2"))
ROWS, BATCH, MAX_LENGTH, EPOCHS = 3200, 32, 128, 3


def _lengths() -> list[int]:
    from hydra import compose, initialize_config_dir

    import sentlab  # noqa: F401  (config resolvers)
    from sentlab import backbones
    from sentlab.data import load_data

    overrides = ["data=sst2", f"data.dir={SST2}", f"data.max_samples.train={ROWS}", f"train.max_length={MAX_LENGTH}"]
    with initialize_config_dir(config_dir=str(REPO / "sentlab" / "conf"), version_base="1.3"):
        cfg = compose(config_name="config", overrides=overrides)
    texts = list(load_data(cfg.data).splits["train"]["text"])
    tokenizer = backbones.load_tokenizer(cfg.backbone)
    return [len(ids) for ids in tokenizer(texts, truncation=True, max_length=MAX_LENGTH)["input_ids"]]


def padding_cost(lengths: list[int], k: int, group_by_length: bool) -> dict[str, float]:
    """Token positions of K members' own batches stacked (padded to the longest member batch of each step)
    against the same batches alone, over EPOCHS epochs; and the real tokens' share of each."""
    from sentlab.training import epoch_batches

    stacked = alone = real = 0
    for epoch in range(1, EPOCHS + 1):
        orders = [epoch_batches(lengths, BATCH, 42 + m, epoch, group_by_length) for m in range(k)]
        for step in zip(*orders):  # batch i of every member (equal counts: same rows, same batch size)
            widths = [max(lengths[j] for j in batch) for batch in step]
            stacked += sum(len(batch) for batch in step) * max(widths)
            alone += sum(len(batch) * w for batch, w in zip(step, widths))
            real += sum(lengths[j] for batch in step for j in batch)
    return {"cost": stacked / alone - 1, "real_stacked": real / stacked, "real_alone": real / alone}


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", help="also write the table to this markdown file")
    args = parser.parse_args()
    lengths = _lengths()
    lines = [
        (
            f"{len(lengths)} SST-2 rows, MiniLM tokens: mean length {sum(lengths) / len(lengths):.1f}, "
            f"max {max(lengths)}; batch {BATCH}; {EPOCHS} epochs; seeds 42, 43, ..."
        ),
        "",
        (
            "| train.group_by_length | K members (seeds differ) | extra token positions, own batches | "
            "real tokens, stacked | real tokens, alone |"
        ),
        "|---|---|---|---|---|",
    ]
    for group_by_length in (True, False):
        for k in (2, 4, 8):
            c = padding_cost(lengths, k, group_by_length)
            lines.append(
                f"| {str(group_by_length).lower()} | {k} | +{c['cost']:.0%} | {c['real_stacked']:.0%} | "
                f"{c['real_alone']:.0%} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        Path(args.out).write_text(
            "# Fused groups: the padding of each member's own batches\n\n"
            "Command: `python -m bench.fused_data_order`\n\n" + text + "\n"
        )


if __name__ == "__main__":
    main()
