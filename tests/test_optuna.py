"""sentlab's Optuna sweeper (hydra_plugins/sentlab_optuna) through the real entry point on a tiny model: pruned trials
(KILLED runs with tag sentlab.pruned, PRUNED in the stored study), a rerun that continues the study, an interrupted
trial run again, the joblib launcher, and bad settings refused before anything starts."""

from __future__ import annotations

import os

import pytest
from conftest import CONF, FAST, all_runs, tiny_args
from test_bad_input import assert_refused
from test_sweeps import _sweep

# Every value is below the threshold, so the pruner stops each trial as soon as it may: a trial of 3 epochs after
# epoch 2 (the preset's n_warmup_steps: 2), while one of 1 epoch finishes (a trial is never pruned after its last
# epoch). The search space is the preset's (lr, r, dropout) plus train.epochs, so both kinds come up.
PRUNING = [
    "sweep=optuna",
    "~hydra.sweeper.pruner.n_startup_trials",
    "+hydra.sweeper.pruner.lower=1.01",
    "hydra.sweeper.pruner._target_=optuna.pruners.ThresholdPruner",
]
EPOCHS = "train.epochs=choice(1,3)"  # after FAST (train.epochs=1): the command line's last word on a key wins


def _study(runs_dir):
    import optuna

    storage = f"sqlite:///{runs_dir}/optuna.db"
    (summary,) = optuna.get_all_study_summaries(storage)
    return optuna.load_study(study_name=summary.study_name, storage=storage)


def _check_trials(client, children, study) -> tuple[int, int]:
    """Each child is its trial: 3-epoch ones pruned after epoch 2 (KILLED, tagged, 2 epochs validated, PRUNED in the
    study), 1-epoch ones FINISHED (COMPLETE with the run's val_f1_macro). Returns (finished, pruned)."""
    trials = {t.number: t for t in study.get_trials()}
    assert sorted(int(r.data.tags["sentlab.trial"]) for r in children) == sorted(trials)  # one run per trial
    for run in children:
        trial = trials[int(run.data.tags["sentlab.trial"])]
        assert trial.user_attrs["mlflow_run_id"] == run.info.run_id
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_f1_macro")]
        if run.data.params["train.epochs"] == "3":
            assert run.info.status == "KILLED" and run.data.tags["sentlab.pruned"] == "after epoch 2 of 3"
            assert epochs == [1, 2] and "test_accuracy" not in run.data.metrics  # training stopped there
            assert trial.state.name == "PRUNED" and sorted(trial.intermediate_values) == [1, 2]
        else:
            assert run.info.status == "FINISHED" and "sentlab.pruned" not in run.data.tags
            assert trial.state.name == "COMPLETE"
            assert trial.value == pytest.approx(run.data.metrics["val_f1_macro"])
    pruned = sum(r.info.status == "KILLED" for r in children)
    return len(children) - pruned, pruned


def test_pruned_trials_and_a_rerun_that_continues_the_study(tiny_models, train, store, runs_dir, capsys):
    args = ["-m", *PRUNING, *tiny_args(tiny_models, "bert"), *FAST, EPOCHS]
    train(*args, "hydra.sweeper.n_trials=4")
    client = store()
    parent, children = _sweep(all_runs(client))
    study = _study(runs_dir)
    assert len(children) == 4 and len(study.trials) == 4
    finished, pruned = _check_trials(client, children, study)
    assert finished and pruned, "the seeded sampler draws both 1 and 3 epochs"
    assert parent.info.status == "FINISHED"  # pruned trials are not failures
    assert parent.data.metrics["sweep_pruned"] == pruned and parent.data.metrics["sweep_failed"] == 0
    assert parent.data.metrics["sweep_finished"] == finished
    assert f"{pruned} pruned" in capsys.readouterr().out

    # A sweeper that died after asking for a trial leaves it RUNNING: the next run runs it again, as the same trial.
    from omegaconf import OmegaConf

    from hydra_plugins.sentlab_optuna.optuna_sweeper import search_space

    space, _ = search_space(OmegaConf.load(CONF / "sweep" / "optuna.yaml").hydra.sweeper.params, [EPOCHS])
    assert set(space) == {"train.lr", "lora.r", "lora.dropout", "train.epochs"}
    interrupted = study.ask(space).number

    # The same command with a larger n_trials continues the same study in the same parent run, up to 6 trials.
    train(*args, "hydra.sweeper.n_trials=6")
    parent2, children2 = _sweep(all_runs(store()))
    study = _study(runs_dir)
    assert parent2.info.run_id == parent.info.run_id
    assert sorted(t.number for t in study.trials) == list(range(6))
    assert interrupted in {int(r.data.tags["sentlab.trial"]) for r in children2}
    finished2, pruned2 = _check_trials(store(), children2, study)
    assert (finished2 + pruned2, parent2.data.metrics["sweep_pruned"]) == (6, pruned2)
    out = capsys.readouterr().out
    assert "sweep: continuing MLflow parent run" in out and "4 of 6 trials done, 1 interrupted to run again" in out

    # Once it has its trials, the same command again adds none.
    train(*args, "hydra.sweeper.n_trials=6")
    assert len(_sweep(all_runs(store()))[1]) == 6 and len(_study(runs_dir).trials) == 6
    assert "6 of 6 trials done" in capsys.readouterr().out


def test_joblib_workers_report_to_the_stored_study(tiny_models, train, store, runs_dir):
    train(
        "-m",
        *PRUNING,
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        "hydra.sweeper.n_jobs=2",
        "hydra.sweeper.n_trials=4",
        *tiny_args(tiny_models, "bert"),
        *FAST,
        EPOCHS,
    )
    client = store()
    parent, children = _sweep(all_runs(client))
    assert len(children) == 4 and parent.info.status == "FINISHED"
    assert all(r.data.tags["sentlab.pid"] != str(os.getpid()) for r in children)  # trials ran in the workers
    finished, pruned = _check_trials(client, children, _study(runs_dir))
    assert finished and pruned


def test_a_failed_trial_is_failed_in_both_and_the_study_goes_on(tiny_models, train, store, runs_dir):
    """lora.dropout=1.5 fails validation in its job: FAILED child, FAIL trial; the study still runs its trials."""
    with pytest.raises(SystemExit) as exit_info:
        train(
            "-m",
            "sweep=optuna",
            "hydra.sweeper.n_trials=3",
            "lora.dropout=choice(0.1,1.5)",
            *tiny_args(tiny_models, "bert"),
            *FAST,
        )
    assert exit_info.value.code == 1  # after the whole sweep, because trials failed
    parent, children = _sweep(all_runs(store()))
    states = sorted(t.state.name for t in _study(runs_dir).trials)
    assert len(children) == 3 and len(states) == 3
    assert sorted(r.info.status for r in children) == sorted(
        s.replace("COMPLETE", "FINISHED").replace("FAIL", "FAILED") for s in states
    )
    assert "FAIL" in states and parent.info.status == "FAILED"


BAD = [  # (overrides, the setting named, words the line must contain)
    (
        ["sweep=optuna", "hydra.sweeper.pruner._target_=optuna.pruners.NoSuchPruner"],
        "hydra.sweeper.pruner",
        ["NoSuchPruner", "not an Optuna pruner", "MedianPruner"],
    ),
    (["hydra/sweeper=optuna", "lora.r=8"], "hydra.sweeper.params", ["search space is empty"]),
    (
        ["sweep=optuna", "hydra.sweeper.storage=sqlite:////no/such/folder/optuna.db"],
        "hydra.sweeper.storage",
        ["cannot open", "/no/such/folder/optuna.db"],
    ),
]


@pytest.mark.parametrize("overrides,setting,words", BAD, ids=[b[1] for b in BAD])
def test_bad_sweeper_settings(overrides, setting, words, tiny_models, train, store, capsys):
    assert_refused(train, store, capsys, ["-m", *overrides, *tiny_args(tiny_models, "bert"), *FAST], setting, words)
