"""Classify texts with the adapter of a logged run.

    python -m sentlab.predict RUN_ID "great value, works well" "broke after a day"
    python -m sentlab.predict RUN_ID --file reviews.txt          # one text per line
    python -m sentlab.predict RUN_ID --tracking-uri http://127.0.0.1:5000 "..."

The run's own config.yaml artifact rebuilds the backbone, head and quantization; its adapter/
artifact (LoRA weights, head, tokenizer) is loaded on top. Prints one JSON line per text.
"""
from __future__ import annotations

import argparse
import json
import sys
from types import SimpleNamespace

from sentlab import tracking


def load_classifier(run_id: str):
    """(model, head) rebuilt from a run's logged config and adapter, in eval mode."""
    from omegaconf import OmegaConf
    from peft import PeftModel
    from transformers import AutoTokenizer

    from sentlab import backbones, quant
    from sentlab.heads import make_head

    client = tracking.mlflow.MlflowClient()
    cfg = OmegaConf.load(client.download_artifacts(run_id, "config.yaml"))
    adapter_dir = client.download_artifacts(run_id, "adapter")
    tokenizer = AutoTokenizer.from_pretrained(adapter_dir)
    labels = SimpleNamespace(label_names=list(cfg.data.label_names), label_words=list(cfg.data.label_words))
    head = make_head(cfg, tokenizer, labels)
    model = backbones.load_model(
        head.model_class(), cfg.backbone, tokenizer,
        quantization_config=quant.quantization_config(cfg.quant), **head.model_kwargs(),
    )
    return PeftModel.from_pretrained(model, adapter_dir).eval(), head


def predict(model, head, texts: list[str], batch_size: int = 32) -> list[dict]:
    """Label and probability over the labels for each text."""
    import torch
    from datasets import Dataset

    features = head.encode(Dataset.from_dict({"text": texts, "label": [0] * len(texts)}))
    results = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = head.collate([features[i] for i in range(start, min(start + batch_size, len(texts)))])
            batch = {k: v.to(model.device) for k, v in batch.items()}
            _, log_probs = head.evaluate_batch(model, batch)
            for row in log_probs.exp().tolist():
                best = max(range(len(row)), key=row.__getitem__)
                results.append({"label": head.label_names[best],
                                "probs": dict(zip(head.label_names, (round(p, 4) for p in row)))})
    return results


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run_id", help="the MLflow run whose adapter classifies")
    parser.add_argument("texts", nargs="*", help="texts to classify")
    parser.add_argument("--file", help="a file with one text per line")
    parser.add_argument("--tracking-uri", default="sqlite:///runs/mlflow.db", help="the MLflow store (default: %(default)s)")
    args = parser.parse_intermixed_args(argv)
    texts = list(args.texts)
    if args.file:
        with open(args.file) as f:
            texts += [line.rstrip("\n") for line in f if line.strip()]
    if not texts:
        parser.error("no texts: give them as arguments or with --file")
    tracking.mlflow.set_tracking_uri(args.tracking_uri)
    try:
        model, head = load_classifier(args.run_id)
    except tracking.mlflow.exceptions.MlflowException as err:
        sys.exit(f"sentlab: error: run {args.run_id}: {err.message} (check the run id and --tracking-uri)")
    for text, result in zip(texts, predict(model, head, texts)):
        print(json.dumps({"text": text, **result}))


if __name__ == "__main__":
    main()
