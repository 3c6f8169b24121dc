"""Export a run's classifier as a standalone Hugging Face folder.

    python -m sentlab.export RUN_ID OUT_DIR                          # full-precision base + the adapter beside it
    python -m sentlab.export models:/reviews@champion OUT_DIR --merge  # the adapter folded into the weights

The folder holds the tokenizer, config.json (the label names as id2label) and safetensors weights:
`AutoModelForSequenceClassification.from_pretrained(OUT_DIR)` loads a seq-cls run without sentlab (a generative
run: `AutoModelForCausalLM`, with its prompt template and label words in classifier.json). Without --merge the
adapter files sit next to the base weights and transformers applies them (peft installed). With --merge the
adapter is folded into a full-precision base (a QLoRA run's base is reloaded unquantized), and the merged
model's predictions are checked against the adapter's on the held-out batch logged with the model (the run's
first test texts) before anything is written.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from sentlab import mlflow_model
from sentlab.errors import ConfigError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export(ref: str, out: Path, merge: bool) -> str:
    """Write the folder; a line saying what was written."""
    from omegaconf import OmegaConf

    with tempfile.TemporaryDirectory() as tmp:
        paths = mlflow_model.download(ref, tmp)
        cfg = OmegaConf.load(paths["config"])
        if "merged" in paths:  # logged merged (tracking.log_model=merged): written as it is
            mlflow_model.save(mlflow_model.build(cfg, paths["merged"], merged=True), out)
            return f"exported the merged model of {ref} to {out}"
        if merge:
            texts = mlflow_model.held_out_texts(paths)
            classifier, diff = mlflow_model.merge(cfg, paths["adapter"], texts)
            mlflow_model.save(classifier, out)
            return (
                f"exported {ref} merged to {out}; its predictions match the adapter's on {len(texts)} held-out "
                f"texts (largest log-probability difference {diff:.1e})"
            )
        classifier = mlflow_model.build(cfg, paths["adapter"], full_precision=True)
        classifier.model = classifier.model.unload()  # the base without the LoRA layers
        mlflow_model.save(classifier, out)
        for name in ADAPTER_FILES:
            shutil.copy(Path(paths["adapter"]) / name, out / name)
    return f"exported {ref} to {out}: the full-precision base with the adapter beside it (--merge folds it in)"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m sentlab.export", description=__doc__.split("\n")[0])
    p.add_argument("model", metavar="MODEL", help="a run id, runs:/RUN_ID/model or models:/NAME@ALIAS")
    p.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write (new or empty)")
    p.add_argument("--merge", action="store_true", help="fold the adapter into the weights (checked first)")
    p.add_argument("--tracking-uri", default="sqlite:///runs/mlflow.db", help="the MLflow store (default: %(default)s)")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    try:
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise ConfigError(f"OUT_DIR: {out} exists and is not an empty folder (choose a new one)")
        mlflow_model.use_store(args.tracking_uri)
        print(export(args.model, out, args.merge))
    except ConfigError as err:
        print(f"sentlab.export: error: {err}", file=sys.stderr)
        return 2
    except mlflow_model.MergeMismatch as err:
        print(f"sentlab.export: error: {err}; nothing written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    from sentlab import console

    console.run_cli(main)
