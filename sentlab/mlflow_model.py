"""A run's classifier as an MLflow model: the one way to rebuild a classifier from a run.

Every run logs `model` (an MLflow 3 logged model, pyfunc flavour) whose artifacts are the run's
config.yaml and adapter/ (LoRA weights, head, tokenizer). The base weights are referenced, not
copied: loading rebuilds the base from backbone.source (hub id, folder, `package:`, `gguf:` or `zip-parts:`)
through sentlab.backbones, so sentlab must be importable where the model loads (e.g. `mlflow models
serve --env-manager local`). `tracking.log_model=merged` logs the adapter folded into the
full-precision base instead: self-contained, base-sized.

Given a DataFrame with a `text` column the model returns, per row, `label`, its `probability`, and
`prob_<label>` for every label (a generative run scores its label words; never free text).
sentlab.predict, export, evaluate and `mlflow models serve` all load through `load`/`build` here.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from sentlab import tracking  # noqa: E402
from sentlab.errors import ConfigError  # noqa: E402

mlflow = tracking.mlflow
log = logging.getLogger(__name__)
ARTIFACT = "model"  # the model's name in every run: runs:/RUN_ID/model
EXAMPLE_ROWS = 16  # test texts kept as the input example (also the held-out batch an export checks)
MERGE_TOLERANCE = 1e-3  # largest log-probability difference a merge may make (float rounding only)
REQUIREMENTS = ("torch", "transformers", "peft", "mlflow", "pandas", "omegaconf")  # pinned as installed


class Classifier:
    """A model rebuilt from a run, with its head: labels and probabilities for texts."""

    def __init__(self, model, head, cfg, adapter: str | None = None):
        self.model, self.head, self.cfg = model, head, cfg
        self.label_names = list(head.label_names)
        self.adapter = adapter  # on a base shared by several runs: the adapter to switch to (build_shared)
        self.precision = cfg.train.precision  # of its forward passes, as train.precision (auto: the hardware's)

    def evaluate(self, texts: list[str], labels: list[int] | None = None, batch_size: int | None = None):
        """sentlab.training's Evaluation of texts (labels: ids into label_names, else the loss is meaningless):
        the run's own evaluation path, in batches sorted by length."""
        from datasets import Dataset

        from sentlab.training import evaluate

        if self.adapter:
            self.model.set_adapter(self.adapter)
        rows = Dataset.from_dict({"text": list(texts), "label": list(labels or [0] * len(texts))})
        settings = SimpleNamespace(
            eval_batch_size=batch_size or self.cfg.train.eval_batch_size, precision=self.precision
        )
        return evaluate(self.model, self.head, self.head.encode(rows), settings, self.model.device, desc="predict")

    def log_probs(self, texts: list[str], batch_size: int | None = None):
        """[n, n_labels] log-probabilities."""
        import numpy as np

        if not texts:
            return np.zeros((0, len(self.label_names)), dtype=np.float32)
        return self.evaluate(texts, batch_size=batch_size).log_probs

    def predict(self, texts: list[str], batch_size: int | None = None):
        """A DataFrame: label, probability, prob_<label> for every label; one row per text."""
        import numpy as np
        import pandas as pd

        probs = np.exp(self.log_probs(texts, batch_size).astype(np.float64))
        best = probs.argmax(axis=1)
        frame = pd.DataFrame(
            {"label": [self.label_names[i] for i in best], "probability": probs[np.arange(len(best)), best]}
        )
        for i, name in enumerate(self.label_names):
            frame[f"prob_{name}"] = probs[:, i]
        return frame


def labels_of(cfg) -> SimpleNamespace:
    """What a head needs to know of the data: label names and words, from a run's config."""
    names = list(cfg.data.label_names)
    return SimpleNamespace(label_names=names, label_words=list(cfg.data.get("label_words") or names))


def build(cfg, folder: str, merged: bool = False, full_precision: bool = False) -> Classifier:
    """The classifier of a run config: its base rebuilt from backbone.source (quantized as the run was,
    unless full_precision) with the adapter in `folder` on top; or, merged, the full model in `folder`."""
    from sentlab import backbones, quant

    quant.import_only_if_needed(cfg.quant)  # before peft imports bitsandbytes
    from peft import PeftModel
    from transformers import AutoTokenizer

    from sentlab.heads import make_head
    from sentlab.training import pick_device

    tokenizer = AutoTokenizer.from_pretrained(folder)  # saved with its pad token
    head = make_head(cfg, tokenizer, labels_of(cfg))
    if merged:
        model = head.model_class().from_pretrained(folder)
    else:
        quantization = None if full_precision else quant.quantization_config(cfg.quant)
        base = backbones.load_model(
            head.model_class(),
            cfg.backbone,
            tokenizer,
            quantization_config=quantization,
            head_from_adapter=True,
            **head.model_kwargs(),
        )
        model = PeftModel.from_pretrained(base, folder)
    if not quant.is_4bit(model) and not getattr(model, "is_loaded_in_8bit", False):
        model = model.to(pick_device("auto"))  # bitsandbytes places quantized weights itself
    return Classifier(model.eval(), head, cfg)


def build_shared(paths: list[dict[str, str]], refs: list[str]) -> list[Classifier]:
    """Classifiers of several runs on one base: the base is loaded once, each run's adapter is added to it
    (peft load_adapter) and switched to when that run predicts. The runs must share backbone, head style,
    quantization and number of labels."""
    from omegaconf import OmegaConf

    from sentlab.heads import make_head

    cfgs = [OmegaConf.load(p["config"]) for p in paths]

    def base(cfg):
        return (
            f"backbone.source={cfg.backbone.source} head={cfg.head.name} quant={cfg.quant.name} "
            f"labels={len(cfg.data.label_names)}"
        )

    for ref, path, cfg in zip(refs, paths, cfgs):
        if "adapter" not in path:
            raise ConfigError(
                f"{ref}: its model is merged (tracking.log_model=merged); comparing swaps adapters "
                "on one base: compare runs logged with tracking.log_model=adapter"
            )
        if base(cfg) != base(cfgs[0]):
            raise ConfigError(f"{ref}: {base(cfg)}, but {refs[0]}: {base(cfgs[0])}; compare runs of one base")
    first = build(cfgs[0], paths[0]["adapter"])
    first.adapter = "default"  # peft's name for the adapter loaded first
    classifiers = [first]
    for i, (path, cfg) in enumerate(zip(paths[1:], cfgs[1:]), start=1):
        first.model.load_adapter(path["adapter"], adapter_name=f"run{i}")
        head = make_head(cfg, first.head.tokenizer, labels_of(cfg))
        classifiers.append(Classifier(first.model, head, cfg, adapter=f"run{i}"))
    return classifiers


class MergeMismatch(RuntimeError):
    """The merged model does not predict as the adapter does."""


def merge(cfg, adapter_dir: str, texts: list[str]) -> tuple[Classifier, float]:
    """The adapter folded into the full-precision base (a QLoRA run's base is reloaded unquantized), checked
    to predict as the adapter does on `texts`: (classifier, largest log-probability difference)."""
    import numpy as np

    from sentlab import adapters

    classifier = build(cfg, adapter_dir, full_precision=True)
    classifier.precision = "fp32"  # the check compares two ways of adding the same weights: no bf16 rounding in it
    before = classifier.log_probs(texts)
    classifier.model = adapters.merge(classifier.model)
    after = classifier.log_probs(texts)
    diff = float(np.abs(before - after).max())
    if diff > MERGE_TOLERANCE or (before.argmax(axis=1) != after.argmax(axis=1)).any():
        raise MergeMismatch(
            f"the merged model's predictions differ from the adapter's on {len(texts)} held-out "
            f"texts (largest log-probability difference {diff:.2e})"
        )
    return classifier, diff


def save(classifier: Classifier, folder: Path) -> None:
    """A Hugging Face folder: weights (safetensors), config with the label names as id2label, tokenizer,
    and for a generative run its prompt template and label words (classifier.json)."""
    import json

    names = classifier.label_names
    config = classifier.model.config
    config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    classifier.model.save_pretrained(folder)
    classifier.head.tokenizer.save_pretrained(folder)
    if classifier.head.name == "generative":
        head, built = classifier.cfg.head, classifier.head
        # The template as the model reads it (rendered through the chat template with head.chat_template).
        info = {
            "template": built.prefix + "{text}" + built.suffix,
            "label_prefix": built.label_prefix,
            "add_bos": bool(head.add_bos),
            "label_names": names,
            "label_words": built.label_words,
            "chat_template": built.chat_template,
            "calibration": built.calibration,
            "use": "score each prefix+label word after the filled template; the best one is the label",
        }
        if built.calibration == "contextual":
            info["content_free"] = built.content_free
            info["use"] += (
                "; contextual calibration: divide the label probabilities by the mean label "
                "probabilities of the content_free texts, renormalize"
            )
        (Path(folder) / "classifier.json").write_text(json.dumps(info, indent=1))


# -- MLflow --------------------------------------------------------------------------------------


class SentlabModel(mlflow.pyfunc.PythonModel):
    """The pyfunc: rebuilds the classifier from its artifacts; DataFrame[text] -> label and probabilities."""

    _skip_type_hint_validation = True  # the signature is given at logging (else MLflow warns: no type hints)

    def load_context(self, context):
        self.classifier = from_artifacts(context.artifacts)

    def predict(self, context, model_input, params=None):
        return self.classifier.predict(model_input["text"].tolist())


def from_artifacts(paths: dict[str, str]) -> Classifier:
    """A classifier from a model's local artifacts: config and adapter, or config and merged."""
    from omegaconf import OmegaConf

    cfg = OmegaConf.load(paths["config"])
    if "merged" in paths:
        return build(cfg, paths["merged"], merged=True)
    return build(cfg, paths["adapter"])


def log_model(cfg, data):
    """Log the active run's model, after its config.yaml and adapter/ artifacts (copied from them, a few MB).

    tracking.log_model=merged logs the merged full model instead; tracking.registered_model=NAME
    registers a single run's model (a sweep registers its best run's when it ends, sentlab.sweep)."""
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, Schema

    names = list(data.label_names)
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema(
            [
                ColSpec("string", "label"),
                ColSpec("double", "probability"),
                *[ColSpec("double", f"prob_{name}") for name in names],
            ]
        ),
    )
    example = pd.DataFrame({"text": data.splits["test"]["text"][:EXAMPLE_ROWS]})
    run_id = mlflow.active_run().info.run_id
    register = cfg.tracking.get("registered_model") if mlflow.get_parent_run(run_id) is None else None
    artifacts = {"config": mlflow.get_artifact_uri("config.yaml")}
    pyfunc_log = logging.getLogger("mlflow.pyfunc")  # its notes on pickling and on the example, every run
    level, pyfunc_log.level = pyfunc_log.level, logging.ERROR
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if cfg.tracking.get("log_model", "adapter") == "merged":
                adapter = mlflow.artifacts.download_artifacts(mlflow.get_artifact_uri("adapter"), dst_path=tmp)
                save(merge(cfg, adapter, list(example["text"]))[0], Path(tmp) / "merged")
                artifacts["merged"] = str(Path(tmp) / "merged")
            else:
                artifacts["adapter"] = mlflow.get_artifact_uri("adapter")
            info = mlflow.models.Model.log(
                artifact_path=None,
                name=ARTIFACT,
                flavor=_Pyfunc,
                flavor_name="pyfunc",
                python_model=SentlabModel(),
                artifacts=artifacts,
                signature=signature,
                input_example=example,
                pip_requirements=requirements(),
                registered_model_name=register,
                validate_serving_input=False,
            )
    finally:
        pyfunc_log.setLevel(level)
    if register:
        log.info(
            f"registry: {register} version {info.registered_model_version} is models:/{register}/"
            f"{info.registered_model_version}"
        )
    return info


class _Pyfunc:
    """mlflow.pyfunc.log_model's flavour, for Model.log with validate_serving_input=False: pyfunc.log_model
    checks the input example by loading the model and predicting, which reloads the base (seconds a run)."""

    __name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(validate_serving_input=True, **kwargs):
        return mlflow.pyfunc.save_model(**kwargs)


def requirements() -> list[str]:
    """Explicit pins (MLflow's inference of them imports the model and takes seconds); sentlab itself
    is not on PyPI: install it where the model is served."""
    from importlib.metadata import version

    return [f"{name}=={version(name)}" for name in REQUIREMENTS]


def log_inputs(cfg, data, splits=("train", "val", "test")) -> None:
    """Each split as an MLflow dataset input (name, source, content digest, rows; the split as context)."""
    from mlflow.data.huggingface_dataset_source import HuggingFaceDatasetSource

    source = (
        data.source
        if cfg.data.get("dir")
        else HuggingFaceDatasetSource(path=cfg.data.hub_id, config_name=cfg.data.get("hub_subset"))
    )
    for split in splits:
        rows = data.splits[split]
        with warnings.catch_warnings():  # MLflow's notes: a folder "can be interpreted in multiple ways"
            warnings.simplefilter("ignore", UserWarning)  # (all local), integer columns hold no missing values
            dataset = mlflow.data.from_pandas(
                rows.to_pandas(), source=source, name=f"{data.name}-{split}", targets="label"
            )
            try:
                mlflow.log_input(dataset, context=split)
            except mlflow.exceptions.MlflowException as err:
                # Parallel jobs logging the same data set race to create it in the store (a unique constraint
                # fails for the later one, its transaction rolled back): the second try finds it and links it.
                if "unique" not in str(err).lower():
                    raise
                mlflow.log_input(dataset, context=split)


def held_out_texts(paths: dict[str, str]) -> list[str]:
    """The texts logged as the model's input example (the run's first test texts), from download's paths."""
    from mlflow.models import Model

    folder = Path(paths["config"]).parents[1]  # <model>/artifacts/config.yaml
    return Model.load(folder).load_input_example(folder)["text"].tolist()


def use_store(uri: str) -> None:
    """Point MLflow at an existing store (an entry point's --tracking-uri); never creates one."""
    if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise ConfigError(
            f"--tracking-uri: no MLflow store at {uri} (train a run first, or point --tracking-uri "
            "at the store, e.g. sqlite:///runs/mlflow.db or http://127.0.0.1:5000)"
        )
    mlflow.set_tracking_uri(uri)


def model_uri(ref: str) -> str:
    """A run id, runs:/ or models:/ URI as a model URI."""
    return ref if ref.startswith(("runs:/", "models:/")) else f"runs:/{ref}/{ARTIFACT}"


def download(ref: str, dst: str) -> dict[str, str]:
    """The local paths of a model's artifacts (config, adapter or merged), downloaded into dst.
    An unknown run or model, or a run without a model, is a ConfigError naming it and the fix."""
    from mlflow.exceptions import MlflowException
    from mlflow.models import Model

    uri, store = model_uri(ref), mlflow.get_tracking_uri()
    if uri.startswith("runs:/"):
        run_id = uri.removeprefix("runs:/").split("/")[0]
        try:
            mlflow.MlflowClient().get_run(run_id)
        except MlflowException:
            raise ConfigError(f"run {run_id}: no such run in {store} (check the run id, or --tracking-uri)") from None
    try:
        folder = mlflow.artifacts.download_artifacts(uri, dst_path=dst)
    except (MlflowException, OSError) as err:
        if uri.startswith("runs:/"):
            raise ConfigError(
                f"run {run_id}: has no MLflow model '{ARTIFACT}' (it was logged before runs "
                "logged models, or did not finish: train it again)"
            ) from None
        reason = getattr(err, "message", str(err)).splitlines()[0]
        raise ConfigError(f"{uri}: {reason} (check the model name and its version or alias in {store})") from None
    pyfunc = Model.load(folder).flavors.get("python_function", {})
    if "config" not in pyfunc.get("artifacts", {}):
        raise ConfigError(f"{uri}: not a sentlab model (no config artifact)")
    return {name: str(Path(folder) / a["path"]) for name, a in pyfunc["artifacts"].items()}


def check(tracking_cfg) -> None:
    """The model options of a run config, checked before its run starts."""
    if tracking_cfg.get("log_model", "adapter") not in ("adapter", "merged"):
        raise ConfigError(f"tracking.log_model: unknown value {tracking_cfg.log_model!r} (adapter or merged)")


def load(ref: str) -> Classifier:
    """The classifier of a run id, runs:/ or models:/ URI (what the pyfunc serves)."""
    with tempfile.TemporaryDirectory() as tmp:
        return from_artifacts(download(ref, tmp))


def register(name: str, run_id: str, alias: str) -> str:
    """Register a run's model under `name` and point `alias` at the new version; the version."""
    version = mlflow.register_model(model_uri(run_id), name)
    mlflow.MlflowClient().set_registered_model_alias(name, alias, version.version)
    return version.version
