"""The numbers MLflow shows for a run are the model it keeps: with train.keep=best, a run's val_* (its latest
value: what the UI table, run.data.metrics and search_runs give) are the kept epoch's, the per-epoch curve is
epoch/val_*, and the sweep's best run, compare's table and the @champion registration read those numbers."""

from __future__ import annotations

import csv

import pytest
from conftest import FAST, all_runs, tiny_args

from sentlab import tags


def test_mlflow_shows_the_kept_epoch_and_everything_reads_it(tiny_models, train, store, runs_dir, capsys):
    from sentlab import compare

    # train.patience=1 stops training after the first epoch that does not beat the best: the last epoch
    # trained is then never the one kept, so MLflow's latest per-epoch value would be the wrong one.
    settings = ["train.epochs=20", "train.patience=1", "train.keep=best", "tracking.registered_model=kept"]
    train("-m", *tiny_args(tiny_models, "bert"), *FAST, "train.lr=5e-3,2e-2", *settings)
    client = store()
    children = [r for r in all_runs(client) if tags.PARENT_RUN_ID in r.data.tags]
    assert len(children) == 2
    for run in children:
        metrics = run.data.metrics
        kept, stopped = int(metrics["kept_epoch"]), int(metrics["stopped_epoch"])
        curve = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "epoch/val_f1_macro")}
        assert sorted(curve) == list(range(1, stopped + 1)) and kept < stopped
        assert metrics["val_f1_macro"] == curve[kept] == max(curve.values())
        assert [m.step for m in client.get_metric_history(run.info.run_id, "val_f1_macro")] == [0]  # one value

    values = {r.info.run_id: r.data.metrics["val_f1_macro"] for r in children}
    (parent,) = [r for r in all_runs(client) if r.data.tags.get(tags.SWEEP) == "parent"]
    best = parent.data.tags[tags.BEST_RUN_ID]  # (of runs that tie, either)
    assert values[best] == parent.data.metrics["best_val_f1_macro"] == max(values.values())
    assert client.get_model_version_by_alias("kept", "champion").run_id == best

    capsys.readouterr()
    assert compare.main(["--runs-dir", str(runs_dir), "--no-log"]) == 0
    with open(runs_dir / "compare" / parent.info.run_id / "compare.csv", newline="") as f:
        table = {row["run_id"]: float(row["val_f1_macro"]) for row in csv.DictReader(f)}
    assert table == values


def test_val_is_not_evaluated_again_after_training(tiny_models, train, store, monkeypatch):
    """After training a run evaluates the test split only: its val metrics, ECE and NLL come from the kept epoch's
    validation pass, and equal what a fresh pass of the kept model over val gives."""
    from sentlab import calibration, pipeline, training

    passes, seen = [], {}
    evaluate, test = pipeline._evaluate, pipeline._test
    monkeypatch.setattr(pipeline, "_evaluate", lambda *args: passes.append(args[-1]) or evaluate(*args))
    monkeypatch.setattr(pipeline, "_test", lambda run, prepared, model, features, *rest: seen.update(
        prepared=prepared, model=model, features=features) or test(run, prepared, model, features, *rest))  # fmt: skip
    # patience 1 over 20 epochs: training stops after an epoch that is not kept (keep=best puts the kept one back)
    train(*tiny_args(tiny_models, "bert"), *FAST, "train.epochs=20", "train.patience=1", "train.keep=best")
    assert passes == ["test"]

    (run,) = [r for r in all_runs(store()) if "val_ece" in r.data.metrics]
    metrics, cfg = run.data.metrics, seen["prepared"].cfg
    assert metrics["kept_epoch"] < metrics["stopped_epoch"]
    fresh = training.evaluate(seen["model"], seen["prepared"].head, seen["features"]["val"], seen["prepared"].device,
                              cfg.train.eval_batch_size, cfg.train.precision)  # fmt: skip
    summary = calibration.summary(fresh.log_probs, fresh.labels)
    assert metrics["val_loss"] == pytest.approx(fresh.loss, abs=1e-5)
    assert metrics["val_ece"] == pytest.approx(summary["ece"], abs=1e-5)
    assert metrics["val_nll"] == pytest.approx(summary["nll"], abs=1e-5)
