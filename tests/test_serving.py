"""`mlflow models serve` (what `make serve` runs) on 127.0.0.1, started and stopped by its pid: POST /invocations
answers with the labels (with params predict_method=predict_table, the probabilities too) of in-process prediction,
for a run's model (the packaged MiniLM) and for a registered model by its alias."""

from __future__ import annotations

import json
import os
import sys
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest
from conftest import FAST, all_runs, tiny_args
from test_server import _free_port, running

TEXTS = ["great value, works well", "broke after a day", "it is a kettle", "not bad at all, I would buy it again"]


@contextmanager
def served(model_uri: str, store_uri: str, log_path: Path, timeout_s: float = 180, env: dict | None = None):
    """`mlflow models serve -m MODEL --env-manager local` on a free loopback port; yields its base URL."""
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "mlflow",
        "models",
        "serve",
        "-m",
        model_uri,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
    ]
    env = {
        "MLFLOW_TRACKING_URI": store_uri,
        "HF_HUB_OFFLINE": "1",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",  # its uvicorn
        **(env or {}),
    }
    url = f"http://127.0.0.1:{port}"
    with running(command, f"{url}/ping", log_path, env, timeout_s):
        yield url


def invoke(url: str, texts: list[str], method: str | None = "predict_table") -> list:
    """The served answers: the table (label, probability, prob_<label>) per text, or a label per text (method=None)."""
    params = {"params": {"predict_method": method}} if method else {}
    body = json.dumps({"dataframe_records": [{"text": t} for t in texts], **params}).encode()
    request = urllib.request.Request(f"{url}/invocations", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=120) as answer:
        return json.loads(answer.read())["predictions"]


def test_served_model_answers_like_in_process(train, store, runs_dir):
    from sentlab import mlflow_model

    train(*FAST, "train.epochs=2", "tracking.registered_model=reviews")  # MiniLM, packaged
    (run,) = all_runs(store())
    store().set_registered_model_alias("reviews", "champion", "1")
    uri = f"sqlite:///{runs_dir}/mlflow.db"
    mlflow_model.mlflow.set_tracking_uri(uri)
    expected = mlflow_model.load(run.info.run_id).predict(TEXTS).to_dict(orient="records")

    for model_uri in (f"runs:/{run.info.run_id}/model", "models:/reviews@champion"):
        with served(model_uri, uri, runs_dir / "serve.log") as url:
            answers = invoke(url, TEXTS)
            one = invoke(url, TEXTS[:1])
            labels = invoke(url, TEXTS, method=None)
        assert labels == [e["label"] for e in expected], model_uri  # MLflow's classifier output: the labels
        assert [a["label"] for a in answers] == [e["label"] for e in expected], model_uri
        for answer, row in zip(answers, expected):
            assert answer.keys() == row.keys()
            assert all(abs(answer[k] - row[k]) < 1e-6 for k in row if k != "label"), (answer, row)
        assert one[0]["label"] == expected[0]["label"]
        assert abs(one[0]["probability"] - expected[0]["probability"]) < 1e-5  # alone, unpadded: same answer


def test_served_through_onnx_runtime(tiny_models, train, store, runs_dir, monkeypatch):
    """SENTLAB_SERVE_ONNX=1 (make serve ONNX=1): the pyfunc exports the merged model to ONNX at load (checked) and
    answers through ONNX Runtime, with the labels and, within 1e-4, the probabilities of PyTorch in-process (fp32)."""
    pytest.importorskip("onnxruntime")
    from sentlab import mlflow_model, onnx_model

    train(*FAST, *tiny_args(tiny_models, "roberta"))
    (run,) = all_runs(store())
    uri = f"sqlite:///{runs_dir}/mlflow.db"
    mlflow_model.mlflow.set_tracking_uri(uri)
    pytorch = mlflow_model.load(run.info.run_id)
    pytorch.precision = "fp32"  # as ONNX Runtime computes (auto may pick bf16 autocast: 1e-4 apart)
    expected = pytorch.predict(TEXTS).to_dict(orient="records")
    model_uri = f"runs:/{run.info.run_id}/model"
    monkeypatch.setenv(mlflow_model.ONNX_ENV, "1")
    in_process = mlflow_model.mlflow.pyfunc.load_model(model_uri)
    assert isinstance(in_process.unwrap_python_model().classifier, onnx_model.OnnxClassifier)

    with served(model_uri, uri, runs_dir / "serve.log", env={mlflow_model.ONNX_ENV: "1"}) as url:
        answers = invoke(url, TEXTS)
    assert [a["label"] for a in answers] == [e["label"] for e in expected]
    for answer, row in zip(answers, expected):
        assert all(abs(answer[k] - row[k]) < 1e-4 for k in row if k != "label"), (answer, row)


@pytest.mark.parametrize("arch", ["bert", "gpt_neox"])
def test_features_per_request_equal_the_datasets_path(tiny_models, arch):
    """What predict tokenizes per request (head.features, no datasets) is what a run's evaluation encodes."""
    from transformers import AutoTokenizer

    from sentlab.config import compose
    from sentlab.data import Labels
    from sentlab.heads import make_head
    from sentlab.heads.base import Head

    head_args = ["head=generative", "data.label_words=[terrible,okay,great]", "train.max_length=256"]
    cfg = compose([*tiny_args(tiny_models, arch), *(head_args if arch == "gpt_neox" else [])])
    head = make_head(cfg, AutoTokenizer.from_pretrained(tiny_models[arch]), Labels.of(cfg.data))
    texts = [*TEXTS, "a long one " * 200]
    direct = [{k: list(v) for k, v in f.items()} for f in head.features(texts)]
    through_datasets = [{k: list(v) for k, v in f.items() if k != "label"} for f in Head.features(head, texts)]
    assert direct == through_datasets
    assert len(direct[-1]["input_ids"]) <= cfg.train.max_length  # truncated alike
