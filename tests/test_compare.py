"""sentlab.compare on a tiny sweep with a zero-shot baseline: the table (printed, CSV) and the plots."""
from __future__ import annotations

import csv

from conftest import FAST, tiny_args


def test_compare_table_and_plots(tiny_models, train, store, runs_dir, capsys):
    from sentlab import compare

    model = tiny_args(tiny_models, "bert")
    train(*model, *FAST, "train.epochs=0")  # zero-shot: the baseline row
    train("-m", *model, "lora.r=2,4", "train.lr=1e-3,5e-3", *FAST)
    capsys.readouterr()

    assert compare.main(["--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "4 runs" not in out and "5 runs, sorted by val_f1_macro; swept: lora.r, train.lr" in out

    client = store()
    (parent,) = [r for r in client.search_runs([client.get_experiment_by_name("sentlab").experiment_id])
                 if r.data.tags.get("sentlab.sweep") == "parent"]
    folder = runs_dir / "compare" / parent.info.run_id
    with open(folder / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows[0]["kind"] == "baseline" and float(rows[0]["train_time_s"]) < 0.1  # no training
    trained = rows[1:]
    assert sorted((r["lora.r"], r["train.lr"]) for r in trained) == [
        ("2", "0.001"), ("2", "0.005"), ("4", "0.001"), ("4", "0.005")
    ]
    scores = [float(r["val_f1_macro"]) for r in trained]
    assert scores == sorted(scores, reverse=True)
    for column in ("trainable_pct", "adapter_size_mb", "test_accuracy", "test_f1_macro", "train_time_s"):
        assert all(float(r[column]) >= 0 for r in trained), column
    # more rank, more trainable weights
    pct = {r["lora.r"]: float(r["trainable_pct"]) for r in trained}
    assert pct["4"] > pct["2"]

    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    for name in ("compare.csv", *compare.PLOTS):
        assert (folder / name).stat().st_size > 1000 or name.endswith(".csv"), name
        assert f"compare/{name}" in logged, name

    # A whole experiment, sorted by another metric, into a folder of one's own.
    assert compare.main(["--runs-dir", str(runs_dir), "--experiment", "sentlab", "--metric", "test_accuracy",
                         "--out", str(runs_dir / "exp"), "--no-log"]) == 0
    with open(runs_dir / "exp" / "compare.csv", newline="") as f:
        assert len(list(csv.DictReader(f))) == 5
