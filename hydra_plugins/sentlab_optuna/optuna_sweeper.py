"""An optimizing sweep on current Optuna whose study is stored, so that it continues, and whose trials can be pruned.

    python -m sentlab.train -m sweep=optuna          # the preset sentlab/conf/sweep/optuna.yaml; settings and their
                                                     # defaults: sentlab/conf/hydra/sweeper/optuna.yaml

The shape of hydra-optuna-sweeper (which pins optuna 2.10): each search-space override (`choice(..)`, `a,b`,
`range(..)`, `interval(..)`, `tag(log, interval(..))`) becomes an Optuna distribution, trials are asked in batches of
`n_jobs` and run by whatever Hydra launcher is configured (serial, joblib, SLURM). What sentlab adds:

- the study lives in SQL storage (by default `<runs_dir>/optuna.db`, beside the MLflow store) under the sweep's
  identity (sentlab.sweep.sweep_id), so the same command continues it toward `n_trials`: COMPLETE and PRUNED trials
  count; a trial left RUNNING by a stopped sweep runs again as the same trial (its MLflow run resumes from its
  checkpoint); FAILED ones are replaced by new trials;
- each job gets its trial as the override `trial={storage:..,study:..,number:..}` and reports its validation metric
  after every epoch through the storage (sentlab.study), so that a job in a joblib worker or a SLURM job reaches the
  same trial and the study's pruner can stop it. The job marks its trial PRUNED itself; the sweeper tells the rest
  (COMPLETE with the job's return value, or FAIL).
"""

from __future__ import annotations

import math
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.core.override_parser.types import Transformer
from hydra.core.plugins import Plugins
from hydra.plugins.sweeper import Sweeper
from omegaconf import OmegaConf

RESULTS_FILE = "optimization_results.yaml"  # in the sweep's folder, as hydra-optuna-sweeper wrote it


class OptunaSweeper(Sweeper):
    def __init__(self, **settings) -> None:
        """Settings (sentlab/conf/hydra/sweeper/optuna.yaml) are read from the sweep's config in setup()."""

    @staticmethod
    def check(config) -> None:
        """Bad settings as one ConfigError, before anything starts: sentlab.sweep's callback calls this before the
        sweep's parent run exists."""
        open_study(config, list(config.hydra.overrides.task))

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.job_idx = config, 0
        self.launcher = Plugins.instance().instantiate_launcher(
            hydra_context=hydra_context, task_function=task_function, config=config
        )

    def sweep(self, arguments: list[str]) -> None:
        from optuna.trial import TrialState

        from sentlab import study as studies

        settings = self.config.hydra.sweeper
        study, storage, space, fixed = open_study(self.config, arguments)
        done = len(study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)))
        running = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))  # left by a sweep that was stopped
        interrupted = [studies.trial(study, storage, t.number) for t in running]
        to_go = max(0, settings.n_trials - done)
        print(
            f"optuna: study {study.study_name} in {study_url(self.config)}: {done} of {settings.n_trials} trials "
            f"done" + (f", {len(interrupted)} interrupted to run again" if interrupted else "")
        )
        while to_go > 0:
            size = min(settings.n_jobs, to_go)
            batch = [interrupted.pop(0) if interrupted else study.ask(space) for _ in range(size)]
            jobs = [(*fixed, *(f"{k}={v}" for k, v in t.params.items()), self._trial_override(study, t)) for t in batch]
            returns = self.launcher.launch(jobs, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for trial, ret in zip(batch, returns):  # a job whose trial was pruned already marked it PRUNED
                value = _value(ret)
                if value is None:  # the job failed (its MLflow run is FAILED): so is the trial, and the study goes on
                    study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
                else:
                    study.tell(trial, value, skip_if_finished=True)
            to_go -= len(batch)
        self._save_results(study)

    def _trial_override(self, study, trial) -> str:
        """What tells a job its trial, wherever it runs: the storage, the study and the trial's number."""

        def quoted(text: str) -> str:
            return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

        url = study_url(self.config)
        return f"trial={{storage:{quoted(url)},study:{quoted(study.study_name)},number:{trial.number}}}"

    def _save_results(self, study) -> None:
        from optuna.trial import TrialState

        trials = study.get_trials(deepcopy=False)
        results = {
            "name": "optuna",
            "study": study.study_name,
            "storage": study_url(self.config),
            "trials": {s.name: sum(t.state == s for t in trials) for s in TrialState if s != TrialState.WAITING},
        }
        if any(t.state == TrialState.COMPLETE for t in trials):
            results.update(
                best_trial=study.best_trial.number, best_params=study.best_params, best_value=study.best_value
            )
        folder = Path(self.config.hydra.sweep.dir)
        folder.mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), folder / RESULTS_FILE)


def study_url(config) -> str:
    """The study's storage: hydra.sweeper.storage, else a sqlite file beside the MLflow store (<runs_dir>/optuna.db;
    not mlflow.db itself: both keep their schema's version in a table named alembic_version), by absolute path,
    so that jobs that run elsewhere (SLURM) open the same file."""
    storage = config.hydra.sweeper.storage
    return storage or f"sqlite:///{(Path(config.runs_dir) / 'optuna.db').resolve()}"


def open_study(config, arguments: list[str]):
    """(study, storage, search space, fixed overrides): the sweep's study, created or, for the same sweep again, loaded,
    with its sampler and pruner. A bad setting raises ConfigError."""
    from sentlab import config as config_checks
    from sentlab import study as studies
    from sentlab.errors import ConfigError
    from sentlab.sweep import sweep_id

    optuna = studies.load_optuna()
    settings = config.hydra.sweeper
    config_checks.check_sweeper(settings)
    space, fixed = search_space(settings.params, arguments)
    pruner_spec = OmegaConf.to_container(settings.pruner) if settings.pruner else None
    pruner = (
        studies.build(pruner_spec, "hydra.sweeper.pruner", optuna.pruners.BasePruner, "optuna.pruners.MedianPruner")
        or optuna.pruners.NopPruner()
    )
    url = study_url(config)
    if not settings.storage:
        Path(config.runs_dir).mkdir(parents=True, exist_ok=True)
    try:
        storage = optuna.storages.RDBStorage(url)
    except Exception as err:
        raise ConfigError(
            f"hydra.sweeper.storage: cannot open {url}: {str(err).splitlines()[0][:300]} (a "
            f"sqlite:///PATH in an existing folder, or postgresql+psycopg://USER@HOST:PORT/DB)"
        ) from None
    name = settings.study_name or sweep_id(config)
    study = optuna.create_study(
        storage=storage, study_name=name, direction=settings.direction, pruner=pruner, load_if_exists=True
    )
    # Every process that opens the study (the jobs') builds the same pruner from this.
    study.set_user_attr(studies.PRUNER_ATTR, pruner_spec)
    sampler_spec = OmegaConf.to_container(settings.sampler) if settings.sampler else None
    if sampler_spec and sampler_spec.get("seed") is not None:  # a continued study must not draw its first values again
        sampler_spec["seed"] += len(study.get_trials(deepcopy=False))
    study.sampler = (
        studies.build(sampler_spec, "hydra.sweeper.sampler", optuna.samplers.BaseSampler, "optuna.samplers.TPESampler")
        or optuna.samplers.TPESampler()
    )
    return study, storage, space, fixed


def search_space(params, arguments: list[str]) -> tuple[dict, list[str]]:
    """({key: Optuna distribution}, [fixed overrides]) from hydra.sweeper.params and the command line: `choice(..)`,
    `a,b` and `range(..)` become a choice among the values, `interval(lo, hi)` a number between the two (an integer
    with `tag(int, interval(..))`), `tag(log, interval(..))` on a log scale; other overrides go to every trial as
    they are.
    The command line wins over params for the same key."""
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    from sentlab.errors import ConfigError

    texts = [f"{k}={v}" for k, v in (params or {}).items()] + list(arguments)
    try:
        parsed = OverridesParser.create().parse_overrides(texts)
    except Exception as err:
        raise ConfigError(f"hydra.sweeper.params: {str(err).splitlines()[0]}") from None
    space, fixed = {}, {}
    for override in parsed:
        key = override.get_key_element()
        space.pop(key, None), fixed.pop(key, None)
        if not override.is_sweep_override():
            fixed[key] = override.input_line
        elif override.is_interval_sweep():
            sweep = override.value()
            try:
                if "int" in sweep.tags:
                    space[key] = IntDistribution(int(sweep.start), int(sweep.end), log="log" in sweep.tags)
                else:
                    space[key] = FloatDistribution(sweep.start, sweep.end, log="log" in sweep.tags)
            except ValueError as err:
                raise ConfigError(f"hydra.sweeper.params: {key}: {err}") from None
        else:
            space[key] = CategoricalDistribution(list(override.sweep_iterator(transformer=Transformer.encode)))
    if not space:
        raise ConfigError(
            "hydra.sweeper.params: the search space is empty (give it keys, e.g. train.lr: "
            "tag(log, interval(1e-4, 1e-2)), or a sweep on the command line: 'lora.r=choice(4,8)')"
        )
    return space, list(fixed.values())


def _value(ret) -> float | None:
    """A finished job's objective (sentlab.train returns val_<train.select_metric>); None for a failed job."""
    from hydra.core.utils import JobStatus

    if ret.status != JobStatus.COMPLETED:
        return None
    try:
        value = float(ret.return_value)
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None
