"""Export a run's classifier as a standalone Hugging Face folder.

    python -m sentlab.export RUN_ID OUT_DIR                          # full-precision base + the adapter beside it
    python -m sentlab.export models:/reviews@champion OUT_DIR --merge  # the adapter folded into the weights

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
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

from sentlab import classifier as classifiers
from sentlab import cli, mlflow_model, modelcard
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


def export(ref: str, out: Path, merge: bool) -> str:
    """Write the folder and its model card; a line saying what was written."""
    with tempfile.TemporaryDirectory() as tmp:
        files = mlflow_model.fetch(ref, tmp)
        line = write_model(files, ref, out, merge)
        write_card(files, out, merged=merge or bool(files.merged))
    return line


def write_model(files: mlflow_model.ModelFiles, ref: str, out: Path, merge: bool) -> str:
    """The model's weights in the folder, as the method allows; a line saying what was written."""
    if files.adapter is None and not files.merged:
        raise ConfigError(f"{ref}: method=lexicon has no weights to export (VADER's rules label the texts)")
    if files.merged:  # logged merged (tracking.log_model=merged): written as it is
        classifiers.save(files.classifier(), out)
        return f"exported the merged model of {ref} to {out}"
    if merge:
        texts = files.held_out_texts()
        classifier, diff = classifiers.merge(files.cfg, files.adapter, texts)
        classifiers.save(classifier, out)
        return (
            f"exported {ref} merged to {out}; its predictions match the adapter's on {len(texts)} held-out "
            f"texts (largest log-probability difference {diff:.1e})"
        )
    classifier = files.classifier(full_precision=True)
    if not (Path(files.adapter) / ADAPTER_FILES[0]).is_file():  # bitfit, head_only, full: their own weights
        classifiers.save(classifier, out)
        return f"exported {ref} to {out}: the model with its trained weights (method={files.cfg.method.name})"
    model = classifier.model
    # the base without the adapter's layers (virtual tokens add none: prefix, prompt)
    classifier.model = model.get_base_model() if model.active_peft_config.is_prompt_learning else model.unload()
    classifiers.save(classifier, out)
    for name in ADAPTER_FILES:
        shutil.copy(Path(files.adapter) / name, out / name)
    return f"exported {ref} to {out}: the full-precision base with the adapter beside it (--merge folds it in)"


@cli.entry_point("sentlab.export")
def main(argv=None) -> int:
    p = cli.parser("sentlab.export", __doc__)
    p.add_argument("out_dir", metavar="OUT_DIR", help="the folder to write (new or empty)")
    p.add_argument("--merge", action="store_true", help="fold the adapter into the weights (checked first)")
    p.add_argument("--push-to-hub", metavar="REPO", help="then upload the folder to this hub model repo (USER/NAME)")
    args = p.parse_args(argv)
    out = Path(args.out_dir)
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"OUT_DIR: {out} exists and is not an empty folder (choose a new one)")
    if args.push_to_hub:
        check_repo_id(args.push_to_hub)
    mlflow_model.use_store(args.tracking_uri)
    try:
        print(export(args.model, out, args.merge))
    except classifiers.MergeMismatch as err:
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
