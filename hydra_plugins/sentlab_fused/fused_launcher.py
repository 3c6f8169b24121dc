"""hydra/launcher=fused: every job's config composed as Hydra's BasicLauncher composes it (sweep folders, job
numbers, .hydra/, the sweep callback's sweep.json), the jobs grouped by sentlab.fused.group_jobs, singletons run
through the task function as BasicLauncher runs them, and each group of two or more trained together by
sentlab.fused_pipeline.run_group: one base, one adapter per member, each member its own child run.

    python -m sentlab.train -m hydra/launcher=fused lora.r=4,8,16 train.lr=5e-4,1e-3,2e-3
    python -m sentlab.train -m hydra/launcher=fused hydra.launcher.max_members=4 ...

Settings: max_members (the most jobs in one group: memory), mix_seeds (jobs of different train.seed in one group,
each on its own batches, padded to the longest: see sentlab.fused). Jobs whose configs are not sentlab run
configs (no lora / train node) never fuse: the launcher is then Hydra's BasicLauncher.

A group's members get their Hydra job folders (.hydra/, train.log) as serial jobs do; while the group trains,
its log lines go to every member's train.log. Each member's job returns what sentlab.train's main returns: its
val_<select_metric>, or NaN for a failed job (the sweep goes on; the sweep callback's summary counts it). A stop
signal ends the sweep as it ends a serial one: the group stopped at a checkpoint, its resume command on stderr,
exit code 128 + the signal's number; the same command continues it.

Each step of the plan (a group, or a job alone) runs through run_step, here one after another;
hydra/launcher=fused_slurm (fused_submitit.py) runs the same run_step in one submitit job per step.
"""

import logging
import math
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path

from hydra.core.config_store import ConfigStore
from hydra.core.hydra_config import HydraConfig
from hydra.core.utils import JobReturn, JobStatus, configure_log, filter_overrides, run_job, setup_globals
from hydra.plugins.launcher import Launcher
from omegaconf import open_dict

log = logging.getLogger(__name__)


@dataclass
class FusedLauncherConf:
    _target_: str = "hydra_plugins.sentlab_fused.fused_launcher.FusedLauncher"
    max_members: int = 8  # the most jobs trained together in one group (each adds its adapter, head and batch)
    mix_seeds: bool = False  # let jobs of different train.seed share a group (each on its own batches, padded)


ConfigStore.instance().store(group="hydra/launcher", name="fused", node=FusedLauncherConf, provider="sentlab")


class FusedLauncher(Launcher):
    where = "locally"  # where the plan's steps run, as the launch line says it

    def __init__(self, max_members: int = 8, mix_seeds: bool = False) -> None:
        self.max_members, self.mix_seeds = max_members, mix_seeds
        self.config = self.task_function = self.hydra_context = None

    @staticmethod
    def check(config) -> None:
        """Bad settings as one ConfigError, before anything starts (sentlab.sweep's callback calls it)."""
        from sentlab.errors import ConfigError

        max_members = config.hydra.launcher.max_members
        if not isinstance(max_members, int) or max_members < 1:
            raise ConfigError(
                f"hydra.launcher.max_members: {max_members!r} is not a number of jobs; give 1 or more "
                "(1: every job alone, as the basic launcher runs them)"
            )

    def setup(self, *, hydra_context, task_function, config) -> None:
        self.config, self.task_function, self.hydra_context = config, task_function, hydra_context

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        configs, groups = self.plan_sweep(job_overrides, initial_job_idx)
        returns: list = [None] * len(configs)
        for group in groups:
            for i, ret in zip(group, self.run_step([configs[i] for i in group])):
                returns[i] = ret
            configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        return returns

    def plan_sweep(self, job_overrides, initial_job_idx: int) -> tuple[list, list[list[int]]]:
        """Every job's config composed and the launch plan: groups of job indices, logged."""
        setup_globals()
        configure_log(self.config.hydra.hydra_logging, self.config.hydra.verbose)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        configs = [self._compose(list(o), initial_job_idx + i) for i, o in enumerate(job_overrides)]
        groups = plan(configs, self.max_members, self.mix_seeds)
        fused = sum(len(g) for g in groups if len(g) > 1)
        log.info(f"Launching {len(configs)} jobs {self.where}: {fused} of them in fused groups, {len(groups)} steps")
        for group in groups:
            for i in group:
                log.info(f"\t#{initial_job_idx + i} : {' '.join(filter_overrides(job_overrides[i]))}")
        return configs, groups

    def run_step(self, configs) -> list[JobReturn]:
        """One step of the plan, where it runs (this process; a submitit job for hydra/launcher=fused_slurm):
        a lone job through the task function, a group of two or more trained together."""
        if len(configs) == 1:
            return [self._run_one(configs[0])]
        return self._run_group(configs)

    def _compose(self, overrides: list[str], idx: int):
        """A job's config, as BasicLauncher composes it."""
        sweep_config = self.hydra_context.config_loader.load_sweep_config(self.config, overrides)
        with open_dict(sweep_config):
            sweep_config.hydra.job.id = sweep_config.hydra.job.num = idx
        return sweep_config

    def _run_job(self, config, task_function) -> JobReturn:
        return run_job(
            hydra_context=self.hydra_context,
            task_function=task_function,
            config=config,
            job_dir_key="hydra.sweep.dir",
            job_subdir_key="hydra.sweep.subdir",
        )

    def _run_one(self, config) -> JobReturn:
        return self._run_job(config, self.task_function)

    def _run_group(self, configs) -> list[JobReturn]:
        """Each member's job folder made (as run_job makes it), then the group trained by sentlab, its log lines
        in every member's train.log; each JobReturn carries the member's val_<select_metric>, or NaN."""
        from sentlab import checkpoints, console, fused_pipeline

        console.quiet_dependencies()
        members = []

        def capture(cfg):  # inside run_job: the job's folder, .hydra/ and logging are set up
            hydra_cfg = HydraConfig.get()
            members.append(
                fused_pipeline.MemberJob(
                    cfg, list(hydra_cfg.overrides.task), hydra_cfg.runtime.output_dir, console.log_file()
                )
            )

        returns = [self._run_job(config, capture) for config in configs]
        with _log_to_all([m.log_file for m in members]):
            try:
                results = fused_pipeline.run_group(members, str(self.config.hydra.sweep.dir))
            except checkpoints.Stopped as stop:  # SIGTERM/SIGINT: as sentlab.train's main ends a stopped sweep
                stop.exit()
        for ret, member, result in zip(returns, members, results):
            ret.status, ret.return_value = JobStatus.COMPLETED, _value(member.cfg, ret, result)
        return returns


def plan(configs, max_members: int, mix_seeds: bool = False) -> list[list[int]]:
    """The launch order: groups of job indices (sentlab.fused.group_jobs); only sentlab run configs fuse."""
    tasks = [_task_config(c) for c in configs]
    if len(tasks) < 2 or not all("lora" in t and "train" in t for t in tasks):
        return [[i] for i in range(len(tasks))]
    from sentlab.fused import group_jobs

    return group_jobs(tasks, max_members, mix_seeds)


def _task_config(config):
    """The job's config without its hydra node (what the task function gets)."""
    task = config.copy()
    with open_dict(task):
        task.pop("hydra", None)
    return task


def _value(cfg, ret: JobReturn, result):
    """What sentlab.train's main returns for a job: val_<select_metric>; NaN after a failure, said on stderr."""
    if isinstance(result, BaseException):
        from sentlab.errors import ConfigError, RunError

        explained = isinstance(result, (ConfigError, RunError))
        detail = str(result) if explained else "".join(traceback.format_exception(result))
        print(f"sentlab: job {ret.hydra_cfg.hydra.job.num} failed: {detail}", file=sys.stderr)
        return math.nan
    return (result.get("val") or {}).get(cfg.train.select_metric, math.nan)


class _log_to_all:
    """While a group trains, the root logger's file lines go to each member's log file too."""

    def __init__(self, files):
        self.files = [f for f in files if f]

    def __enter__(self):
        root = logging.getLogger()
        current = {getattr(h, "baseFilename", None): h for h in root.handlers}
        formatter = next((h.formatter for h in root.handlers if isinstance(h, logging.FileHandler)), None)
        self.added = []
        for path in self.files:
            if path not in current:
                handler = logging.FileHandler(path)
                handler.setFormatter(formatter)
                root.addHandler(handler)
                self.added.append(handler)
        return self

    def __exit__(self, *exc):
        root = logging.getLogger()
        for handler in self.added:
            root.removeHandler(handler)
            handler.close()
