"""What mattered in a sweep (sentlab/effects.py through sentlab.compare): each swept key's mean metric per value with
its interval, the parallel-coordinates plot on the parent run, and an Optuna study's parameter importances."""

from __future__ import annotations

import csv
import math

import pytest
from conftest import FAST, all_runs, tiny_args


def test_effects_per_swept_value_and_the_plot_on_the_parent(tiny_models, train, store, runs_dir, capsys):
    from scipy import stats

    from sentlab import compare, effects

    train("-m", *tiny_args(tiny_models, "bert"), "lora.r=2,4", "train.lr=1e-3,5e-3", *FAST)
    capsys.readouterr()
    assert compare.main(["--runs-dir", str(runs_dir)]) == 0
    out = capsys.readouterr().out
    assert "what mattered: val_f1_macro by swept value" in out

    client = store()
    runs = all_runs(client)
    (parent,) = [r for r in runs if r.data.tags.get("sentlab.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(children) == 4
    with open(runs_dir / "compare" / parent.info.run_id / effects.EFFECTS_CSV, newline="") as f:
        rows = {(row["key"], row["value"]): row for row in csv.DictReader(f)}
    assert set(rows) == {("lora.r", "2"), ("lora.r", "4"), ("train.lr", "0.001"), ("train.lr", "0.005")}
    for (key, value), row in rows.items():  # the runs' own metrics, grouped here by their params
        scores = [r.data.metrics["val_f1_macro"] for r in children if float(r.data.params[key]) == float(value)]
        mean, std = sum(scores) / 2, stats.tstd(scores)
        assert row["runs"] == "2" and row["metric"] == "val_f1_macro"
        assert float(row["mean"]) == pytest.approx(mean)
        if std > 0:
            half = stats.t.ppf(0.975, 1) * std / math.sqrt(2)
            assert float(row["ci_low"]) == pytest.approx(mean - half)
            assert float(row["ci_high"]) == pytest.approx(mean + half)
        else:
            assert float(row["ci_low"]) == pytest.approx(mean)
    for key in ("lora.r", "train.lr"):
        means = [float(row["mean"]) for (k, _), row in rows.items() if k == key]
        assert all(float(row["spread"]) == pytest.approx(max(means) - min(means)) for (k, _), row in rows.items()
                   if k == key)  # fmt: skip

    logged = {a.path for a in client.list_artifacts(parent.info.run_id, "compare")}
    assert {f"compare/{effects.EFFECTS_CSV}", f"compare/{effects.PARALLEL_PNG}"} <= logged
    assert (runs_dir / "compare" / parent.info.run_id / effects.PARALLEL_PNG).stat().st_size > 5000


def test_levels_cut_a_continuous_key_into_quartiles():
    import pandas as pd

    from sentlab import effects

    frame = pd.DataFrame(
        {
            "status": "FINISHED",
            "kind": "",
            "lr": [1e-4 * (i + 1) for i in range(8)],
            "r": [4, 8] * 4,
            "val_f1_macro": [0.1 * i for i in range(8)],
        }
    )
    table = effects.effects(frame, ["lr", "r"], "val_f1_macro")
    lr = table[table.key == "lr"]
    assert list(lr.runs) == [2, 2, 2, 2] and list(lr["mean"]) == pytest.approx([0.05, 0.25, 0.45, 0.65])
    assert list(table.key)[0] == "lr"  # its spread (0.6) is larger than r's (0.1): it comes first
    r = table[table.key == "r"].set_index("value")
    assert r.loc["4", "mean"] == pytest.approx(0.3) and r.loc["8", "mean"] == pytest.approx(0.4)


def _study(storage: str, name: str, trials: int = 24):
    """A study where x decides the value and y hardly counts."""
    from sentlab.study import load_optuna

    optuna = load_optuna()
    study = optuna.create_study(study_name=name, storage=storage, sampler=optuna.samplers.RandomSampler(seed=0),
                                direction="maximize")  # fmt: skip
    study.optimize(lambda t: 10 * t.suggest_float("x", 0, 1) + 0.01 * t.suggest_float("y", 0, 1), n_trials=trials)
    return study


def test_importances_of_an_optuna_study_found_from_its_trial_runs(tmp_path, capsys):
    """A trial run's config.yaml names its study (as a sweep's jobs log it); the importances are Optuna's, with the
    evaluator stated, and a study with one trial says why it has none."""
    import mlflow

    from sentlab import effects

    storage = f"sqlite:///{tmp_path}/optuna.db"
    study = _study(storage, "reviews")
    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{tmp_path}/mlflow.db")
    experiment = client.create_experiment("sentlab", artifact_location=(tmp_path / "art").as_uri())
    run = client.create_run(experiment, tags={"sentlab.trial": "0"})
    client.log_dict(run.info.run_id, {"trial": {"storage": storage, "study": "reviews", "number": 0}}, "config.yaml")
    assert effects.find_study(client, [client.get_run(run.info.run_id)]).study_name == "reviews"
    assert effects.find_study(client, []) is None

    found = effects.importances(study)
    by_param = dict(zip(found.param, found.importance))
    assert set(by_param) == {"x", "y"} and sum(by_param.values()) == pytest.approx(1)
    assert by_param["x"] > 0.9 > by_param["y"]
    assert set(found.evaluator) == {"optuna.importance.FanovaImportanceEvaluator(seed=0)"}
    effects.print_importances(study, found)
    assert "FanovaImportanceEvaluator" in capsys.readouterr().out

    lonely = _study(storage, "lonely", trials=1)
    reason = effects.importances(lonely)
    assert isinstance(reason, str) and reason


@pytest.mark.slow
def test_an_optuna_sweep_reports_its_importances(tiny_models, train, runs_dir, capsys):
    """The real path: sentlab's Optuna sweeper, then compare finds the study from the trial runs."""
    from sentlab import compare, effects

    train("-m", "sweep=optuna", "hydra.sweeper.n_trials=4", "hydra.sweeper.pruner=null",
          *tiny_args(tiny_models, "bert"), *FAST)  # fmt: skip
    capsys.readouterr()
    assert compare.main(["--runs-dir", str(runs_dir), "--out", str(runs_dir / "out")]) == 0
    out = capsys.readouterr().out
    assert "Optuna parameter importances of study" in out, out
    if (runs_dir / "out" / effects.IMPORTANCES_CSV).exists():  # none when every trial scored the same
        with open(runs_dir / "out" / effects.IMPORTANCES_CSV, newline="") as f:
            assert {row["param"] for row in csv.DictReader(f)} == {"train.lr", "lora.r", "lora.dropout"}
    else:
        assert "scored" in out
    assert "what mattered: val_f1_macro" in out and "train.lr" in out
