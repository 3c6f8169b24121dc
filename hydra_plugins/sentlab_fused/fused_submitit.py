"""hydra/launcher=fused_slurm (sentlab's preset of fused_submitit_slurm) and fused_submitit_local: the fused
launcher's plan (sentlab.fused.group_jobs), each step of it (a group, or a job that runs alone) sent to submitit as
one job, all steps at once as one job array, so that groups train in parallel, each on a node of its own:

    python -m sentlab.train -m hydra/launcher=fused_slurm hydra.launcher.partition=gpu lora.r=4,8,16 train.lr=1e-4,3e-4

A step runs in its job exactly as the fused launcher runs it in its own process (FusedLauncher.run_step: one path),
and its JobReturns come back to the sweep (each member's val_<select_metric>, NaN for a failed one). Its runs get
the tag `sentlab.submitit_job` (the job's id), shared by a group's members. Cluster settings are those of Hydra's
submitit launcher (partition, gpus_per_node, cpus_per_task, mem_gb, timeout_min, array_parallelism,
additional_parameters, setup, submitit_folder, ...), documented in sentlab/conf/hydra/launcher/fused_slurm.yaml.
With max_members=1 every step is one job alone, run through the task function as Hydra's submitit launcher runs
it: sentlab's presets hydra/launcher=slurm and slurm_local are this launcher so, and share its handling of stop
signals and of jobs that end without a result (Hydra's own submitit launchers keep submitit's SIGUSR2 handler, and
a stopped run's resume command would be submitit's command line).

A stop signal in a step's job (SLURM's SIGTERM before a requeue or at a preemption; submitit's time-limit signal,
SIGUSR2, signal_delay_s before the limit) stops the group at a checkpoint as in a local fused sweep, and the job
exits 143. A requeued job starts the same step again, which resumes the group from its members' checkpoints; a job
that ended without a result (time limit, killed) gives its members NaN with one line on stderr, and rerunning the
sweep's command resumes them. Groups are never resubmitted by submitit itself (max_num_timeout stays 0).
"""

import math
import os
import shutil
import signal
import sys
from dataclasses import dataclass

from hydra.core.config_store import ConfigStore
from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, JobStatus, setup_globals
from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf, LocalQueueConf, SlurmQueueConf
from omegaconf import OmegaConf, open_dict

from .fused_launcher import FusedLauncher

TARGET = "hydra_plugins.sentlab_fused.fused_submitit.FusedSubmititLauncher"


@dataclass
class FusedSlurmConf(SlurmQueueConf):
    _target_: str = TARGET
    cluster: str = "slurm"  # submitit's executor: slurm, or local (tests, no cluster)
    max_members: int = 8  # the fused launcher's settings (FusedLauncherConf)
    mix_seeds: bool = False


@dataclass
class FusedLocalConf(LocalQueueConf):
    _target_: str = TARGET
    cluster: str = "local"
    max_members: int = 8
    mix_seeds: bool = False


ConfigStore.instance().store(
    group="hydra/launcher", name="fused_submitit_slurm", node=FusedSlurmConf, provider="sentlab"
)
ConfigStore.instance().store(
    group="hydra/launcher", name="fused_submitit_local", node=FusedLocalConf, provider="sentlab"
)

OWN_KEYS = ("cluster", "max_members", "mix_seeds")  # the launcher's own settings; every other one goes to submitit


class FusedSubmititLauncher(FusedLauncher):
    def __init__(self, cluster: str = "slurm", max_members: int = 8, mix_seeds: bool = False, **params) -> None:
        super().__init__(max_members, mix_seeds)
        self.cluster = cluster
        self.params = {
            k: OmegaConf.to_container(v, resolve=True) if OmegaConf.is_config(v) else v for k, v in params.items()
        }
        self.where = f"as submitit {cluster} jobs"
        self.argv: list[str] = []

    @staticmethod
    def check(config) -> None:
        """The fused launcher's checks, then the cluster settings, each as one ConfigError before anything runs."""
        from sentlab.errors import ConfigError

        FusedLauncher.check(config)
        launcher = config.hydra.launcher
        if launcher.cluster not in ("slurm", "local"):
            raise ConfigError(
                f"hydra.launcher.cluster: {launcher.cluster!r} is not a submitit executor; give slurm or local"
            )
        for key in ("timeout_min", "array_parallelism"):
            value = launcher.get(key)
            if value is not None and (not isinstance(value, int) or value < 1):
                raise ConfigError(f"hydra.launcher.{key}: {value!r} is not a positive whole number; give 1 or more")
        if launcher.get("max_num_timeout", 0):
            raise ConfigError(
                f"hydra.launcher.max_num_timeout: {launcher.max_num_timeout} resubmissions at the time limit; a job "
                "is not resubmitted, it stops at a checkpoint and the sweep's command resumes it: leave it 0"
            )
        if launcher.cluster == "slurm" and shutil.which("sbatch") is None:
            raise ConfigError(
                "hydra.launcher.cluster: slurm, but there is no sbatch here; run the sweep where SLURM's commands are "
                "(a login node), or train the groups in this process with hydra/launcher=fused"
            )

    def launch(self, job_overrides, initial_job_idx: int) -> list[JobReturn]:
        configs, groups = self.plan_sweep(job_overrides, initial_job_idx)
        self.argv = sys.argv[:]  # a job's resume command is the sweep's own command (sentlab.runs.Job.resume_command)
        steps = [[configs[i] for i in group] for group in groups]
        jobs = self._executor().map_array(self, steps, [Singleton.get_state()] * len(steps))
        returns: list = [None] * len(configs)
        for group, step, job in zip(groups, steps, jobs):
            for i, ret in zip(group, _results(job, step)):
                returns[i] = ret
        return returns

    def __call__(self, configs, singleton_state) -> list[JobReturn]:
        """In the submitit job: the step, run as the fused launcher runs it in its own process."""
        import submitit

        Singleton.set_state(singleton_state)
        setup_globals()
        sys.argv = self.argv
        signal.signal(_time_limit_signal(), _stop_at_a_checkpoint)
        job_id = submitit.JobEnvironment().job_id
        for config in configs:
            with open_dict(config):
                config.hydra.job.id = job_id
        return self.run_step(configs)

    def _executor(self):
        """submitit's executor with the launcher's settings, as Hydra's submitit launcher makes it."""
        import submitit

        params = {k: v for k, v in self.params.items() if k not in OWN_KEYS}
        init = {"folder": params.pop("submitit_folder")}
        if "max_num_timeout" in params:
            init[f"{self.cluster}_max_num_timeout"] = params.pop("max_num_timeout")
        executor = submitit.AutoExecutor(cluster=self.cluster, **init)
        shared = set(OmegaConf.structured(BaseQueueConf).keys())
        executor.update_parameters(**{k if k in shared else f"{self.cluster}_{k}": v for k, v in params.items()})
        return executor


def _time_limit_signal() -> int:
    """What submitit has SLURM send signal_delay_s before a job's time limit (its env var, SIGUSR2 by default)."""
    return getattr(signal, "SIG" + os.environ.get("SUBMITIT_PREEMPT_SIGNAL", "USR2"))


def _stop_at_a_checkpoint(signum, frame) -> None:
    """The time limit is near: stop the group as SIGTERM stops it (sentlab.checkpoints), rather than submitit's
    handler, which raises in the middle of training (the members would end FAILED, not at a checkpoint)."""
    os.kill(os.getpid(), signal.SIGTERM)


def _results(job, configs) -> list[JobReturn]:
    """A step's JobReturns from its submitit job; one that ended without a result (time limit, killed, stopped and
    not requeued) gives each of its jobs NaN, said in one line on stderr."""
    try:
        return job.results()[0]
    except Exception as err:  # submitit's UncompletedJobError or FailedJobError
        numbers = ", ".join(f"#{c.hydra.job.num}" for c in configs)
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        print(
            f"sentlab: submitit job {job.job_id} (jobs {numbers}) ended without a result: {reason}; rerun the sweep's "
            f"command to resume its runs from their checkpoints (log: {job.paths.stderr})",
            file=sys.stderr,
        )
        return [
            JobReturn(
                overrides=list(c.hydra.overrides.task), hydra_cfg=c, status=JobStatus.COMPLETED, _return_value=math.nan
            )
            for c in configs
        ]
