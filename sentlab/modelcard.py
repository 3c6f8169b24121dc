"""The model card of an exported run: the folder's README.md in Hugging Face's format (YAML metadata, then text).

It says what the model is (base model, head, LoRA settings), what it learned from (the data set and its splits
with their sizes), how well it does (the test metrics; with the mean and 95 % interval over seeds when the run's
setting was repeated; calibration when logged: any `*_ece` metric), how to make it again (the resolved config,
the command) and what it is for. Everything comes from the run's MLflow record; `huggingface_hub` writes it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from omegaconf import OmegaConf

from sentlab import stats, tags

SUMMARY = ("accuracy", "f1_macro", "precision_macro", "recall_macro", "loss")  # the test metrics in the card


def hub_id(source: str) -> str | None:
    """The backbone source as a hub id ('owner/name'), or None for a package, archive or local folder."""
    if ":" in source or source.count("/") != 1 or source.startswith((".", "/", "~")) or Path(source).exists():
        return None
    return source


def splits(run) -> dict[str, int | None]:
    """{split: rows} of the data sets logged as the run's inputs (context = the split)."""
    found = {}
    for item in run.inputs.dataset_inputs if run.inputs else []:
        context = {tag.key: tag.value for tag in item.tags}.get("mlflow.data.context")
        if context:
            found[context] = json.loads(item.dataset.profile or "{}").get("num_rows")
    return found


def repeats(client, run) -> list:
    """The FINISHED runs of the run's setting in its experiment (repeats over seeds), the run among them;
    children that reuse another run's results are left out (they would count it twice)."""
    setting = run.data.tags.get(tags.SETTING_HASH)
    if not setting:
        return [run]
    found = client.search_runs(
        [run.info.experiment_id],
        filter_string=f"tags.`{tags.SETTING_HASH}` = '{setting}' and attributes.status = 'FINISHED'",
    )
    return [r for r in found if tags.REUSES not in r.data.tags] or [run]


def metric_table(run, runs: list, names: list[str]) -> str:
    """A Markdown table: each metric of the run, and its mean [95 % interval] over the repeats if there are any."""
    over_seeds = len(runs) > 1
    head = "| metric | this run |" + (f" mean over {len(runs)} seeds [95 % interval] |" if over_seeds else "")
    lines = [head, "|---|---|" + ("---|" if over_seeds else "")]
    for name in names:
        row = f"| {name} | {run.data.metrics[name]:.4f} |"
        if over_seeds:
            ci = stats.mean_ci([r.data.metrics.get(name) for r in runs])
            interval = f" [{ci['low']:.4f}, {ci['high']:.4f}]" if math.isfinite(ci["low"]) else ""
            row += f" {ci['mean']:.4f}{interval} (n={ci['n']}) |"
        lines.append(row)
    return "\n".join(lines)


def command(run) -> str:
    """The command that trained the run: its overrides after `python -m sentlab.train`."""
    return " ".join(["python -m sentlab.train", run.data.tags.get(tags.OVERRIDES, "")]).strip()


def card_data(cfg, run, merged: bool):
    """The card's YAML metadata: base model, library, task, tags and the test results (model-index)."""
    from huggingface_hub import EvalResult, ModelCardData

    data = cfg.data
    results = [
        EvalResult(
            task_type="text-classification",
            dataset_type=data.get("hub_id") or data.name,
            dataset_name=data.name,
            dataset_split="test",
            metric_type=name,
            metric_value=round(run.data.metrics[f"test_{name}"], 4),
        )
        for name in SUMMARY
        if f"test_{name}" in run.data.metrics and name != "loss"
    ]
    return ModelCardData(
        base_model=hub_id(str(cfg.backbone.source)),
        library_name="transformers" if merged else "peft",
        pipeline_tag="text-generation" if cfg.head.name == "generative" else "text-classification",
        language="en",
        tags=["sentlab", "lora", "sentiment-analysis", str(data.name)],
        model_name=run.info.run_name,
        eval_results=results or None,
    )


def method(cfg) -> str:
    """The fine-tuning method, its settings (the lora.* keys for the LoRA family) and the training, as a list."""
    from sentlab.methods import METHODS

    name = str(cfg.method.name) if "method" in cfg else "lora"  # runs from before the method group: LoRA
    known = METHODS.get(name)
    lines = [f"- method: {name}" + (f": {known.summary}" if known else "")]
    if known is None or known.lora_keys:
        lora = cfg.lora
        targets = ", ".join(lora.target_modules) if lora.target_modules else "peft's default for the architecture"
        lines.append(f"- LoRA r={lora.r}, alpha={lora.alpha}, dropout={lora.dropout}, bias={lora.bias}")
        lines.append(f"- LoRA on: {targets}; modules also trained: {lora.modules_to_save or 'none'}")
    settings = {key: value for key, value in (cfg.method.items() if "method" in cfg else []) if key != "name"}
    if settings:
        lines.append("- method settings: " + ", ".join(f"{key}={value}" for key, value in settings.items()))
    train = cfg.train
    lines.append(f"- head: {cfg.head.name}; quantization of the base: {cfg.quant.name}")
    lines.append(
        f"- training: {train.epochs} epochs, lr {train.lr}, batch {train.batch_size}, max_length "
        f"{train.max_length}, seed {train.seed}, kept epoch: {train.keep} (by val_{train.select_metric})"
    )
    return "\n".join(lines)


def data_section(cfg, run) -> str:
    data, sizes = cfg.data, splits(run)
    where = "local files (data.dir)" if data.get("dir") else f"the hub ({data.get('hub_id')})"
    rows = ", ".join(f"{split} {n}" for split, n in sizes.items()) or "not recorded"
    note = " (synthetic reviews written by sentlab's generator: a demo, not a benchmark)" if data.name == "demo" else ""
    return (
        f"- data set: {data.name}{note}, from {where}\n- splits (rows): {rows}\n- labels: {', '.join(data.label_names)}"
    )


def uses(cfg) -> str:
    labels = ", ".join(cfg.data.label_names)
    demo = (
        "\n- It was trained on sentlab's synthetic demo data: good for trying the pipeline out, not for judging "
        "real reviews."
        if cfg.data.name == "demo"
        else ""
    )
    return (
        f"Intended use: sorting short English texts like those of the {cfg.data.name} data set into {labels}.\n\n"
        "Limits:\n"
        f"- It knows only these labels and the domain of its training data; elsewhere its accuracy is unknown.\n"
        f"- Texts are cut at {cfg.train.max_length} tokens.\n"
        "- Its probabilities are not calibrated unless a calibration metric above says how well they are.\n"
        "- Sarcasm, negation and mixed opinions are where sentiment classifiers fail first; check its errors on "
        "your own data before relying on it." + demo
    )


def usage(cfg) -> str:
    """Loading the folder with transformers alone (peft installed for an adapter beside the base)."""
    if cfg.head.name == "generative":
        return (
            "`AutoModelForCausalLM.from_pretrained(FOLDER)`: the prompt template and the label words it scores are "
            "in `classifier.json`."
        )
    return """```python
from transformers import pipeline

classify = pipeline("text-classification", model="FOLDER_OR_REPO")
classify("I love it, great product.")
```"""


def body(cfg, run, runs: list) -> str:
    metrics = run.data.metrics
    test = [f"test_{name}" for name in SUMMARY if f"test_{name}" in metrics]
    ece = sorted(name for name in metrics if name.endswith("_ece") or name == "temperature")
    calibration = metric_table(run, runs, ece) if ece else "Not measured for this run."
    config = OmegaConf.to_yaml(cfg, resolve=True)
    return f"""# {run.info.run_name}

A sentiment classifier fine-tuned with sentlab (MLflow run `{run.info.run_id}`).

## Model

- base model: {cfg.backbone.name} (`{cfg.backbone.source}`)
{method(cfg)}

## Data

{data_section(cfg, run)}

## Results (test split)

{metric_table(run, runs, test)}

## Calibration

{calibration}

## How to use

{usage(cfg)}

## Intended use and limits

{uses(cfg)}

## How it was trained

```
{command(run)}
```

The resolved config:

```yaml
{config}```
"""


def card(cfg, run, client, merged: bool):
    """The run's model card (a huggingface_hub.ModelCard): `card.save(folder / "README.md")`."""
    from huggingface_hub import ModelCard

    runs = repeats(client, run)
    return ModelCard(f"---\n{card_data(cfg, run, merged).to_yaml()}\n---\n\n{body(cfg, run, runs)}")
