"""sentlab.compare on a tiny sweep with a zero-shot baseline: the table (printed, CSV) and the plots."""

from __future__ import annotations

import csv

import pytest
from conftest import FAST, tiny_args


def test_compare_table_and_plots(tiny_models, train, store, runs_dir, capsys):
    from sentlab import compare, comparison

    model = tiny_args(tiny_models, "bert")
    train(*model, *FAST, "train.epochs=0")  # zero-shot: the baseline row
    train("-m", *model, "lora.r=2,4", "train.lr=1e-3,5e-3", *FAST)
    capsys.readouterr()

    assert compare.main(["--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "4 runs" not in out and "5 runs, sorted by val_f1_macro; swept: lora.r, train.lr" in out

    client = store()
    (parent,) = [
        r
        for r in client.search_runs([client.get_experiment_by_name("sentlab").experiment_id])
        if r.data.tags.get("sentlab.sweep") == "parent"
    ]
    folder = runs_dir / "compare" / parent.info.run_id
    with open(folder / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["kind"] == "baseline" and float(rows[0]["train_time_s"]) < 0.1  # no training
    trained = rows[1:]
    assert sorted((r["lora.r"], r["train.lr"]) for r in trained) == [
        ("2", "0.001"),
        ("2", "0.005"),
        ("4", "0.001"),
        ("4", "0.005"),
    ]
    scores = [float(r["val_f1_macro"]) for r in trained]
    assert scores == sorted(scores, reverse=True)
    for column in ("trainable_pct", "adapter_size_mb", "test_accuracy", "test_f1_macro", "train_time_s"):
        assert all(float(r[column]) >= 0 for r in trained), column
    # more rank, more trainable weights
    pct = {r["lora.r"]: float(r["trainable_pct"]) for r in trained}
    assert pct["4"] > pct["2"]

    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    for name in ("compare.csv", *comparison.PLOTS):
        assert (folder / name).stat().st_size > 1000 or name.endswith(".csv"), name
        assert f"compare/{name}" in logged, name

    # A whole experiment, sorted by another metric, into a folder of one's own.
    assert (
        compare.main(
            [
                "--runs-dir",
                str(runs_dir),
                "--experiment",
                "sentlab",
                "--metric",
                "test_accuracy",
                "--out",
                str(runs_dir / "exp"),
                "--no-log",
            ]
        )
        == 0
    )
    with open(runs_dir / "exp" / "compare.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 5


def test_seed_repeats_are_grouped_with_intervals_and_a_paired_test(tiny_models, train, store, runs_dir, capsys):
    """`sweep=seeds` repeats a grid over 3 seeds; the sweep's end logs the aggregated table to the parent, and
    compare's numbers are the mean, std and t-interval of the runs' own metrics."""
    import math

    from scipy import stats

    train("-m", "sweep=seeds", *tiny_args(tiny_models, "bert"), "lora.r=2,4", *FAST, "train.epochs=2")
    out = capsys.readouterr().out
    assert "repeats over seeds: 2 settings" in out and "paired bootstrap on the test set" in out

    client = store()
    runs = client.search_runs([client.get_experiment_by_name("sentlab").experiment_id])
    (parent,) = [r for r in runs if r.data.tags.get("sentlab.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert sorted((r.data.params["lora.r"], r.data.params["train.seed"]) for r in children) == [
        (r, s) for r in ("2", "4") for s in ("1", "2", "3")
    ]
    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert {"compare/repeats.csv", "compare/paired_tests.csv"} <= logged

    folder = runs_dir / "compare" / parent.info.run_id
    with open(folder / "repeats.csv", newline="") as f:
        groups = {row["setting"]: row for row in csv.DictReader(f)}
    assert set(groups) == {"lora.r=2", "lora.r=4"}
    for setting, row in groups.items():
        values = [r.data.metrics["test_accuracy"] for r in children if r.info.run_name == setting]
        assert row["n_seeds"] == "3" and row["seeds"] == "1 2 3"
        mean, std = sum(values) / 3, stats.tstd(values)
        half = stats.t.ppf(0.975, 2) * std / math.sqrt(3)
        assert float(row["test_accuracy_mean"]) == pytest.approx(mean)
        assert float(row["test_accuracy_std"]) == pytest.approx(std, nan_ok=True)
        if std > 0:
            assert float(row["test_accuracy_ci_low"]) == pytest.approx(mean - half)
    with open(folder / "paired_tests.csv", newline="") as f:
        (test,) = list(csv.DictReader(f))
    assert test["examples"] == "24" and test["seeds"] == "3" and 0 <= float(test["p_value"]) <= 1
    best, other = test["best"], test["other"]
    assert {best, other} == {"lora.r=2", "lora.r=4"}
    diff = float(groups[best]["test_accuracy_mean"]) - float(groups[other]["test_accuracy_mean"])
    assert float(test["accuracy_diff"]) == pytest.approx(diff)  # the same test rows in every run of a seed
    assert float(test["ci_low"]) <= float(test["accuracy_diff"]) <= float(test["ci_high"])
