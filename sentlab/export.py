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
first test texts) before anything is written. Every method exports (sentlab.methods): bitfit, head_only and full
as the model with its trained weights (nothing to merge); prefix and prompt tuning with the adapter beside the
base only (virtual tokens are inputs, not weights: --merge is refused).
The folder's README.md is the run's model card (sentlab.modelcard): base model, method, data, test metrics,
calibration, config, the command that trained it, intended use and limits. --push-to-hub uploads the folder to a
model repo that exists (`hf repo create USER/NAME`), as the logged-in user.
--onnx merges and adds model.onnx (torch.onnx, for ONNX Runtime), written only once ONNX Runtime's logits match
the merged PyTorch model's on the same held-out texts within sentlab.onnx_model.TOLERANCE; a generative run is
refused.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from sentlab import classifier as classifiers
from sentlab import cli, mlflow_model, modelcard, onnx_model
from sentlab.errors import ConfigError

ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def write_card(files: mlflow_model.ModelFiles, out: Path, merged: bool) -> None:
    """README.md: the model card of the run that logged the model."""
    import mlflow

    client = mlflow.MlflowClient()
    modelcard.card(files.cfg, client.get_run(files.run_id), client, merged).save(out / "README.md")


def push(out: Path, repo: str) -> str:
    """Upload the folder to the hub's model repo REPO; a line saying where it went."""
    from huggingface_hub import HfApi

    info = HfApi().upload_folder(folder_path=str(out), repo_id=repo, repo_type="model", commit_message="sentlab.export")
    return f"uploaded {out} to {repo}: {getattr(info, 'commit_url', None) or f'https://huggingface.co/{repo}'}"


def export(ref: str, out: Path, merge: bool, onnx: bool = False) -> str:
    """Write the folder (with model.onnx when asked) and its model card; a line saying what was written."""
    with tempfile.TemporaryDirectory() as tmp:
        files = mlflow_model.fetch(ref, tmp)
        if onnx:
            onnx_model.check_exportable(files.cfg)
        line = write_model(files, ref, out, merge, onnx)
        write_card(files, out, merged=merge or onnx or bool(files.merged))
    return line


def write_model(files: mlflow_model.ModelFiles, ref: str, out: Path, merge: bool, onnx: bool = False) -> str:
    """The model's weights in the folder, as the method allows (model.onnx beside a merged model once it is
    checked: nothing is written otherwise); a line saying what was written."""
    if files.adapter is None and not files.merged:
        raise ConfigError(f"{ref}: method=lexicon has no weights to export (VADER's rules label the texts)")
    classifier, line, adapter_beside = _model(files, ref, out, merge or onnx)
    if onnx:
        with tempfile.TemporaryDirectory() as tmp:
            diff = onnx_model.export(classifier, Path(tmp) / onnx_model.FILE, files.held_out_texts())
            classifiers.save(classifier, out)
            shutil.move(str(Path(tmp) / onnx_model.FILE), out / onnx_model.FILE)
        return line + (
            f"; {onnx_model.FILE}: ONNX Runtime's logits match PyTorch's on the same texts (largest "
            f"difference {diff:.1e}, tolerance {onnx_model.TOLERANCE:g})"
        )
    classifiers.save(classifier, out)
    for name in ADAPTER_FILES if adapter_beside else ():
        shutil.copy(Path(files.adapter) / name, out / name)
    return line


def _model(files: mlflow_model.ModelFiles, ref: str, out: Path, merge: bool) -> tuple:
    """(the classifier to write, the line saying what it is, whether the adapter's files go beside it)."""
    if files.merged:  # logged merged (tracking.log_model=merged): written as it is
        return files.classifier(), f"exported the merged model of {ref} to {out}", False
    if merge:
        texts = files.held_out_texts()
        classifier, diff = classifiers.merge(files.cfg, files.adapter, texts)
        return (
            classifier,
            (
                f"exported {ref} merged to {out}; its predictions match the adapter's on {len(texts)} held-out "
                f"texts (largest log-probability difference {diff:.1e})"
            ),
            False,
        )
    classifier = files.classifier(full_precision=True)
    if not (Path(files.adapter) / ADAPTER_FILES[0]).is_file():  # bitfit, head_only, full: their own weights
        line = f"exported {ref} to {out}: the model with its trained weights (method={files.cfg.method.name})"
        return classifier, line, False
    model = classifier.model
    # the base without the adapter's layers (virtual tokens add none: prefix, prompt)
    classifier.model = model.get_base_model() if model.active_peft_config.is_prompt_learning else model.unload()
    line = f"exported {ref} to {out}: the full-precision base with the adapter beside it (--merge folds it in)"
    return classifier, line, True


@cli.entry_point("sentlab.export")
def main(argv=None) -> int:
    p = cli.parser("sentlab.export", __doc__)
    p.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write (new or empty)")
    p.add_argument("--merge", action="store_true", help="fold the adapter into the weights (checked first)")
    p.add_argument("--push-to-hub", metavar="REPO", help="then upload the folder to this hub model repo (USER/NAME)")
    p.add_argument("--onnx", action="store_true", help="merge, and add model.onnx (checked against PyTorch first)")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"OUT_DIR: {out} exists and is not an empty folder (choose a new one)")
    if args.push_to_hub:
        check_repo_id(args.push_to_hub)
    mlflow_model.use_store(args.tracking_uri)
    try:
        print(export(args.model, out, args.merge, args.onnx))
    except (classifiers.MergeMismatch, onnx_model.OnnxMismatch) as err:
        print(f"sentlab.export: error: {err}; nothing written", file=sys.stderr)
        return 1
    if args.push_to_hub:
        try:
            print(push(out, args.push_to_hub))
        except Exception as err:  # no network, not logged in, no such repo: the folder stays, the upload failed
            reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            print(
                f"sentlab.export: error: upload to {args.push_to_hub} failed ({reason}); {out} is written",
                file=sys.stderr,
            )
            return 1
    return 0


def check_repo_id(repo: str) -> None:
    """A hub repo id (USER/NAME) or a ConfigError, before anything is exported."""
    from huggingface_hub.utils import HFValidationError, validate_repo_id

    try:
        validate_repo_id(repo)
    except HFValidationError:
        raise ConfigError(f"--push-to-hub: '{repo}' is not a hub repo id (use USER/NAME)") from None
    if "/" not in repo:
        raise ConfigError(f"--push-to-hub: '{repo}' names no owner (use USER/NAME)")


if __name__ == "__main__":
    cli.run(main)
