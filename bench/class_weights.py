"""Macro recall on TweetEval with and without train.class_weights=auto, beside the lexicon baseline, through
sentlab runs (docs/benchmarks/peft_methods.md, "Class weights").

    python -m bench.class_weights --quick     # MiniLM + LoRA, one epoch on the 1,800 offline training tweets,
                                              # tested on 2,000 seeded test tweets; a few minutes on 2 cores
    python -m bench.class_weights             # the same on the whole test set (12,284 tweets)

One sweep, `python -m sentlab.train -m experiment=tweet_eval_minilm ... train.class_weights=null,auto`, into a
temporary runs folder, then `method=lexicon` on the same rows; prints a markdown table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "tweet_eval_sentiment"
METRICS = ("test_recall_macro", "test_accuracy", "test_recall_negative", "test_recall_neutral", "test_recall_positive")


def overrides(quick: bool) -> list[str]:
    test_rows = ["data.max_samples.test=2000"] if quick else []
    return [
        "experiment=tweet_eval_minilm",
        f"data.dir={DATA}",
        "train.epochs=1",
        "tracking.experiment=bench",
        *test_rows,
    ]


def sentlab_train(args: list[str], runs_dir: str) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, "-m", "sentlab.train", *args, f"runs_dir={runs_dir}"]
    print("$", " ".join(command[1:]), file=sys.stderr)
    subprocess.run(command, cwd=REPO, env=env, check=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 test tweets instead of 12,284")
    args = parser.parse_args()
    import mlflow

    with tempfile.TemporaryDirectory() as runs_dir:
        sentlab_train(["-m", *overrides(args.quick), "train.class_weights=null,auto"], runs_dir)
        sentlab_train([*overrides(args.quick), "method=lexicon"], runs_dir)
        client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs_dir}/mlflow.db")
        experiment = client.get_experiment_by_name("bench")
        runs = [r for r in client.search_runs([experiment.experiment_id]) if "test_accuracy" in r.data.metrics]
        print("| run | class weights | " + " | ".join(METRICS) + " | train s |")
        print("|---|---|" + "---|" * (len(METRICS) + 1))
        for run in sorted(runs, key=lambda r: r.info.start_time):
            params, metrics = run.data.params, run.data.metrics
            weights = ", ".join(f"{k.split('.')[1]} {v}" for k, v in params.items() if k.startswith("class_weight."))
            method = params.get("method.name")
            row = [method, weights or "none"]
            row += [f"{metrics[m]:.4f}" for m in METRICS] + [f"{metrics.get('train_time_s', 0):.0f}"]
            print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()
