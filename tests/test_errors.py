"""Error analysis: every run's misclassified test examples (test_errors.json, most confident first), and
`compare --errors` on a small sweep: the best run against each other one, example by example, and F1 per class."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, all_runs, tiny_args

NAMES = ["negative", "neutral", "positive"]


def test_error_table_by_hand():
    from sentlab.reports import errors_table
    from sentlab.training import Evaluation

    probs = np.array([[0.7, 0.2, 0.1], [0.1, 0.3, 0.6], [0.2, 0.5, 0.3], [0.05, 0.05, 0.9], [0.4, 0.35, 0.25]])
    labels = np.array([0, 0, 1, 1, 2])  # right, wrong (0.6), right, wrong (0.9), wrong (0.4)
    table = errors_table(Evaluation(0.0, np.log(probs), labels), list("abcde"), NAMES)
    assert table.id.tolist() == [3, 1, 4]  # only the wrong ones, most confident first
    assert table.text.tolist() == ["d", "b", "e"]
    assert table.label.tolist() == ["neutral", "negative", "positive"]
    assert table.prediction.tolist() == ["positive", "positive", "negative"]
    assert table.confidence.tolist() == pytest.approx([0.9, 0.6, 0.4])
    assert table.prob_neutral.tolist() == pytest.approx([0.05, 0.3, 0.35])


def _artifact(client, run_id, path):
    return client.download_artifacts(run_id, path)


def test_runs_log_their_errors_and_compare_errors_reads_them(tiny_models, train, store, runs_dir, capsys):
    from sklearn.metrics import f1_score

    from sentlab import compare, config, error_analysis
    from sentlab.data import load_data

    model = tiny_args(tiny_models, "bert")
    train(*model, *FAST, "train.epochs=0")  # zero-shot: compared too, as the baseline
    train("-m", *model, "lora.r=2,4", *FAST, "train.lr=5e-3")
    capsys.readouterr()
    client = store()
    runs = all_runs(client)
    texts = load_data(config.compose([*FAST, "train.epochs=0"]).data).splits["test"]["text"]

    # Each run's error table: exactly its wrong test rows, most confident first, with their texts.
    predictions = {}
    for run in runs:
        if run.data.tags.get("sentlab.sweep") == "parent":
            continue
        frame = pd.read_csv(_artifact(client, run.info.run_id, "test_predictions.csv"))
        predictions[run.info.run_id] = frame
        errors = pd.read_json(_artifact(client, run.info.run_id, "test_errors.json"), orient="split")
        wrong = frame[frame.label != frame.prediction]
        assert sorted(errors.id) == sorted(wrong.id)
        assert errors.confidence.tolist() == sorted(errors.confidence, reverse=True)
        assert errors.text.tolist() == [texts[i] for i in errors.id]
        assert (errors.label != errors.prediction).all()
        assert errors.confidence.to_numpy() == pytest.approx(errors.filter(like="prob_").max(axis=1).to_numpy())

    assert compare.main(["--runs-dir", str(runs_dir), "--errors"]) == 0
    out = capsys.readouterr().out
    assert "errors: the best run" in out and "per-class F1" in out
    (parent,) = [r for r in runs if r.data.tags.get("sentlab.sweep") == "parent"]
    folder = runs_dir / "compare" / parent.info.run_id / "errors"
    by_name = {r.info.run_name: r for r in runs if r.info.run_id in predictions}

    pairs = pd.read_csv(folder / "errors_vs_best.csv")
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    top = max(r.data.metrics["val_f1_macro"] for r in children)
    (best,) = set(pairs.best)
    assert by_name[best].data.metrics["val_f1_macro"] == top and len(pairs) == 2  # the other child, the baseline
    disagreements = pd.read_csv(folder / "disagreements.csv", keep_default_na=False)
    mine = predictions[by_name[best].info.run_id]
    for _, row in pairs.iterrows():
        theirs = predictions[by_name[row.other].info.run_id]
        a, b = mine.label == mine.prediction, theirs.label == theirs.prediction
        assert (row.both_right, row.only_best_right, row.only_other_right, row.both_wrong) == (
            (a & b).sum(), (a & ~b).sum(), (~a & b).sum(), (~a & ~b).sum(),
        )  # fmt: skip
        shown = disagreements[disagreements.other == row.other]
        assert sorted(shown.id) == sorted(mine.id[a != b])
        assert shown.text.tolist() == [texts[i] for i in shown.id]  # from the runs' error tables

    classes = pd.read_csv(folder / "per_class_f1.csv")
    for name, group in classes.groupby("run"):
        run, frame = by_name[name], predictions[by_name[name].info.run_id]
        assert group["class"].tolist() == NAMES and group.share.sum() == pytest.approx(1)
        assert group.f1.to_numpy() == pytest.approx(f1_score(frame.label, frame.prediction, labels=[0, 1, 2],
                                                             average=None, zero_division=0))  # fmt: skip
        assert group.f1.tolist() == pytest.approx([run.data.metrics[f"test_f1_{c}"] for c in NAMES])
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "compare/errors")}
    assert logged == {f"compare/errors/{name}" for name in error_analysis.FILES}
    assert (folder / "per_class_f1.png").stat().st_size > 1000


def test_pair_by_hand():
    from sentlab.error_analysis import pair

    def frame(preds, confidence):
        return pd.DataFrame({"id": range(4), "label": [0, 1, 2, 0], "prediction": preds, "confidence": confidence})

    best = frame([0, 1, 0, 2], [0.9, 0.8, 0.7, 0.6])  # right, right, wrong, wrong
    other = frame([0, 2, 2, 1], [0.5, 0.95, 0.4, 0.3])  # right, wrong, right, wrong
    counts, rows = pair(best, other, NAMES, {1: "one", 2: "two"})
    assert counts == {"examples": 4, "both_right": 1, "only_best_right": 1, "only_other_right": 1, "both_wrong": 1}
    assert rows.id.tolist() == [1, 2] and rows.right.tolist() == ["best", "other"]
    assert rows.text.tolist() == ["one", "two"] and rows.other_prediction.tolist() == ["positive", "positive"]
    counts, rows = pair(best, other.iloc[:3], NAMES, {})
    assert "not the same test set" in counts["note"] and rows.empty
