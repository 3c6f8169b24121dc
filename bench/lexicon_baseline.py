"""The lexicon baseline (VADER, sentlab.lexicon) on the offline data sets: what a classifier that needs no
training reaches, the row every fine-tuning result is compared with (docs/benchmarks/peft_methods.md).

    python -m bench.lexicon_baseline          # about 1 minute on 2 cores; prints a markdown table

The rows are the ones a sentlab run reads: each data set's config from conf/data/ with data.dir set to
../shared/data/<folder>, loaded by sentlab.data (the same files, splits and seeded caps as a run with
train.seed=42). VADER's thresholds: compound >= 0.05 positive, <= -0.05 negative, in between neutral; on
two-class data the band is split at 0 (compound >= 0 positive).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from sentlab.data import load_data
from sentlab.lexicon import Lexicon
from sentlab.metrics import classification_metrics

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
# (what the table calls it, data config, folder under ../shared/data, split, extra overrides, metric papers report)
SETS = [
    ("SST-2 dev", "sst2", "sst2", "val", [], "accuracy"),
    ("Rotten Tomatoes test", "rotten_tomatoes", "rotten_tomatoes", "test", [], "accuracy"),
    ("TweetEval sentiment test", "tweet_eval", "tweet_eval_sentiment", "test", [], "recall_macro"),
    ("Amazon books dev", "amazon_multidomain", "amazon_multidomain", "test", [], "accuracy"),
    ("IMDb test (2,000 seeded rows)", "imdb", "imdb", "test", ["data.max_samples.test=2000"], "accuracy"),
]


def data_config(name: str, folder: str, overrides: list[str]):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        return compose("config", overrides=[f"data={name}", f"data.dir={DATA / folder}", *overrides]).data


def main() -> None:
    import datasets

    datasets.disable_progress_bars()
    print(f"load average before: {os.getloadavg()[0]:.2f}\n")
    print(
        "| data (split, rows) | metric | VADER | accuracy | macro recall | macro F1 | compound = 0 | texts/s "
        "| load avg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for title, name, folder, split, overrides, metric in SETS:
        data = load_data(data_config(name, folder, overrides))
        rows = data.splits[split]
        lexicon = Lexicon(data.label_names)
        start = time.perf_counter()
        compound = lexicon.compound(rows["text"])
        rate = len(rows) / (time.perf_counter() - start)
        preds = lexicon.log_probs_of(compound).argmax(axis=1)
        m = classification_metrics(rows["label"], preds, data.label_names)
        print(
            f"| {title} ({split}, {len(rows):,}) | {metric.replace('_', ' ')} | **{m[metric]:.3f}** | "
            f"{m['accuracy']:.3f} | {m['recall_macro']:.3f} | {m['f1_macro']:.3f} | {(compound == 0).mean():.1%} | "
            f"{rate:,.0f} | "
            f"{os.getloadavg()[0]:.2f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
