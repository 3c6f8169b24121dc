"""sentlab.evaluate tests a trained run on another data set: a run of its own, tagged with the source run, with
the metrics and the confusion matrix, listed by compare; label names must match or be mapped with label_map."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import FAST, SHARED_DATA, all_runs, tiny_args

ROTTEN = ["data=rotten_tomatoes", f"data.dir={SHARED_DATA / 'rotten_tomatoes'}", "data.max_samples.test=40"]


def test_evaluate_on_another_data_set(tiny_models, train, store, runs_dir, capsys):
    from sentlab import compare, evaluate, mlflow_model
    from sentlab.data import load_data

    train(*tiny_args(tiny_models, "bert"), *FAST, "train.epochs=2")  # demo data: negative, neutral, positive
    (source,) = all_runs(store())
    uri = f"sqlite:///{runs_dir}/mlflow.db"
    assert evaluate.main([source.info.run_id, *ROTTEN, "--tracking-uri", uri]) == 0

    client = store()
    (run,) = [r for r in all_runs(client) if r.info.run_id != source.info.run_id]
    assert run.data.tags["sentlab.source_run_id"] == source.info.run_id
    assert run.info.run_name == f"evaluate {source.info.run_name} on rotten_tomatoes"
    (test,) = run.inputs.dataset_inputs
    assert test.tags[0].value == "test" and json.loads(test.dataset.profile)["num_rows"] == 40

    texts_labels = load_data(evaluate.compose_data(ROTTEN).data, only=("test",)).splits["test"]
    frame = mlflow_model.load(source.info.run_id).predict(texts_labels["text"])
    names = ["negative", "positive"]  # rotten_tomatoes' labels, found by name among the run's
    correct = [p == names[y] for p, y in zip(frame["label"], texts_labels["label"])]
    assert run.data.metrics["test_accuracy"] == pytest.approx(sum(correct) / len(correct))
    matrix = json.loads(Path(client.download_artifacts(run.info.run_id, "confusion_matrix.json")).read_text())
    assert matrix["labels"] == ["negative", "neutral", "positive"] and sum(map(sum, matrix["matrix"])) == 40
    assert sum(matrix["matrix"][1]) == 0  # no neutral reviews in rotten_tomatoes

    capsys.readouterr()
    assert compare.main(["--runs-dir", str(runs_dir), "--experiment", "sentlab", "--no-log"]) == 0
    assert "evaluate" in capsys.readouterr().out


def test_labels_must_match_or_be_mapped(tiny_models, train, store, runs_dir, tmp_path, capsys):
    from sentlab import evaluate

    folder = tmp_path / "mine"
    folder.mkdir()
    for split in ("train", "val", "test"):
        (folder / f"{split}.csv").write_text("text,label\ngreat kettle,good\nit leaks,bad\nlovely,good\n")
    mine = ["data=csv", f"data.dir={folder}", "data.label_names=[bad,good]"]
    train(*tiny_args(tiny_models, "bert"), *FAST, "train.epochs=0")
    (source,) = all_runs(store())
    uri = f"sqlite:///{runs_dir}/mlflow.db"
    for args, message in [
        (mine, "label_map: the data's labels bad, good are not labels of the run (negative, neutral, positive)"),
        ([*mine, "label_map.awful=negative"], "label_map.awful: 'awful' is not a label of the data"),
        (["train.lr=1"], "train.lr=1: an evaluation takes data=<group>"),
        (["data=nope"], "data=nope: "),
    ]:
        capsys.readouterr()
        assert evaluate.main([source.info.run_id, *args, "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert len(all_runs(store())) == 1  # nothing logged

    assert (
        evaluate.main(
            [source.info.run_id, *mine, "label_map.bad=negative", "label_map.good=positive", "--tracking-uri", uri]
        )
        == 0
    )
    (run,) = [r for r in all_runs(store()) if r.info.run_id != source.info.run_id]
    assert run.data.params["label_map.bad"] == "negative" and "test_accuracy" in run.data.metrics


def test_evaluate_and_predict_take_a_lone_test_file(tiny_models, train, store, runs_dir, tmp_path, capsys):
    """Only the split it tests: a folder with test.csv alone (train and val set to null), or the labelled file
    itself as data.dir; bad or missing columns and files are still one line. predict reads the same file."""
    from sentlab import evaluate, predict

    rows = "text,label\ngreat kettle,positive\nit leaks,negative\nit is a kettle,neutral\nlovely,positive\n"
    folder = tmp_path / "held_out"
    folder.mkdir()
    (folder / "test.csv").write_text(rows)
    (folder / "tweets.csv").write_text(rows)
    (folder / "bad.csv").write_text("review,stars\ngreat kettle,positive\n")
    train(*tiny_args(tiny_models, "bert"), *FAST, "train.epochs=0")
    (source,) = all_runs(store())
    run_id, uri = source.info.run_id, f"sqlite:///{runs_dir}/mlflow.db"

    nulls = ["data.files.train=null", "data.files.val=null"]
    for args in ([f"data.dir={folder}", *nulls], [f"data.dir={folder / 'tweets.csv'}"], [f"data.dir={folder}"]):
        assert evaluate.main([run_id, "data=csv", *args, "--tracking-uri", uri]) == 0, args
    evaluations = [r for r in all_runs(store()) if r.info.run_id != run_id]
    assert len(evaluations) == 3
    assert all(r.data.params["dataset.test_size"] == "4" for r in evaluations)

    for args, message in [
        ([f"data.dir={folder / 'bad.csv'}"], "data.text_column: column 'text' not in bad.csv"),
        ([f"data.dir={folder}", "data.files.test=nope.csv"], "data.files.test: file not found"),
        ([f"data.dir={folder}", "data.files.test=null"], "data.files.test: no test file given"),
    ]:
        capsys.readouterr()
        assert evaluate.main([run_id, "data=csv", *args, "--tracking-uri", uri]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err

    capsys.readouterr()
    assert predict.main([run_id, "--file", str(folder / "tweets.csv"), "--tracking-uri", uri]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 4 and all(line["label"] in ("negative", "neutral", "positive") for line in lines)
