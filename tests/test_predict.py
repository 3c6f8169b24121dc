"""A run's model, loaded back through sentlab.mlflow_model, reproduces the run's own test accuracy; sentlab.predict
reads texts from arguments, files and standard input, writes JSONL or CSV, and compares runs on one base."""

from __future__ import annotations

import csv
import io
import json

import pytest
from conftest import FAST, all_runs, tiny_args

# generative: one-token label words and room for the long Instruction/Input/Response prompt
GENERATIVE = ["head=generative", "data.label_words=[terrible,okay,great]", "train.max_length=256"]


@pytest.fixture
def uri(runs_dir):
    """The test's store, also as MLflow's current one (what predict's --tracking-uri sets)."""
    from sentlab import tracking

    uri = f"sqlite:///{runs_dir}/mlflow.db"
    tracking.mlflow.set_tracking_uri(uri)
    return uri


@pytest.mark.parametrize("arch,head", [("bert", "seq_cls"), ("gpt_neox", "seq_cls"), ("gpt_neox", "generative")])
def test_logged_model_reproduces_test_accuracy(arch, head, tiny_models, train, store, uri):
    from omegaconf import OmegaConf

    from sentlab import mlflow_model
    from sentlab.data import load_data

    train(*tiny_args(tiny_models, arch), *FAST, *(GENERATIVE if head == "generative" else []), "train.epochs=2")
    (run,) = all_runs(store())
    classifier = mlflow_model.load(run.info.run_id)

    cfg = OmegaConf.load(store().download_artifacts(run.info.run_id, "config.yaml"))
    test = load_data(cfg.data).splits["test"]
    frame = classifier.predict(test["text"], batch_size=5)  # batches sorted by length, answers in input order
    correct = [label == classifier.label_names[y] for label, y in zip(frame["label"], test["label"])]
    assert sum(correct) / len(correct) == pytest.approx(run.data.metrics["test_accuracy"])
    probs = frame[[f"prob_{n}" for n in classifier.label_names]]
    assert (probs.sum(axis=1) - 1).abs().max() < 1e-5
    assert (frame["probability"] == probs.max(axis=1)).all()


def test_predict_cli_files_stdin_and_compare(tiny_models, train, store, uri, runs_dir, tmp_path, capsys, monkeypatch):
    from sentlab import predict

    model = tiny_args(tiny_models, "bert")
    train(*model, *FAST, "train.epochs=0", "run_name=zero-shot")
    train(*model, *FAST, "train.epochs=2", "run_name=trained")
    runs = {r.info.run_name: r.info.run_id for r in all_runs(store())}
    texts = ["a fine kettle, works well", "broke after a day", 'it is "okay", I guess']
    capsys.readouterr()

    assert predict.main([runs["trained"], *texts, "--tracking-uri", uri]) == 0
    from_args = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["text"] for r in from_args] == texts
    assert all(r["label"] in ("negative", "neutral", "positive") for r in from_args)

    table = tmp_path / "reviews.csv"
    with open(table, "w", newline="") as f:
        csv.writer(f).writerows([["id", "review"], *[[i, t] for i, t in enumerate(texts)]])
    out = tmp_path / "preds.csv"
    assert (
        predict.main(
            [runs["trained"], "--file", str(table), "--text-column", "review", "--out", str(out), "--tracking-uri", uri]
        )
        == 0
    )
    with open(out, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["text"] for r in rows] == texts
    assert [r["label"] for r in rows] == [r["label"] for r in from_args]
    assert [float(r["prob_positive"]) for r in rows] == pytest.approx([r["prob_positive"] for r in from_args])

    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(texts) + "\n"))
    assert predict.main([f"runs:/{runs['trained']}/model", "--tracking-uri", uri]) == 0
    assert [json.loads(line)["label"] for line in capsys.readouterr().out.splitlines()] == [
        r["label"] for r in from_args
    ]

    # Before / after training, one base: the trained run's column equals its own predictions.
    out = tmp_path / "compare.jsonl"
    assert (
        predict.main(
            [*texts, "--compare", runs["zero-shot"], runs["trained"], "--out", str(out), "--tracking-uri", uri]
        )
        == 0
    )
    side = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r[f"{runs['trained']}:label"] for r in side] == [r["label"] for r in from_args]
    # One model alone is merged into its base where it computes in fp32 (mlflow_model.load); --compare swaps
    # unmerged adapters on one base: the same sums, rounded differently.
    probs = [r[f"{runs['trained']}:probability"] for r in side]
    assert probs == pytest.approx([r["probability"] for r in from_args], abs=1e-3)
    zero = predict.main([runs["zero-shot"], *texts, "--tracking-uri", uri])
    assert zero == 0
    alone = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    zero_shot = [r[f"{runs['zero-shot']}:probability"] for r in side]
    assert zero_shot == pytest.approx([r["probability"] for r in alone], abs=1e-3)  # merged alone, as above


@pytest.mark.parametrize(
    "case,args,message",
    [
        ("no store", ["0123456789abcdef", "text"], "--tracking-uri: no MLflow store at"),
        ("unknown run", ["0123456789abcdef", "RUN"], "run 0123456789abcdef: no such run in"),
        ("no column", ["RUN", "--file", "FILE", "--text-column", "body"], "--text-column: no column 'body'"),
        ("no texts", ["RUN"], "texts: none given"),
        ("bad out", ["RUN", "x", "--out", "preds.xlsx"], "--out: unknown format"),
        ("no model", ["NOMODEL", "text"], "has no MLflow model 'model'"),
        ("unknown alias", ["models:/nobody@champion", "text"], "models:/nobody@champion:"),
    ],
)
def test_predict_bad_input_is_one_line(
    case, args, message, tiny_models, train, store, uri, tmp_path, capsys, monkeypatch
):
    from sentlab import predict, tracking

    run_id = nomodel = "x"
    if "RUN" in args:
        train(*tiny_args(tiny_models, "bert"), *FAST, "train.epochs=0")
        (run,) = all_runs(store())
        run_id = run.info.run_id
    elif case != "no store":
        store().search_experiments()  # creates the store
    if "NOMODEL" in args:  # a run logged before runs logged models
        with tracking.mlflow.start_run() as old:
            nomodel = old.info.run_id
    table = tmp_path / "t.csv"
    table.write_text("text\nfine\n")
    args = [{"RUN": run_id, "FILE": str(table), "NOMODEL": nomodel}.get(a, a) for a in args]
    monkeypatch.setattr("sys.stdin", io.StringIO(""))
    capsys.readouterr()
    assert predict.main([*args, "--tracking-uri", uri]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err
