"""A job's MLflow run, from the first lookup to its final status: the one owner of a run's life.

    job = Job(cfg, overrides, sweep)        # what runs: its config hash, name, tags, parent run
    store = Store.of(cfg.tracking)          # the MLflow store and experiment
    store.finished(job)                     # the FINISHED run that already answers it (a sweep reuses it)
    run = Run.start(store, job, tags)       # a new run, or the interrupted run of the same config reopened
    with run.closing(log_file):             # FINISHED; FAILED with its error; KILLED with its resume command
        run.log_metrics({...}, step)

Everything goes through explicit run ids and one MlflowClient, never MLflow's global active run, so that one
process can hold several runs at once (the jobs of a fused sweep group are N runs in one process).

Which run a job continues: `resume=RUN_ID` names one; otherwise the newest run of the same config (tag
`sentlab.config_hash`, in the same sweep or in none) that is KILLED, or RUNNING with its process gone from this
host, and has a checkpoint. A job that fails before its run starts is recorded, in a sweep, as a FAILED child.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shlex
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from functools import cached_property

from omegaconf import OmegaConf

from sentlab import checkpoints, tags, tracking
from sentlab.checkpoints import Stopped
from sentlab.errors import ConfigError

mlflow = tracking.mlflow
log = logging.getLogger(__name__)


@dataclass
class Job:
    """One configuration to run, and where it stands: its command-line overrides and its sweep (what the sweep
    callback wrote before the jobs started: parent_run_id, fixed_overrides), if any."""

    cfg: object  # the composed run config (DictConfig)
    overrides: list[str]
    sweep: dict | None = None

    @cached_property
    def config_hash(self) -> str:
        """Of the config as asked for (what a sweep looks up)."""
        return tracking.config_hash(self.cfg)

    @cached_property
    def setting_hash(self) -> str:
        return tracking.config_hash(self.cfg, seeds=False)

    @property
    def parent(self) -> str | None:
        return self.sweep["parent_run_id"] if self.sweep else None

    @property
    def name(self) -> str:
        return tracking.run_name(list(self.overrides), self.cfg, self.sweep)

    def tags(self) -> dict:
        """The tags every run of this job carries, also a reusing child or a failure record."""
        job_tags = {
            tags.CONFIG_HASH: self.config_hash,
            tags.SETTING_HASH: self.setting_hash,
            tags.OVERRIDES: " ".join(self.overrides),
        }
        if self.cfg.get("trial"):
            job_tags[tags.TRIAL] = str(self.cfg.trial.number)
        return job_tags

    def resume_command(self, run_id: str) -> str:
        """What continues a stopped run: in a sweep, the sweep's own command again; else resume=RUN_ID."""
        if self.sweep:
            return "python -m sentlab.train " + shlex.join(sys.argv[1:])
        runs_dir = self.cfg.runs_dir
        store = "" if runs_dir == "runs" else f" runs_dir={shlex.quote(str(runs_dir))}"
        return f"python -m sentlab.train resume={run_id}{store}"


def results(run) -> dict:
    """A FINISHED MLflow run's id and metrics, as a job returns them."""
    metrics = run.data.metrics
    split = {s: {k[len(s) + 1 :]: v for k, v in metrics.items() if k.startswith(s + "_")} for s in ("val", "test")}
    return {"run_id": run.info.run_id, **split, "train_time_s": metrics.get("train_time_s")}


class Store:
    """An MLflow store and experiment (created once, race-safe), and the lookups a job's run needs."""

    def __init__(self, uri: str, experiment_id: str):
        mlflow.set_tracking_uri(uri)  # what MLflow's model logging and artifact downloads resolve against
        self.uri, self.experiment_id = uri, experiment_id
        self.client = mlflow.MlflowClient(uri)

    @classmethod
    def of(cls, tracking_cfg) -> Store:
        """The store and experiment of a run config's `tracking` node, created if need be."""
        return cls(tracking_cfg.uri, tracking.connect(tracking_cfg))

    def get(self, run_id: str):
        try:
            return self.client.get_run(str(run_id))
        except mlflow.exceptions.MlflowException:
            raise ConfigError(
                f"resume: no run {run_id} in {self.uri} (the id in the stop message or the MLflow UI; "
                f"runs_dir=... for another store)"
            ) from None

    def runs_of(self, config_hash: str, status: str | None = None) -> list:
        """This experiment's runs of one config, newest first."""
        search = f"tags.`{tags.CONFIG_HASH}` = '{config_hash}'"
        if status:
            search += f" and attributes.status = '{status}'"
        order = ["attributes.start_time DESC"]
        return self.client.search_runs([self.experiment_id], filter_string=search, order_by=order, max_results=1000)

    def finished(self, job: Job):
        """The FINISHED run that answers a sweep job: its own child run if the sweep already has one, else the
        latest from elsewhere (a single run, another sweep); None if the config never finished."""
        runs = self.runs_of(job.config_hash, "FINISHED")
        own = [r for r in runs if r.data.tags.get(tags.PARENT_RUN_ID) == job.parent]
        return (own or runs or [None])[0]

    def interrupted(self, job: Job):
        """The run of this job's config (in its sweep, or in none) to resume: the newest that stopped before its
        end (KILLED by a signal, or RUNNING with a dead process) and has a checkpoint. One RUNNING without a
        checkpoint (its process died before the first) is marked FAILED on the way."""
        for run in self.runs_of(job.config_hash):
            stopped = run.info.status == "KILLED" or (run.info.status == "RUNNING" and is_alive(run) is False)
            if not stopped or run.data.tags.get(tags.PARENT_RUN_ID) != job.parent:
                continue
            if checkpoints.Checkpoints(checkpoints.folder(job.cfg.runs_dir, run.info.run_id), None, 1).files():
                return run
            if run.info.status == "RUNNING":
                self.client.set_tag(run.info.run_id, tags.ERROR, "its process died before its first checkpoint")
                self.client.set_terminated(run.info.run_id, "FAILED")
        return None

    def reuse(self, job: Job, done) -> dict:
        """A sweep job whose config already FINISHED (`done`): not trained again. Done in this sweep, that run
        answers it; done elsewhere (a single run, another sweep), a FINISHED child of this sweep carries that
        run's params and metrics and says whose results it reuses (tag `sentlab.reuses`)."""
        if done.data.tags.get(tags.PARENT_RUN_ID) == job.parent:
            log.info(f"skip: {done.info.run_name!r} already FINISHED in this sweep (force=true reruns it)")
            return results(done)
        source = done.data.tags.get(tags.REUSES, done.info.run_id)
        carried = {k: v for k, v in done.data.tags.items() if k.startswith("sentlab.") and k not in tags.OWN}
        note = f"Reuses the results of run {source} (same config, already FINISHED)."
        run_tags = {**carried, **job.tags(), tags.PARENT_RUN_ID: job.parent, tags.REUSES: source, tags.NOTE: note}
        run = self.client.create_run(self.experiment_id, run_name=job.name, tags=run_tags)
        try:
            now = int(time.time() * 1000)
            self.client.log_batch(
                run.info.run_id,
                metrics=[mlflow.entities.Metric(k, v, now, 0) for k, v in done.data.metrics.items()],
                params=[mlflow.entities.Param(k, v) for k, v in done.data.params.items()],
            )
        finally:
            self.client.set_terminated(run.info.run_id, "FINISHED")
        log.info(
            f"reuse: {job.name!r} already FINISHED as run {done.info.run_id}: child run {run.info.run_id} "
            f"carries its results (force=true reruns it)"
        )
        return {**results(done), "run_id": run.info.run_id}

    def record_failure(self, job: Job, error: BaseException) -> str:
        """A job that failed before its run could start (a bad setting in one sweep job), as a FAILED run with its
        error and whatever of its config resolves, so that the sweep's summary shows it."""
        try:
            params = tracking.flat_params(job.cfg)
        except Exception:  # an unresolvable interpolation: the error says which
            params = {}
        run_tags = {**job.tags(), tags.ERROR: f"{type(error).__name__}: {error}"[:5000]}
        if job.parent:
            run_tags[tags.PARENT_RUN_ID] = job.parent
        run = self.client.create_run(self.experiment_id, run_name=job.name, tags=run_tags)
        try:
            self.client.log_batch(run.info.run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()])
        finally:
            self.client.set_terminated(run.info.run_id, "FAILED")
        return run.info.run_id

    def named(self, job: Job):
        """`resume=RUN_ID`: (the job that run is, as its logged config composes it, the run). A FINISHED run comes
        back as it is, for its results; one that failed, is still at work, or whose config the overrides would
        change is a ConfigError."""
        run = self.get(job.cfg.resume)
        status, run_id = run.info.status, run.info.run_id
        if status == "FINISHED":
            return job, run
        if status not in ("KILLED", "RUNNING"):
            error = run.data.tags.get(tags.ERROR, "no error recorded")
            raise ConfigError(f"resume: run {run_id} is {status} ({error}); rerun its command to train it again")
        if is_alive(run):
            raise ConfigError(
                f"resume: run {run_id} is still RUNNING (pid {run.data.tags.get(tags.PID)} on "
                f"{run.data.tags.get(tags.HOST)}); stop it first"
            )
        changes = any(not tracking.is_infra(o.split("=")[0]) for o in job.overrides)
        if changes and job.config_hash != run.data.tags.get(tags.CONFIG_HASH):
            raise ConfigError(
                f"resume: the overrides given change run {run_id}'s config (resume with resume={run_id} "
                f"and infrastructure keys only)"
            )
        with tempfile.TemporaryDirectory() as tmp:
            logged = OmegaConf.load(self.client.download_artifacts(run_id, "config.yaml", tmp))
        # Resumed on its own, a trial's run reports to no study (rerun the sweep's command to resume it as its trial).
        cfg = job.cfg
        logged = OmegaConf.merge(
            logged, {"runs_dir": cfg.runs_dir, "tracking": cfg.tracking, "resume": run_id, "trial": None}
        )
        return Job(logged, run.data.tags.get(tags.OVERRIDES, "").split()), run


def process_tags() -> dict:
    """Where a run's process lives (tags `sentlab.host`, `sentlab.pid`): what tells a dead RUNNING run; in a
    submitit job (hydra/launcher=slurm, fused_slurm, submitit_local), also the job's id (`sentlab.submitit_job`)."""
    where = {tags.HOST: socket.gethostname(), tags.PID: str(os.getpid())}
    if os.environ.get("SUBMITIT_EXECUTOR"):  # set by submitit in its jobs
        from submitit import JobEnvironment

        where[tags.SUBMITIT_JOB] = JobEnvironment().job_id
    return where


def is_alive(run) -> bool | None:
    """Whether a RUNNING run's process is still at work, looked up by its pid on this host; None for a process of
    another host, which cannot be looked up (resume=RUN_ID resumes such a run once you know it died)."""
    if run.info.status != "RUNNING":
        return False
    if run.data.tags.get(tags.HOST) != socket.gethostname():
        return None
    try:
        os.kill(int(run.data.tags[tags.PID]), 0)
    except ProcessLookupError:
        return False
    except (KeyError, ValueError, PermissionError):
        return True
    return True


class Run:
    """One open MLflow run of a job: what the job logs goes through it, and it ends FINISHED, FAILED or KILLED."""

    def __init__(self, store: Store, run_id: str, name: str, resumed: bool):
        self.store, self.client = store, store.client
        self.id, self.name, self.resumed = run_id, name, resumed
        self.status = "FINISHED"  # what closing() ends a run with that got to the end (prune() makes it KILLED)
        self.resume_command: str | None = None

    @classmethod
    def new(cls, store: Store, name: str, run_tags: dict) -> Run:
        """A new run in the store's experiment, with MLflow's own tags of where it runs (user, source)."""
        from mlflow.tracking.context import registry

        created = store.client.create_run(store.experiment_id, run_name=name, tags=registry.resolve_tags(run_tags))
        return cls(store, created.info.run_id, name, resumed=False)

    @classmethod
    def start(cls, store: Store, job: Job, run_tags: dict, resume=None) -> Run:
        """A new run of `job` (under its sweep's parent), or `resume` (an MLflow run: interrupted, or named by
        resume=RUN_ID) reopened, its marks of how it stopped removed. Tagged with this process either way."""
        if resume is None:
            run = cls.new(store, job.name, {**run_tags, **({tags.PARENT_RUN_ID: job.parent} if job.parent else {})})
        else:
            run = cls(store, resume.info.run_id, resume.info.run_name, resumed=True)
            store.client.update_run(run.id, status="RUNNING")
            for tag in (tags.RESUME_COMMAND, tags.ERROR):  # what said how it stopped
                if tag in resume.data.tags:
                    store.client.delete_tag(run.id, tag)
            log.info(f"resume: run {run.id} ({run.name}) from its last checkpoint")
        run.set_tags(process_tags())
        run.resume_command = job.resume_command(run.id)
        return run

    # -- logging ---------------------------------------------------------------------------------

    def log_params(self, params: dict) -> None:
        self.client.log_batch(self.id, params=[mlflow.entities.Param(k, str(v)) for k, v in params.items()])

    def log_metrics(self, metrics: dict, step: int = 0) -> None:
        now = int(time.time() * 1000)
        batch = [mlflow.entities.Metric(k, float(v), now, step) for k, v in metrics.items()]
        self.client.log_batch(self.id, metrics=batch)

    def set_tags(self, run_tags: dict) -> None:
        self.client.log_batch(self.id, tags=[mlflow.entities.RunTag(k, str(v)) for k, v in run_tags.items()])

    def log_dict(self, data: dict, path: str) -> None:
        self.client.log_dict(self.id, data, path)

    def log_figure(self, figure, path: str) -> None:
        import matplotlib.pyplot as plt

        self.client.log_figure(self.id, figure, path)
        plt.close(figure)

    def log_table(self, frame, path: str) -> None:
        self.client.log_table(self.id, frame, path)

    def log_artifact(self, path: str, folder: str | None = None) -> None:
        self.client.log_artifact(self.id, path, folder)

    def log_artifacts(self, local_dir: str, folder: str | None = None) -> None:
        self.client.log_artifacts(self.id, local_dir, folder)

    def log_dataset(self, dataset, context: str) -> None:
        """An MLflow dataset (mlflow.data) as an input of the run, with its context (e.g. the split)."""
        from mlflow.entities import DatasetInput, InputTag
        from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

        inputs = [DatasetInput(dataset._to_mlflow_entity(), [InputTag(MLFLOW_DATASET_CONTEXT, context)])]
        self.client.log_inputs(self.id, datasets=inputs)

    def artifact_uri(self, path: str = "") -> str:
        base = self.client.get_run(self.id).info.artifact_uri
        return f"{base}/{path}" if path else base

    @property
    def parent(self) -> str | None:
        return self.client.get_run(self.id).data.tags.get(tags.PARENT_RUN_ID)

    # -- ending ----------------------------------------------------------------------------------

    def prune(self, epoch: int, epochs: int) -> None:
        """An Optuna trial stopped early by its study's pruner: the run ends KILLED, for good (never resumed)."""
        self.set_tags({tags.PRUNED: f"after epoch {epoch} of {epochs}"})
        self.log_metrics({"pruned_epoch": epoch})
        self.status = "KILLED"

    @contextlib.contextmanager
    def closing(self, log_file: str | None = None):
        """Inside: the run's work. On the way out the process's log file (train.log in its Hydra folder; a
        resumed run's beside the first) is logged, and the run ends: FINISHED (or as prune() said); KILLED with
        its resume command when a stop signal stopped it; FAILED with its error otherwise."""
        try:
            yield self
        except Stopped as stop:
            self.status, stop.command = "KILLED", self.resume_command
            self.set_tags({tags.RESUME_COMMAND: self.resume_command})
            raise
        except BaseException as err:
            self.status = "FAILED"
            self.set_tags({tags.ERROR: f"{type(err).__name__}: {err}"[:5000]})
            raise
        finally:
            if log_file:
                self.log_artifact(log_file, f"logs/resume-{time.strftime('%Y%m%d-%H%M%S')}" if self.resumed else "logs")
            self.client.set_terminated(self.id, self.status)
