"""Calibration (sentlab.calibration): ECE by hand, temperature scaling on a planted over-confident model, and a run
with train.calibration=temperature whose MLflow model serves softmax(logits / T)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import FAST, all_runs, tiny_args

from sentlab import calibration

# (probabilities, label): confidences 0.9 (right), 0.9 (wrong), 0.65 (right), 0.75 (right)
HAND = [([0.9, 0.1], 0), ([0.9, 0.1], 1), ([0.65, 0.35], 0), ([0.25, 0.75], 1)]


def test_ece_by_hand():
    probs, labels = np.array([p for p, _ in HAND]), np.array([y for _, y in HAND])
    # 15 bins: 0.9 -> bin (13/15, 14/15] holds 2 rows, accuracy 0.5, confidence 0.9: 2/4 * 0.4 = 0.2;
    # 0.65 -> (9/15, 10/15]: 1/4 * |1 - 0.65| = 0.0875; 0.75 -> (11/15, 12/15]: 1/4 * |1 - 0.75| = 0.0625
    assert calibration.ece(probs, labels) == pytest.approx(0.35)
    # one bin: |accuracy 0.75 - mean confidence 0.8|
    assert calibration.ece(probs, labels, bins=1) == pytest.approx(0.05)
    bins = calibration.reliability(probs, labels)
    assert [(b["count"], b["accuracy"]) for b in bins] == [(1, 1.0), (1, 1.0), (2, 0.5)]
    # a perfectly calibrated picture: 0.75 confident, right 3 times in 4
    sure = np.array([[0.75, 0.25]] * 4)
    assert calibration.ece(sure, np.array([0, 0, 0, 1])) == pytest.approx(0.0)


def test_scale_is_softmax_of_logits_over_t():
    logits = np.array([[2.0, -1.0, 0.5], [0.1, 0.2, 3.0]])
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = np.exp(logits / 2.5) / np.exp(logits / 2.5).sum(axis=1, keepdims=True)
    assert np.exp(calibration.scale(log_probs, 2.5)) == pytest.approx(expected)
    assert calibration.scale(log_probs, 1.0) is log_probs


def test_temperature_fit_undoes_a_planted_overconfidence():
    """Labels drawn from softmax(z), the model says softmax(5 z): the fit finds T near 5 and lowers NLL and ECE."""
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1.5, size=(4000, 3))
    truth = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    labels = np.array([rng.choice(3, p=p) for p in truth])
    overconfident = 5 * z - np.log(np.exp(5 * z).sum(axis=1, keepdims=True))

    t = calibration.fit_temperature(overconfident, labels)
    fixed = calibration.scale(overconfident, t)
    assert 4.5 < t < 5.5
    assert calibration.nll(fixed, labels) < calibration.nll(overconfident, labels) - 0.5
    assert calibration.ece(np.exp(fixed), labels) < 0.03 < calibration.ece(np.exp(overconfident), labels)
    assert (fixed.argmax(axis=1) == overconfident.argmax(axis=1)).all()  # predictions unchanged


GENERATIVE = ["head=generative", "data.label_words=[terrible,okay,great]", "train.max_length=256"]


@pytest.mark.parametrize("arch,head", [("bert", "seq_cls"), ("gpt_neox", "generative"), ("bert", "merged")])
def test_a_temperature_run_logs_it_and_its_model_serves_logits_over_t(arch, head, tiny_models, train, store, runs_dir):
    """For the generative head the logits are its label-word scores; a merged model (tracking.log_model=merged)
    carries calibration.json in its merged folder."""
    import json

    import mlflow
    import pandas as pd

    from sentlab import mlflow_model

    extra = {"generative": GENERATIVE, "merged": ["tracking.log_model=merged"]}.get(head, [])
    train(*tiny_args(tiny_models, arch), *FAST, *extra, "train.calibration=temperature")
    (run,) = all_runs(store())
    metrics = run.data.metrics
    t = metrics["temperature"]
    assert t > 0 and t != 1.0
    for split in ("val", "test"):
        for name in ("ece", "nll"):
            assert f"{split}_{name}" in metrics and f"{split}_{name}_uncalibrated" in metrics
    assert metrics["val_nll"] <= metrics["val_nll_uncalibrated"] + 1e-9  # fitted to lower it on val
    artifacts = {a.path for a in store().list_artifacts(run.info.run_id)}
    assert {"reliability_val.png", "reliability_test.png"} <= artifacts
    saved = json.loads(open(store().download_artifacts(run.info.run_id, "adapter/calibration.json")).read())
    assert saved["temperature"] == pytest.approx(t)

    mlflow.set_tracking_uri(f"sqlite:///{runs_dir}/mlflow.db")
    texts = ["a fine kettle, works well", "broke after a day", "it is okay"]
    table = {"predict_method": "predict_table"}  # labels with their probabilities
    served = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model").predict(
        pd.DataFrame({"text": texts}), params=table
    )
    raw = mlflow_model.load(run.info.run_id)
    assert raw.temperature == pytest.approx(t)
    raw.temperature = 1.0  # the model's own log-probabilities: logits up to a shift per row
    logits = raw.log_probs(texts).astype(np.float64)
    expected = np.exp(logits / t) / np.exp(logits / t).sum(axis=1, keepdims=True)
    got = served[[f"prob_{name}" for name in raw.label_names]].to_numpy()
    assert got == pytest.approx(expected, abs=1e-5)


def test_every_run_logs_ece_without_a_temperature(tiny_models, train, store):
    train(*tiny_args(tiny_models, "bert"), *FAST, "train.epochs=0")
    (run,) = all_runs(store())
    metrics = run.data.metrics
    assert 0 <= metrics["val_ece"] <= 1 and 0 <= metrics["test_ece"] <= 1 and metrics["test_nll"] > 0
    assert "temperature" not in metrics and "test_ece_uncalibrated" not in metrics
    assert {"reliability_val.png", "reliability_test.png"} <= {a.path for a in store().list_artifacts(run.info.run_id)}
