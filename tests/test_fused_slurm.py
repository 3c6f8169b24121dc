"""hydra/launcher=fused_slurm and fused_submitit_local (hydra_plugins/sentlab_fused/fused_submitit.py): the fused
launcher's groups, each one submitit job. With submitit's local executor: each group one job (its members share
the tag sentlab.submitit_job), the results those of the in-process fused launcher. On a one-node SLURM cluster
(tests/slurm.py): one SLURM job per group, every run FINISHED, and a group's job requeued in training (SIGTERM)
resumes its members from their checkpoints. Bad settings: one line, no run.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest
import slurm
import test_fused_sweep
from conftest import FAST, REPO, tiny_args
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite
from test_engines import NO_SLURM
from test_fused_sweep import NO_DROPOUT, TIMING, TOL, _children
from test_fused_sweep import _train as train_into

tiny_bert = test_fused_sweep.tiny_bert  # fixtures: the tiny BERT without dropout; Hydra 1.1's version base
hydra_1_1 = test_fused_sweep.hydra_1_1

# 4 jobs, two groups of two (the batch size splits groups: other batches)
TWO_GROUPS = ["lora.r=2,8", "train.batch_size=4,8"]
GROUP_TAGS = ("sentlab.fused_group", "sentlab.submitit_job")


def _groups(runs: dict) -> list[list[tuple[str, str]]]:
    """The runs' (train.batch_size, lora.r) by (fused group, submitit job)."""
    by_group: dict = {}
    for run in runs.values():
        key = tuple(run.data.tags.get(t) for t in GROUP_TAGS)
        by_group.setdefault(key, []).append((run.data.params["train.batch_size"], run.data.params["lora.r"]))
    return sorted(sorted(members) for members in by_group.values())


EXPECTED_GROUPS = [[("4", "2"), ("4", "8")], [("8", "2"), ("8", "8")]]


@pytest.mark.slow
def test_each_group_is_one_local_submitit_job_with_the_in_process_results(tiny_bert, tmp_path, monkeypatch):
    args = ["-m", "backbone=minilm", f"backbone.source={tiny_bert}", *NO_DROPOUT, *FAST, *TWO_GROUPS]
    train_into(tmp_path / "local", monkeypatch, *args, "hydra/launcher=fused")
    train_into(tmp_path / "submitit", monkeypatch, *args, "hydra/launcher=fused_submitit_local")
    _, local = _children(tmp_path / "local")
    _, jobs = _children(tmp_path / "submitit")
    assert sorted(jobs) == sorted(local) and len(jobs) == 4
    assert all(r.info.status == "FINISHED" for r in jobs.values())
    assert _groups(jobs) == EXPECTED_GROUPS  # each group's members share one fused group and one submitit job
    assert len({r.data.tags["sentlab.submitit_job"] for r in jobs.values()}) == 2
    assert len({r.data.tags["sentlab.pid"] for r in jobs.values()} | {str(os.getpid())}) == 3  # not this process
    assert not any("sentlab.submitit_job" in r.data.tags for r in local.values())
    for name, run in local.items():
        assert set(jobs[name].data.metrics) == set(run.data.metrics)
        for key, value in run.data.metrics.items():
            if key not in TIMING:
                assert jobs[name].data.metrics[key] == pytest.approx(value, abs=TOL), (name, key)
    submitted = (tmp_path / "submitit").glob("hydra/multirun/*/.submitit/*/*_submitted.pkl")
    assert {f.parent.name for f in submitted} == {r.data.tags["sentlab.submitit_job"] for r in jobs.values()}


LONG = ["data.max_samples.train=160", "train.batch_size=4", "train.epochs=8", "train.checkpoint_every=3"]


def _signal_in_training(args: list[str], runs_dir, signum: int) -> tuple[str, dict]:
    """The sweep `args` started; once its runs train, `signum` sent to their job's process (a child of submitit's,
    all the sweep's runs in one job); the sweep's stderr once it ended (exit code 1: jobs not finished), and its
    runs, which should be KILLED with the sweep's own command (not submitit's argv) as their resume command."""
    command = [sys.executable, "-m", "sentlab.train", *args, f"runs_dir={runs_dir}"]
    sweep = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((runs_dir / "checkpoints").glob("*/step-*.pt")):  # training
        assert sweep.poll() is None and time.monotonic() < deadline, sweep.communicate()[1][-3000:]
        time.sleep(0.1)
    _, training = _children(runs_dir)
    (pid,) = {r.data.tags["sentlab.pid"] for r in training.values()}
    os.kill(int(pid), signum)
    _, err = sweep.communicate(timeout=300)
    assert sweep.returncode == 1, err[-3000:]  # the sweep's summary: jobs not finished
    _, stopped = _children(runs_dir)
    assert {r.info.status for r in stopped.values()} == {"KILLED"}, [r.data.tags.get("error") for r in stopped.values()]
    resume = "python -m sentlab.train " + " ".join([*args, f"runs_dir={runs_dir}"])
    assert {r.data.tags["sentlab.resume_command"] for r in stopped.values()} == {resume}
    return err, stopped


@pytest.mark.slow
def test_a_group_at_its_time_limit_stops_at_a_checkpoint_and_its_sweep_resumes_it(tiny_models, tmp_path, monkeypatch):
    """The time limit's signal (SIGUSR2, which SLURM sends signal_delay_s before it) to a group's submitit job: the
    group stops at its members' checkpoints as on SIGTERM, the job ends with no result, its members come back NaN
    with one line on stderr, their runs KILLED with the sweep's own command; that command resumes them."""
    import signal

    args = ["-m", *tiny_args(tiny_models, "bert"), *FAST, *LONG, "lora.r=2,4", "hydra/launcher=fused_submitit_local"]
    err, stopped = _signal_in_training(args, tmp_path, signal.SIGUSR2)
    (job,) = tmp_path.glob("hydra/multirun/*/.submitit/*/*_submitted.pkl")
    assert f"sentlab: submitit job {job.parent.name} (jobs #0, #1) ended without a result" in err, err[-3000:]
    assert len(stopped) == 2

    train_into(tmp_path, monkeypatch, *args)  # the same sweep command
    _, resumed = _children(tmp_path)
    assert {n: (r.info.run_id, r.info.status) for n, r in resumed.items()} == {
        n: (r.info.run_id, "FINISHED") for n, r in stopped.items()
    }


@pytest.mark.slow
@pytest.mark.parametrize("name", ["SIGUSR2", "SIGTERM"])
def test_a_plain_submitit_job_stopped_is_killed_with_the_sweeps_command(name, tiny_models, tmp_path, monkeypatch):
    """hydra/launcher=slurm_local (slurm's preset, with submitit's local executor): the time limit's signal (SIGUSR2;
    timeout_min=5 is past submitit's "guaranteed" time at once, as at SLURM's real limit) or SIGTERM stops the job's
    run at a checkpoint, KILLED with the sweep's command, which resumes it. With Hydra's own submitit_local the run
    ended FAILED on SIGUSR2 (submitit's handler raised in training), and KILLED on SIGTERM but with submitit's
    command line (`python -m sentlab.train FOLDER/.submitit/%j`) as its resume command."""
    import signal

    local = ["hydra/launcher=slurm_local", "hydra.launcher.timeout_min=5"]
    args = ["-m", *tiny_args(tiny_models, "bert"), *FAST, *LONG, "lora.r=2", *local]
    err, stopped = _signal_in_training(args, tmp_path, getattr(signal, name))
    (job,) = tmp_path.glob("hydra/multirun/*/.submitit/*/*_submitted.pkl")
    assert f"sentlab: submitit job {job.parent.name} (jobs #0) ended without a result" in err, err[-3000:]

    train_into(tmp_path, monkeypatch, *args)
    _, resumed = _children(tmp_path)
    assert {n: (r.info.run_id, r.info.status) for n, r in resumed.items()} == {
        n: (r.info.run_id, "FINISHED") for n, r in stopped.items()
    }


@pytest.mark.slow
def test_optuna_trials_asked_together_are_one_submitit_job(tiny_models, train, store, runs_dir):
    """sentlab's Optuna sweeper with n_jobs=2: the 2 trials asked together are one group in one submitit job, each
    member reporting to its own trial of the stored study (test_optuna's checks)."""
    from conftest import all_runs
    from test_optuna import EPOCHS, PRUNING, _check_trials, _study
    from test_sweeps import _sweep as sweep_runs

    args = ["-m", *PRUNING, *tiny_args(tiny_models, "bert"), *FAST, EPOCHS, "hydra/launcher=fused_submitit_local"]
    train(*args, "hydra.sweeper.n_trials=2", "hydra.sweeper.n_jobs=2")
    client = store()
    _, children = sweep_runs(all_runs(client))
    assert len(children) == 2 and all(r.data.tags.get(t) for r in children for t in GROUP_TAGS)
    assert len({tuple(r.data.tags[t] for t in GROUP_TAGS) for r in children}) == 1  # one group, one job
    finished, pruned = _check_trials(client, children, _study(runs_dir))
    assert finished + pruned == 2


def test_the_preset_composes():
    from conftest import CONF
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config", overrides=["hydra/launcher=fused_slurm", "hydra.launcher.partition=gpu"], return_hydra_config=True
        )
    launcher = cfg.hydra.launcher
    assert launcher._target_.endswith("FusedSubmititLauncher") and launcher.cluster == "slurm"
    assert (launcher.partition, launcher.gpus_per_node, launcher.max_members) == ("gpu", 1, 8)


@pytest.mark.parametrize(
    "launcher, setting, value, words",
    [
        ("fused_submitit_local", "timeout_min", "0", ["positive whole number"]),
        ("fused_submitit_local", "max_members", "0", ["1 or more"]),
        ("fused_submitit_local", "cluster", "pbs", ["slurm or local"]),
        ("fused_slurm", "max_num_timeout", "2", ["not resubmitted", "leave it 0"]),
        ("fused_slurm", "cluster", "slurm", ["no sbatch", "hydra/launcher=fused"]),  # PATH without SLURM
    ],
)
def test_bad_settings_are_one_line_and_no_run(launcher, setting, value, words, tiny_models, train, store, capsys):
    from test_bad_input import assert_refused

    overrides = [f"hydra/launcher={launcher}", f"hydra.launcher.{setting}={value}", *tiny_args(tiny_models, "bert")]
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PATH", "/nonexistent")
        assert_refused(
            train, store, capsys, ["-m", *overrides, "lora.r=2,4", *FAST], f"hydra.launcher.{setting}", words
        )


FUSED_SLURM = [
    "hydra/launcher=fused_slurm",
    "hydra.launcher.gpus_per_node=0",
    "hydra.launcher.cpus_per_task=1",
    "hydra.launcher.mem_gb=1",
    "hydra.launcher.timeout_min=10",
]


def _sweep(args: list[str], runs_dir, env: dict) -> subprocess.Popen:
    command = [sys.executable, "-m", "sentlab.train", "-m", *args, *FUSED_SLURM, f"runs_dir={runs_dir}"]
    return subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _sacct(env: dict) -> list[tuple[str, str]]:
    """(job id, state) of every SLURM job, once none is RUNNING (accounting records ends a little later)."""
    deadline = time.monotonic() + 60
    while True:
        lines = subprocess.run(
            ["sacct", "-n", "-X", "-P", "-o", "JobID,State"], capture_output=True, text=True, env=env
        ).stdout.split()
        jobs = [tuple(line.split("|")) for line in lines]
        if not any(state == "RUNNING" for _, state in jobs) or time.monotonic() > deadline:
            return jobs
        time.sleep(1)


@pytest.mark.slow
@pytest.mark.skipif(bool(slurm.missing()), reason=NO_SLURM)
def test_a_fused_sweep_on_a_slurm_cluster_one_job_per_group(tiny_models, tmp_path):
    with slurm.cluster() as env:
        env = {**os.environ, **env}
        _, err = (sweep := _sweep([*tiny_args(tiny_models, "bert"), *FAST, *TWO_GROUPS], tmp_path, env)).communicate(
            timeout=600
        )
        assert sweep.returncode == 0, err[-3000:]
        jobs = _sacct(env)
    assert [state for _, state in jobs] == ["COMPLETED", "COMPLETED"], jobs  # one SLURM job per group
    _, runs = _children(tmp_path)
    assert len(runs) == 4 and all(r.info.status == "FINISHED" for r in runs.values())
    assert _groups(runs) == EXPECTED_GROUPS
    assert {r.data.tags["sentlab.submitit_job"] for r in runs.values()} == {job for job, _ in jobs}


@pytest.mark.slow
@pytest.mark.skipif(bool(slurm.missing()), reason=NO_SLURM)
def test_a_requeued_group_resumes_its_members_from_their_checkpoints(tiny_models, tmp_path):
    """`scontrol requeue` of a group's job while it trains (SIGTERM, then SLURM starts it again): the group stops at
    its members' checkpoints, its second start resumes their runs from there, and the sweep finishes in one go."""
    long = ["data.max_samples.train=240", "train.epochs=12", "train.checkpoint_every=5"]
    args = [*tiny_args(tiny_models, "bert"), "lora.r=2,4", *FAST, *long]  # one group
    with slurm.cluster() as env:
        env = {**os.environ, **env}
        sweep = _sweep(args, tmp_path, env)
        err = slurm.requeue_once_training(sweep, tmp_path, env)
        assert sweep.returncode == 0, err[-3000:]
    client, runs = _children(tmp_path)
    assert sorted(runs) == ["lora.r=2", "lora.r=4"] and all(r.info.status == "FINISHED" for r in runs.values())
    assert len({r.data.tags["sentlab.fused_group"] for r in runs.values()}) == 1  # resumed together, not duplicated
    for run in runs.values():
        assert any(a.path.startswith("logs/resume-") for a in client.list_artifacts(run.info.run_id, "logs"))
        epochs = [m.step for m in client.get_metric_history(run.info.run_id, "epoch/val_accuracy")]
        assert sorted(epochs) == list(range(1, 13))  # each epoch validated once across both starts


# Hydra's own tests of a launcher, as its submitit plugin runs them (its jobs are no sentlab runs: each job alone,
# one submitit job each).
@pytest.mark.usefixtures("hydra_1_1")
@pytest.mark.parametrize("launcher_name, overrides", [("fused_submitit_local", ["hydra.launcher.timeout_min=2"])])
class TestFusedSubmititLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags",
    [({"defaults": [{"override hydra/launcher": "fused_submitit_local"}]}, ["-m"])],
)
class TestFusedSubmititLauncherIntegration(IntegrationTestSuite):
    pass
