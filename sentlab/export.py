"""Export a run's classifier as a standalone Hugging Face folder.

    python -m sentlab.export RUN_ID OUT_DIR                          # full-precision base + the adapter beside it
    python -m sentlab.export models:/reviews@champion OUT_DIR --merge  # the adapter folded into the weights
    python -m sentlab.export RUN_ID OUT_DIR --onnx                   # merged, plus OUT_DIR/model.onnx (seq_cls)

The folder holds the tokenizer, config.json (the label names as id2label) and safetensors weights:
`AutoModelForSequenceClassification.from_pretrained(OUT_DIR)` loads a seq-cls run without sentlab (a generative
run: `AutoModelForCausalLM`, with its prompt template and label words in classifier.json). Without --merge the
adapter files sit next to the base weights and transformers applies them (peft installed). With --merge the
adapter is folded into a full-precision base (a QLoRA run's base is reloaded unquantized), and the merged
model's predictions are checked against the adapter's on the held-out batch logged with the model (the run's
first test texts) before anything is written. --onnx merges and adds model.onnx (torch.onnx, for ONNX Runtime),
written only once ONNX Runtime's logits match the merged PyTorch model's on the same held-out texts within
sentlab.onnx_model.TOLERANCE; a generative run is refused.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from sentlab import classifier as classifiers
from sentlab import cli, mlflow_model, onnx_model
from sentlab.errors import ConfigError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def export(ref: str, out: Path, merge: bool, onnx: bool = False) -> str:
    """Write the folder; a line saying what was written."""
    with tempfile.TemporaryDirectory() as tmp:
        files = mlflow_model.fetch(ref, tmp)
        if onnx:
            onnx_model.check_exportable(files.cfg)
        texts = files.held_out_texts()
        if files.merged:  # logged merged (tracking.log_model=merged): written as it is
            classifier, line = files.classifier(), f"exported the merged model of {ref} to {out}"
        elif merge or onnx:
            classifier, diff = classifiers.merge(files.cfg, files.adapter, texts)
            line = (
                f"exported {ref} merged to {out}; its predictions match the adapter's on {len(texts)} held-out "
                f"texts (largest log-probability difference {diff:.1e})"
            )
        else:
            classifier = files.classifier(full_precision=True)
            classifier.model = classifier.model.unload()  # the base without the LoRA layers
            classifiers.save(classifier, out)
            for name in ADAPTER_FILES:
                shutil.copy(Path(files.adapter) / name, out / name)
            return f"exported {ref} to {out}: the full-precision base with the adapter beside it (--merge folds it in)"
        if onnx:
            diff = onnx_model.export(classifier, Path(tmp) / onnx_model.FILE, texts)  # checked, or nothing written
            classifiers.save(classifier, out)
            shutil.move(str(Path(tmp) / onnx_model.FILE), out / onnx_model.FILE)
            line += (
                f"; {onnx_model.FILE}: ONNX Runtime's logits match PyTorch's on the same texts (largest "
                f"difference {diff:.1e}, tolerance {onnx_model.TOLERANCE:g})"
            )
        else:
            classifiers.save(classifier, out)
    return line


@cli.entry_point("sentlab.export")
def main(argv=None) -> int:
    p = cli.parser("sentlab.export", __doc__)
    p.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write (new or empty)")
    p.add_argument("--merge", action="store_true", help="fold the adapter into the weights (checked first)")
    p.add_argument("--onnx", action="store_true", help="merge, and add model.onnx (checked against PyTorch first)")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"OUT_DIR: {out} exists and is not an empty folder (choose a new one)")
    mlflow_model.use_store(args.tracking_uri)
    try:
        print(export(args.model, out, args.merge, args.onnx))
    except (classifiers.MergeMismatch, onnx_model.OnnxMismatch) as err:
        print(f"sentlab.export: error: {err}; nothing written", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    cli.run(main)
