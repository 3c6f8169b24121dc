"""A logged adapter, loaded back through sentlab.predict, reproduces the run's own test accuracy."""
from __future__ import annotations

import json

import pytest

from conftest import FAST, all_runs, tiny_args


@pytest.mark.parametrize("arch,head", [("bert", "seq_cls"), ("gpt_neox", "seq_cls"), ("gpt_neox", "generative")])
def test_logged_adapter_reproduces_test_accuracy(arch, head, tiny_models, train, store, runs_dir, capsys):
    from omegaconf import OmegaConf

    from sentlab import predict, tracking
    from sentlab.data import load_data

    # generative: one-token label words and room for the long Instruction/Input/Response prompt
    words = ["data.label_words=[terrible,okay,great]", "train.max_length=256"] if head == "generative" else []
    train(*tiny_args(tiny_models, arch), f"head={head}", *FAST, *words, "train.epochs=2")
    (run,) = all_runs(store())
    tracking.mlflow.set_tracking_uri(f"sqlite:///{runs_dir}/mlflow.db")
    model, head = predict.load_classifier(run.info.run_id)

    cfg = OmegaConf.load(store().download_artifacts(run.info.run_id, "config.yaml"))
    test = load_data(cfg.data).splits["test"]
    results = predict.predict(model, head, test["text"])
    correct = [r["label"] == head.label_names[y] for r, y in zip(results, test["label"])]
    assert sum(correct) / len(correct) == pytest.approx(run.data.metrics["test_accuracy"])
    assert all(abs(sum(r["probs"].values()) - 1) < 1e-3 for r in results)

    capsys.readouterr()
    predict.main([run.info.run_id, "--tracking-uri", f"sqlite:///{runs_dir}/mlflow.db", "a fine kettle"])
    line = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert line["text"] == "a fine kettle" and line["label"] in head.label_names
