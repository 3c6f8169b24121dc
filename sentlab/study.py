"""Optuna trials from a job's side: a job of sentlab's Optuna sweeper (hydra_plugins/sentlab_optuna) reports its
validation metric to its trial after every epoch and stops training when the study's pruner says so.

The job may run in another process than the sweeper (a joblib worker, a SLURM job on another node). It gets its
trial as the override `trial={storage: URL, study: NAME, number: N}` (config key `trial`) and reaches it through
the storage, where the sweeper also left the pruner's config (study user attribute `sentlab.pruner`), so that
every process judges trials alike.
"""

from __future__ import annotations

import logging

from sentlab.errors import ConfigError

log = logging.getLogger(__name__)

PRUNER_ATTR = "sentlab.pruner"  # the study's pruner, as its `_target_` config


class Pruned(Exception):
    """A trial that the study's pruner stopped after `epoch`: its run ends KILLED with the tag `sentlab.pruned`, for
    good (it is not resumed), and the trial is PRUNED in the study. `val`: that epoch's validation metrics."""

    def __init__(self, epoch: int, val: dict):
        super().__init__(f"pruned after epoch {epoch}")
        self.epoch, self.val = epoch, val


def load_optuna():
    """The optuna module, its own console handler off: its warnings reach sentlab's console and the run's log like
    any library's, its INFO lines ("Trial 3 finished ...") nowhere (sentlab says what happened in its own words)."""
    import optuna

    optuna.logging.disable_default_handler()
    optuna.logging.enable_propagation()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def build(spec: dict | None, setting: str, base: type, example: str):
    """An Optuna sampler or pruner from its config (`_target_` and arguments); None for none. A target that is not
    one, or bad arguments, raise ConfigError naming `setting`."""
    if not spec:
        return None
    from hydra.utils import get_class

    spec = dict(spec)
    target = spec.pop("_target_", None)
    try:
        cls = get_class(target)
    except Exception:
        cls = None
    if cls is None or not issubclass(cls, base):
        raise ConfigError(
            f"{setting}: {target!r} is not an Optuna {base.__name__.removeprefix('Base').lower()} "
            f"(e.g. {setting}._target_={example})"
        )
    try:
        return cls(**spec)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"{setting}: {target}: {err}") from None


def trial(study, storage, number: int):
    """The study's trial `number`, reached through `storage` (from any process)."""
    import optuna

    study_id = storage.get_study_id_from_name(study.study_name)
    return optuna.trial.Trial(study, storage.get_trial_id_from_study_id_trial_number(study_id, number))


def epoch_hook(trial_cfg, train_cfg, run_id: str | None = None):
    """What training.fit calls after each evaluated epoch: report val_<select_metric> to the trial, and raise Pruned
    when the study's pruner stops it. Never after the last epoch: a trial that trained to the end is complete."""
    optuna = load_optuna()
    storage = optuna.storages.RDBStorage(trial_cfg.storage)
    study = optuna.load_study(study_name=trial_cfg.study, storage=storage)
    study.pruner = (
        build(study.user_attrs.get(PRUNER_ATTR), "hydra.sweeper.pruner", optuna.pruners.BasePruner, "")
        or optuna.pruners.NopPruner()
    )
    current = trial(study, storage, trial_cfg.number)
    if run_id:
        current.set_user_attr("mlflow_run_id", run_id)
    metric = train_cfg.select_metric

    def after_epoch(epoch: int, val: dict) -> None:
        current.report(val[metric], epoch)
        if epoch < train_cfg.epochs and current.should_prune():
            study.tell(trial_cfg.number, state=optuna.trial.TrialState.PRUNED)
            log.info(
                f"pruned: trial {trial_cfg.number} stops after epoch {epoch} of {train_cfg.epochs} "
                f"(val_{metric}={val[metric]:.4f}; the study's pruner judges it hopeless)"
            )
            raise Pruned(epoch, val)

    return after_epoch
