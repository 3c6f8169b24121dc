"""A run's classifier as an MLflow model, and the way back from any model reference to its classifier.

Every run logs `model` (an MLflow 3 logged model, pyfunc flavour) whose artifacts are the run's
config.yaml and adapter/ (LoRA weights, head, tokenizer). The base weights are referenced, not
copied: loading rebuilds the base from backbone.source (hub id, folder, `package:`, `gguf:` or `zip-parts:`)
through sentlab.models, so sentlab must be importable where the model loads (e.g. `mlflow models
serve --env-manager local`). `tracking.log_model=merged` logs the adapter folded into the
full-precision base instead: self-contained, base-sized.

Given a DataFrame with a `text` column the model returns, as MLflow's classifiers do, one label per row (an
array: what `mlflow.models.evaluate(..., model_type="classifier")` takes); the inference parameter
`predict_method` asks for more, as for mlflow.sklearn's models: `predict_proba` gives `prob_<label>` for every
label, `predict_table` the label, its `probability` and every `prob_<label>` (a generative run scores its label
words; never free text). Loading is quiet: transformers' load report, weight bars and known warnings stay out.
sentlab.predict, export, evaluate and `mlflow models serve` all reach a run's classifier through `fetch`/`load`.
"""

from __future__ import annotations

import logging
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")

from sentlab import classifier as classifiers  # noqa: E402
from sentlab import onnx_model, tracking  # noqa: E402
from sentlab.errors import ConfigError  # noqa: E402

mlflow = tracking.mlflow
log = logging.getLogger(__name__)
ARTIFACT = "model"  # the model's name in every run: runs:/RUN_ID/model
EXAMPLE_ROWS = 16  # test texts kept as the input example (also the held-out batch an export checks)
ONNX_ENV = "SENTLAB_SERVE_ONNX"  # =1: the pyfunc answers through ONNX Runtime (seq_cls, CPU; make serve ONNX=1)
REQUIREMENTS = ("torch", "transformers", "peft", "mlflow", "pandas", "omegaconf")  # pinned as installed


# -- a logged model's files, and its classifier -----------------------------------------------------


@dataclass
class ModelFiles:
    """A logged model's artifacts, downloaded: the run's config, and its adapter folder or its merged model."""

    cfg: object  # the run's config (DictConfig)
    adapter: str | None
    merged: str | None
    folder: Path  # the model's own folder (MLmodel, input example)
    run_id: str | None  # the run that logged it

    def classifier(self, full_precision: bool = False) -> classifiers.Classifier:
        return classifiers.load(self.cfg, self.adapter, self.merged, full_precision=full_precision)

    def serving_classifier(self) -> classifiers.Classifier:
        """The classifier as predict and a served model use it: the adapter merged into its base where that is exact
        (classifier.merged_for_serving)."""
        return classifiers.merged_for_serving(self.classifier())

    def onnx_classifier(self) -> onnx_model.OnnxClassifier:
        """The merged classifier exported to ONNX (checked against PyTorch on the held-out texts), run by ONNX
        Runtime: what the pyfunc serves with SENTLAB_SERVE_ONNX=1."""
        onnx_model.check_exportable(self.cfg)
        classifier = self.classifier()
        classifier.precision = "fp32"  # what the graph computes
        classifier = classifiers.merged_for_serving(classifier)
        with tempfile.TemporaryDirectory() as tmp:  # the session holds the graph in memory
            path = Path(tmp) / onnx_model.FILE
            onnx_model.export(classifier, path, self.held_out_texts())
            return onnx_model.OnnxClassifier(path, classifier.head, classifier.cfg)

    def held_out_texts(self) -> list[str]:
        """The texts logged as the model's input example (the run's first test texts)."""
        from mlflow.models import Model

        return Model.load(self.folder).load_input_example(self.folder)["text"].tolist()


def _files(folder: Path, artifacts: dict[str, str]) -> ModelFiles:
    from mlflow.models import Model
    from omegaconf import OmegaConf

    return ModelFiles(
        cfg=OmegaConf.load(artifacts["config"]),
        adapter=artifacts.get("adapter"),
        merged=artifacts.get("merged"),
        folder=folder,
        run_id=Model.load(folder).run_id,
    )


def fetch(ref: str, dst: str) -> ModelFiles:
    """A model's files (a run id, runs:/ or models:/ URI), downloaded into dst. An unknown run or model, or a run
    without a model, is a ConfigError naming it and the fix."""
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
        folder = Path(mlflow.artifacts.download_artifacts(uri, dst_path=dst))
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
    return _files(folder, {name: str(folder / a["path"]) for name, a in pyfunc["artifacts"].items()})


def load(ref: str) -> classifiers.Classifier:
    """The classifier of a run id, runs:/ or models:/ URI, as the pyfunc serves it (adapter merged), loaded quietly."""
    from sentlab import console

    with tempfile.TemporaryDirectory() as tmp, console.quiet_loading():
        return fetch(ref, tmp).serving_classifier()


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


# -- the pyfunc -------------------------------------------------------------------------------------


PREDICT_METHODS = ("predict", "predict_proba", "predict_table")  # the pyfunc's params={"predict_method": ...}


class SentlabModel(mlflow.pyfunc.PythonModel):
    """The pyfunc: rebuilds the classifier from its artifacts; DataFrame[text] -> labels (or probabilities, or both:
    params predict_method)."""

    _skip_type_hint_validation = True  # the signature is given at logging (else MLflow warns: no type hints)

    def load_context(self, context):
        from sentlab import console

        artifacts = context.artifacts
        files = _files(Path(artifacts["config"]).parents[1], artifacts)
        onnx = os.environ.get(ONNX_ENV, "0") not in ("", "0")
        with console.quiet_loading():
            self.classifier = files.onnx_classifier() if onnx else files.serving_classifier()

    def predict(self, context, model_input, params=None):
        method = (params or {}).get("predict_method") or "predict"
        if method not in PREDICT_METHODS:
            raise ValueError(f"predict_method: unknown value {method!r} (one of: {', '.join(PREDICT_METHODS)})")
        table = self.classifier.predict(model_input["text"].tolist())
        if method == "predict":
            return table["label"].to_numpy()  # as mlflow.sklearn's classifiers: served as a plain list of labels
        if method == "predict_proba":
            return table[[f"prob_{name}" for name in self.classifier.label_names]]
        return table


class _Pyfunc:
    """mlflow.pyfunc.log_model's flavour, for Model.log with validate_serving_input=False: pyfunc.log_model
    checks the input example by loading the model and predicting, which reloads the base (seconds a run)."""

    __name__ = "mlflow.pyfunc"

    @staticmethod
    def save_model(validate_serving_input=True, **kwargs):
        return mlflow.pyfunc.save_model(**kwargs)


def requirements(cfg=None) -> list[str]:
    """Explicit pins (MLflow's inference of them imports the model and takes seconds); sentlab itself
    is not on PyPI: install it where the model is served. The lexicon baseline needs VADER's package."""
    from importlib.metadata import version

    names = [*REQUIREMENTS, *(["vaderSentiment"] if _is_lexicon(cfg) else [])]
    return [f"{name}=={version(name)}" for name in names]


def _is_lexicon(cfg) -> bool:
    return cfg is not None and cfg.get("method", {}).get("name") == "lexicon"


def log_model(run, cfg, data):
    """Log `run`'s model (a sentlab.runs.Run), after its config.yaml and adapter/ artifacts (copied from them, a
    few MB). tracking.log_model=merged logs the merged full model instead; tracking.registered_model=NAME
    registers a single run's model (a sweep registers its best run's when it ends, sentlab.sweep)."""
    import pandas as pd
    from mlflow.models import ModelSignature
    from mlflow.types import ColSpec, ParamSchema, ParamSpec, Schema

    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text")]),
        outputs=Schema([ColSpec("string", "label")]),  # the default predict_method's; the others add columns
        params=ParamSchema([ParamSpec("predict_method", "string", "predict")]),
    )
    example = pd.DataFrame({"text": data.splits["test"]["text"][:EXAMPLE_ROWS]})
    register = cfg.tracking.get("registered_model") if run.parent is None else None
    artifacts = {"config": run.artifact_uri("config.yaml")}
    # The logged model belongs to the run's experiment (with no active run, MLflow would pick its default one).
    model = mlflow.initialize_logged_model(name=ARTIFACT, source_run_id=run.id, experiment_id=run.store.experiment_id)
    pyfunc_log = logging.getLogger("mlflow.pyfunc")  # its notes on pickling and on the example, every run
    level, pyfunc_log.level = pyfunc_log.level, logging.ERROR
    try:
        with tempfile.TemporaryDirectory() as tmp:
            if cfg.tracking.get("log_model", "adapter") == "merged":
                adapter = mlflow.artifacts.download_artifacts(run.artifact_uri("adapter"), dst_path=tmp)
                merged, _ = classifiers.merge(cfg, adapter, list(example["text"]))
                classifiers.save(merged, Path(tmp) / "merged")
                artifacts["merged"] = str(Path(tmp) / "merged")
            elif not _is_lexicon(cfg):  # the lexicon baseline has no weights: its config is the whole model
                artifacts["adapter"] = run.artifact_uri("adapter")
            info = mlflow.models.Model.log(
                artifact_path=None,
                name=ARTIFACT,
                flavor=_Pyfunc,
                flavor_name="pyfunc",
                run_id=run.id,
                model_id=model.model_id,
                python_model=SentlabModel(),
                artifacts=artifacts,
                signature=signature,
                input_example=example,
                pip_requirements=requirements(cfg),
                registered_model_name=register,
                validate_serving_input=False,
            )
    finally:
        pyfunc_log.setLevel(level)
    if register:
        version = info.registered_model_version
        log.info(f"registry: {register} version {version} is models:/{register}/{version}")
    return info


def log_inputs(run, cfg, data, splits=("train", "val", "test")) -> None:
    """Each split as an MLflow dataset input of `run` (name, source, content digest, rows; the split as context)."""
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
                run.log_dataset(dataset, split)
            except mlflow.exceptions.MlflowException as err:
                # Parallel jobs logging the same data set race to create it in the store (a unique constraint
                # fails for the later one, its transaction rolled back): the second try finds it and links it.
                if "unique" not in str(err).lower():
                    raise
                run.log_dataset(dataset, split)
