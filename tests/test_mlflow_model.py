"""Every run logs an MLflow model (pyfunc) and its data sets: the model loads and predicts in a fresh process as it
does in-process, merged or not, and the run's inputs name, count and fingerprint each split."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import FAST, REPO, all_runs, tiny_args

TEXTS = ["a fine kettle, works well", "broke after a day", "it is okay"]
# In a fresh interpreter: load a model URI with MLflow alone and print its predictions as JSON: the labels (what
# predict returns by default), then the table (label, probability, prob_<label>: params predict_method).
FRESH = """import json, sys
import mlflow, pandas as pd
mlflow.set_tracking_uri(sys.argv[1])
model = mlflow.pyfunc.load_model(sys.argv[2])
texts = pd.DataFrame({"text": json.loads(sys.argv[3])})
table = model.predict(texts, params={"predict_method": "predict_table"})
print(json.dumps({"labels": model.predict(texts).tolist(), "table": table.to_dict(orient="records")}))
"""


def predict_in_fresh_process(uri: str, model_uri: str, texts: list[str]) -> tuple[dict, str]:
    """The fresh process's predictions, and what it wrote on stderr."""
    out = subprocess.run(
        [sys.executable, "-c", FRESH, uri, model_uri, json.dumps(texts)],
        cwd=REPO,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1]), out.stderr


@pytest.mark.parametrize("arch,head", [("bert", "seq_cls"), ("gpt_neox", "generative")])
def test_pyfunc_round_trip_in_a_fresh_process(arch, head, tiny_models, train, store, runs_dir):
    import mlflow

    from sentlab import mlflow_model

    words = ["head=generative", "data.label_words=[terrible,okay,great]", "train.max_length=256"]
    train(*tiny_args(tiny_models, arch), *FAST, *(words if head == "generative" else []))
    (run,) = all_runs(store())
    uri = f"sqlite:///{runs_dir}/mlflow.db"
    mlflow.set_tracking_uri(uri)

    (logged,) = mlflow.search_logged_models(
        [run.info.experiment_id], f"source_run_id = '{run.info.run_id}'", output_format="list"
    )
    assert logged.name == "model"  # MLflow 3's logged model: the UI's Models column
    info = mlflow.models.get_model_info(f"runs:/{run.info.run_id}/model")
    assert info.signature.inputs.input_names() == ["text"]
    assert info.signature.outputs.input_names() == ["label"]
    assert [(p.name, p.default) for p in info.signature.params.params] == [("predict_method", "predict")]
    size = sum(f.stat().st_size for f in (runs_dir / "mlartifacts" / "models").rglob("*") if f.is_file())
    assert size < 5 * 2**20  # the base is referenced, not copied

    fresh, stderr = predict_in_fresh_process(uri, f"runs:/{run.info.run_id}/model", TEXTS)
    here = mlflow_model.load(run.info.run_id).predict(TEXTS)
    assert fresh["labels"] == list(here["label"])
    table = fresh["table"]
    assert [r["label"] for r in table] == list(here["label"])
    for name in ("probability", "prob_negative", "prob_neutral", "prob_positive"):
        assert [r[name] for r in table] == pytest.approx(list(here[name]), abs=1e-6), name
    for noise in ("LOAD REPORT", "FutureWarning", "Loading weights"):  # loading is as quiet as a run
        assert noise not in stderr, stderr[-2000:]


def test_mlflow_evaluate_equals_sentlab_test_metrics(tiny_models, train, store, runs_dir):
    """MLflow's own classifier evaluation of a run's model, on the run's test rows, reads sentlab's numbers."""
    import mlflow
    import pandas as pd

    from sentlab import config, mlflow_model
    from sentlab.data import load_data

    train(*tiny_args(tiny_models, "bert"), *FAST, "train.epochs=2")
    (run,) = all_runs(store())
    mlflow.set_tracking_uri(f"sqlite:///{runs_dir}/mlflow.db")
    test = load_data(config.compose(FAST).data).splits["test"]  # the run's test rows (seeded)
    names = test.features["label"].names
    rows = pd.DataFrame({"text": test["text"], "label": [names[y] for y in test["label"]]})
    model_uri = f"runs:/{run.info.run_id}/model"
    assert mlflow.pyfunc.load_model(model_uri).predict(rows[["text"]]).ndim == 1  # MLflow's classifiers' labels

    with mlflow.start_run(experiment_id=run.info.experiment_id):
        result = mlflow.models.evaluate(
            model_uri,
            rows,
            targets="label",
            model_type="classifier",
            evaluator_config={"average": "macro", "label_list": names},  # sentlab's f1_macro, over every label
        )
    logged = run.data.metrics
    assert result.metrics["accuracy_score"] == pytest.approx(logged["test_accuracy"], abs=1e-9)
    assert result.metrics["f1_score"] == pytest.approx(logged["test_f1_macro"], abs=1e-9)
    assert result.metrics["recall_score"] == pytest.approx(logged["test_recall_macro"], abs=1e-9)
    assert mlflow_model.PREDICT_METHODS[0] == "predict"


def test_merged_model_predicts_as_the_adapter(tiny_models, train, store, runs_dir):
    import mlflow
    from omegaconf import OmegaConf

    from sentlab import classifier, mlflow_model

    train(*tiny_args(tiny_models, "roberta"), *FAST, "tracking.log_model=merged")
    (run,) = all_runs(store())
    mlflow.set_tracking_uri(f"sqlite:///{runs_dir}/mlflow.db")
    merged = mlflow_model.load(run.info.run_id)
    assert not hasattr(merged.model, "peft_config")  # a plain transformers model, self-contained
    cfg = OmegaConf.load(store().download_artifacts(run.info.run_id, "config.yaml"))
    adapter = classifier.load(cfg, store().download_artifacts(run.info.run_id, "adapter"))
    # the merge's own bound (float rounding of W + BA against W x + B A x: 3.1e-4 measured on this tiny model)
    assert merged.log_probs(TEXTS) == pytest.approx(adapter.log_probs(TEXTS), abs=classifier.MERGE_TOLERANCE)


def test_bad_log_model_option_stops_before_the_run(tiny_models, train, store):
    with pytest.raises(SystemExit) as exit_info:
        train(*tiny_args(tiny_models, "bert"), *FAST, "tracking.log_model=full")
    assert exit_info.value.code == 2
    assert all_runs(store()) == []


def test_datasets_are_logged_as_run_inputs(tiny_models, train, store):
    model = tiny_args(tiny_models, "bert")
    train(*model, *FAST, "run_name=a")
    train(*model, *FAST, "run_name=b", "data.max_samples.test=12")
    runs = {r.info.run_name: r for r in all_runs(store())}
    inputs = {name: {i.tags[0].value: i.dataset for i in run.inputs.dataset_inputs} for name, run in runs.items()}
    assert set(inputs["a"]) == {"train", "val", "test"}
    test = inputs["a"]["test"]
    assert test.name == "demo-test" and json.loads(test.profile)["num_rows"] == 24
    assert json.loads(test.source)["uri"].endswith("demo_data")
    assert inputs["a"]["train"].digest != test.digest
    assert inputs["b"]["train"].digest == inputs["a"]["train"].digest  # the same rows
    assert inputs["b"]["test"].digest != test.digest  # other rows: told apart


def test_hub_data_is_logged_by_its_hub_id(runs_dir):
    """A data set read from the hub is named by its hub id and subset (no network needed to log it)."""
    from types import SimpleNamespace

    import mlflow
    from datasets import Dataset
    from omegaconf import OmegaConf

    from sentlab import mlflow_model
    from sentlab.runs import Run, Store

    cfg = OmegaConf.create({"data": {"dir": None, "hub_id": "nyu-mll/glue", "hub_subset": "sst2"}})
    data = SimpleNamespace(name="sst2", splits={"test": Dataset.from_dict({"text": ["fine", "bad"], "label": [1, 0]})})
    runs_dir.mkdir()
    run = Run.new(Store(f"sqlite:///{runs_dir}/mlflow.db", "0"), "hub data", {})  # "0": MLflow's default experiment
    mlflow_model.log_inputs(run, cfg, data, splits=("test",))
    (logged,) = mlflow.get_run(run.id).inputs.dataset_inputs
    assert logged.dataset.source_type == "hugging_face"
    source = json.loads(logged.dataset.source)
    assert (source["path"], source["config_name"]) == ("nyu-mll/glue", "sst2")


def test_a_data_set_created_meanwhile_by_a_parallel_job_is_linked(tiny_models, train, store, monkeypatch):
    """Two jobs of a parallel sweep create the same data set in the store at once: the later one's insert fails
    on the store's unique constraint, and its retry links the data set the other created."""
    import mlflow

    real, failed = mlflow.MlflowClient.log_inputs, []

    def racing(client, run_id, datasets=None, **kwargs):
        if not failed:  # the first call loses the race, as the store reports it
            failed.append(datasets[0].tags[0].value)  # its context: the split
            raise mlflow.exceptions.MlflowException("(sqlite3.IntegrityError) UNIQUE constraint failed: datasets.name")
        return real(client, run_id, datasets=datasets, **kwargs)

    monkeypatch.setattr(mlflow.MlflowClient, "log_inputs", racing)
    train(*tiny_args(tiny_models, "bert"), *FAST)
    (run,) = all_runs(store())
    assert run.info.status == "FINISHED" and failed == ["train"]
    assert sorted(i.tags[0].value for i in run.inputs.dataset_inputs) == ["test", "train", "val"]
