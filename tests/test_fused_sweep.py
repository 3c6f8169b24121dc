"""hydra/launcher=fused (hydra_plugins/sentlab_fused): which jobs fuse, a group's members equal to the same jobs
run alone (serial, Hydra's basic launcher), a member's failure isolated, and Hydra's own launcher test suite.

Equal results: with no dropout anywhere (lora.dropout=0 and a tiny BERT whose own dropout is 0; the tiny
GPT-NeoX has none), the same seed and fp32, each member's per-epoch validation metrics (epoch/val_*), kept val_*
and test_* metrics, parameter counts, adapter size and logged train losses and learning rates equal those of its
job run alone within TOL (absolute): seq_cls, generative, and seq_cls on an int8 base. A group stopped by SIGTERM
and resumed by the same sweep command ends with the metrics and train losses of an uninterrupted group, within TOL.
"""

from __future__ import annotations

import json
import math
import shutil
import sys
from pathlib import Path

import pytest
from conftest import FAST
from conftest import train_into as _train
from hydra.test_utils.launcher_common_tests import IntegrationTestSuite, LauncherTestSuite

TOL = 1e-5
NO_DROPOUT = ["lora.dropout=0", "train.precision=fp32"]
WORDS = "data.label_words=[terrible,okay,great]"  # single-token label words in the tiny tokenizer
GRID = ["lora.r=2,8", "train.lr=1e-3,5e-3"]  # 4 jobs: one group


@pytest.fixture(scope="session")
def tiny_bert(tiny_models, tmp_path_factory) -> Path:
    """The tiny BERT with its own dropout (hidden, attention) at 0: a stacked batch then computes exactly what
    the members' separate batches do."""
    folder = tmp_path_factory.mktemp("tiny_bert_no_dropout") / "bert"
    shutil.copytree(tiny_models["bert"], folder)
    config = json.loads((folder / "config.json").read_text())
    config.update(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def _children(runs_dir: Path) -> dict:
    """The sweep's child runs by name, with their client."""
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs_dir}/mlflow.db")
    experiment = client.get_experiment_by_name("sentlab")
    runs = client.search_runs([experiment.experiment_id])
    return client, {r.info.run_name: r for r in runs if "mlflow.parentRunId" in r.data.tags}


def _history(client, run, key: str) -> list[float]:
    return [m.value for m in sorted(client.get_metric_history(run.info.run_id, key), key=lambda m: m.step)]


def _artifacts(client, run_id: str, path: str = "") -> set[str]:
    found = set()
    for item in client.list_artifacts(run_id, path):
        found |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return found


# Metrics and params that differ by nature between a group and its jobs alone: time and memory, the process.
TIMING = {"train_time_s", "peak_memory_mb"}


def _own(params: dict) -> dict:
    """Params without the store's location (the two sweeps write to two stores)."""
    return {k: v for k, v in params.items() if not k.startswith(("runs_dir", "tracking."))}


def _no_store(text: str | None) -> str | None:
    return text and " ".join(w for w in text.split() if not w.startswith("runs_dir="))


@pytest.mark.slow
@pytest.mark.parametrize(
    "head, quant", [("seq_cls", "none"), ("generative", "none"), ("seq_cls", "int8"), ("seq_cls", "nf4")]
)
def test_group_members_equal_their_jobs_alone(head, quant, tiny_bert, tiny_models, tmp_path, monkeypatch):
    backbone = ["backbone=minilm", f"backbone.source={tiny_bert}", f"quant={quant}"]
    if head == "generative":  # a tiny GPT-NeoX (pythia's architecture), whose own dropout is 0
        backbone = ["backbone=pythia", f"backbone.source={tiny_models['gpt_neox']}", "head=generative", WORDS]
    fast = [a for a in FAST if not a.startswith(("train.epochs", "train.max_length"))]
    length = "train.max_length=256" if head == "generative" else "train.max_length=64"  # the prompt's template
    args = ["-m", *backbone, *GRID, *NO_DROPOUT, *fast, length, "train.epochs=2"]
    _train(tmp_path / "serial", monkeypatch, *args)
    _train(tmp_path / "fused", monkeypatch, *args, "hydra/launcher=fused")
    client_s, serial = _children(tmp_path / "serial")
    client_f, fused = _children(tmp_path / "fused")
    assert sorted(serial) == sorted(fused) and len(fused) == 4
    assert len({r.data.tags["sentlab.fused_group"] for r in fused.values()}) == 1  # one group of 4
    assert not any("sentlab.fused_group" in r.data.tags for r in serial.values())
    for name, alone in serial.items():
        member = fused[name]
        assert member.info.status == alone.info.status == "FINISHED"
        assert _own(member.data.params) == _own(alone.data.params)
        assert set(member.data.metrics) == set(alone.data.metrics)
        for key, value in alone.data.metrics.items():
            if key not in TIMING:
                assert member.data.metrics[key] == pytest.approx(value, abs=TOL), (name, key)
        for key in ("epoch/val_loss", "epoch/val_f1_macro", "train_loss", "lr"):
            curve = _history(client_s, alone, key)
            assert len(curve) >= 2 and _history(client_f, member, key) == pytest.approx(curve, abs=TOL), (name, key)
        own = {k: _no_store(v) for k, v in alone.data.tags.items() if k.startswith("sentlab.") and k != "sentlab.pid"}
        assert {k: _no_store(member.data.tags.get(k)) for k in own} == own
        inputs = [sorted((d.dataset.name, d.dataset.digest) for d in r.inputs.dataset_inputs) for r in (alone, member)]
        assert inputs[0] == inputs[1] and len(inputs[0]) == 3  # the splits as MLflow data sets
        files = _artifacts(client_s, alone.info.run_id)
        assert _artifacts(client_f, member.info.run_id) == files and "adapter/adapter_model.safetensors" in files
        predictions = [
            Path(c.download_artifacts(r.info.run_id, "test_predictions.csv", str(tmp_path / r.info.run_id))).read_text()
            for c, r in ((client_s, alone), (client_f, member))
        ]
        assert predictions[0].splitlines()[0] == predictions[1].splitlines()[0]


@pytest.mark.slow
def test_a_member_that_fails_leaves_the_others(tiny_bert, tmp_path, monkeypatch, capsys):
    args = ["-m", "backbone=minilm", f"backbone.source={tiny_bert}", "train.lr=0.001,1000000.0,0.002", *FAST]
    with pytest.raises(SystemExit) as exit_info:
        _train(tmp_path, monkeypatch, *args, "hydra/launcher=fused")
    assert exit_info.value.code == 1  # after the whole sweep: a job failed
    _, runs = _children(tmp_path)
    assert {n: r.info.status for n, r in runs.items()} == {
        "train.lr=0.001": "FINISHED",
        "train.lr=1000000.0": "FAILED",
        "train.lr=0.002": "FINISHED",
    }
    assert runs["train.lr=1000000.0"].data.tags["error"].startswith("RunError: train loss is nan")
    assert len({r.data.tags["sentlab.fused_group"] for r in runs.values()}) == 1
    assert all(math.isfinite(runs[n].data.metrics["test_accuracy"]) for n in ("train.lr=0.001", "train.lr=0.002"))
    assert "sentlab: job 1 failed: train loss is nan" in capsys.readouterr().err


def _composed(*overrides: str):
    from sentlab.config import compose

    return compose(list(overrides))


@pytest.mark.parametrize(
    "jobs, max_members, groups",
    [
        ([["lora.r=4"], ["lora.r=8"], ["train.lr=1e-3"], ["lora.alpha=8", "train.epochs=3"]], 8, [[0, 1, 2, 3]]),
        ([["lora.r=4"], ["lora.r=8"], ["lora.r=16"]], 2, [[0, 1], [2]]),  # max_members
        ([["lora.r=4"], ["train.batch_size=32"], ["lora.r=8"]], 8, [[0, 2], [1]]),  # batch size: other batches
        ([["lora.r=4"], ["backbone=distilbert"], ["lora.r=8"]], 8, [[0, 2], [1]]),  # another base
        ([["lora.r=4"], ["quant=int8"]], 8, [[0], [1]]),
        ([["lora.r=4"], ["train.max_length=32"], ["lora.r=8"]], 8, [[0, 2], [1]]),
        ([["train.seed=1"], ["train.seed=2"], ["train.seed=1", "lora.r=4"]], 8, [[0, 2], [1]]),  # seeds split
        ([["lora.r=4"], ["train.epochs=0"], ["lora.r=8"]], 8, [[0, 2], [1]]),  # zero-shot trains alone
        ([["lora.r=4"], ["runs_dir=elsewhere", "run_name=x"]], 8, [[0, 1]]),  # infrastructure never splits
    ],
)
def test_which_jobs_fuse(jobs, max_members, groups):
    from hydra_plugins.sentlab_fused.fused_launcher import plan

    assert plan([_composed(*j) for j in jobs], max_members) == groups


def test_non_sentlab_configs_never_fuse():
    from omegaconf import OmegaConf

    from hydra_plugins.sentlab_fused.fused_launcher import plan

    assert plan([OmegaConf.create({"a": 1}), OmegaConf.create({"a": 2})], 8) == [[0], [1]]


@pytest.fixture
def hydra_1_1():
    """Hydra's launcher suite checks Hydra 1.1 behaviour (a job runs in its own folder); sentlab.config.compose,
    called by earlier tests in this process, set the process-wide version base to 1.3."""
    from hydra.version import VersionBase, __compat_version__

    before = VersionBase.instance().getbase()
    VersionBase.instance().setbase(__compat_version__)
    yield
    VersionBase.instance().version_base = before


# Hydra's own tests of a launcher, as its joblib and submitit plugins run them.
@pytest.mark.usefixtures("hydra_1_1")
@pytest.mark.parametrize("launcher_name, overrides", [("fused", [])])
class TestFusedLauncher(LauncherTestSuite):
    pass


@pytest.mark.parametrize(
    "task_launcher_cfg, extra_flags", [({"defaults": [{"override hydra/launcher": "fused"}]}, ["-m"])]
)
class TestFusedLauncherIntegration(IntegrationTestSuite):
    pass


@pytest.mark.slow
def test_optuna_trials_asked_together_form_a_group(tiny_models, train, store, runs_dir):
    """sentlab's Optuna sweeper with n_jobs=4: the 4 trials it asks together are one group; each member reports to
    its own trial and is pruned or completes as a trial alone would (test_optuna's checks)."""
    from conftest import all_runs, tiny_args
    from test_optuna import EPOCHS, PRUNING, _check_trials, _study
    from test_sweeps import _sweep

    args = ["-m", *PRUNING, *tiny_args(tiny_models, "bert"), *FAST, EPOCHS, "hydra/launcher=fused"]
    train(*args, "hydra.sweeper.n_trials=4", "hydra.sweeper.n_jobs=4")
    client = store()
    _, children = _sweep(all_runs(client))
    assert len(children) == 4 and len({r.data.tags.get("sentlab.fused_group") for r in children}) == 1
    finished, pruned = _check_trials(client, children, _study(runs_dir))
    assert finished + pruned == 4


@pytest.mark.parametrize("value", ["0", "-2"])
def test_bad_max_members_is_one_line_and_no_run(value, tiny_models, train, store, capsys):
    from conftest import tiny_args
    from test_bad_input import assert_refused

    args = ["-m", "hydra/launcher=fused", f"hydra.launcher.max_members={value}", *tiny_args(tiny_models, "bert")]
    assert_refused(train, store, capsys, [*args, "lora.r=2,4", *FAST], "hydra.launcher.max_members", ["1 or more"])


# A group long enough to be stopped in its second epoch: 160 rows in batches of 4, 40 steps an epoch, a
# checkpoint every 3 steps; one member of 1 epoch (it has left the stack by then), one of 2.
STOPPABLE = [
    *[a for a in FAST if not a.startswith(("train.epochs", "data.max_samples.train", "train.batch_size"))],
    "data.max_samples.train=160",
    "train.batch_size=4",
    "train.checkpoint_every=3",
    "train.log_every=3",
    "train.epochs=1,2",
]


def _stop_in_epoch_two(args: list[str], runs_dir: Path) -> tuple[int, str]:
    """The sweep in a subprocess, SIGTERM once a checkpoint of epoch 2 (step > 40) is written: (code, stderr)."""
    import signal
    import subprocess
    import time

    from conftest import REPO

    command = [sys.executable, "-m", "sentlab.train", *args, f"runs_dir={runs_dir}"]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not any(int(f.stem.split("-")[1]) > 40 for f in runs_dir.glob("checkpoints/*/step-*.pt")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint of epoch 2 within 300 s"
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=300)
    return process.returncode, err


@pytest.mark.slow
def test_a_stopped_group_resumes_to_the_results_of_an_uninterrupted_one(tiny_bert, tmp_path, monkeypatch):
    args = ["-m", "backbone=minilm", f"backbone.source={tiny_bert}", *NO_DROPOUT, *STOPPABLE, "hydra/launcher=fused"]
    runs_dir = tmp_path / "stopped"
    code, err = _stop_in_epoch_two(args, runs_dir)
    assert code == 143 and "sentlab: stopped by SIGTERM at epoch 2" in err, err
    client, stopped = _children(runs_dir)
    one, two = stopped["train.epochs=1"], stopped["train.epochs=2"]
    assert one.info.status == "FINISHED"  # it had left the stack: tested and logged at the stop
    assert two.info.status == "KILLED"
    command = "python -m sentlab.train " + " ".join([*args, f"runs_dir={runs_dir}"])
    assert two.data.tags["sentlab.resume_command"] == command  # the sweep's own
    (parent,) = [r for r in client.search_runs([one.info.experiment_id]) if "mlflow.parentRunId" not in r.data.tags]
    assert parent.info.status == "KILLED"
    assert list((runs_dir / "checkpoints" / two.info.run_id).glob("step-*.pt"))

    _train(runs_dir, monkeypatch, *args)  # the same sweep command
    client, resumed = _children(runs_dir)
    assert {n: (r.info.run_id, r.info.status) for n, r in resumed.items()} == {
        n: (r.info.run_id, "FINISHED") for n, r in stopped.items()
    }  # the FINISHED member reused, the KILLED one continued in its own run
    for run, last in ((resumed["train.epochs=1"], 39), (resumed["train.epochs=2"], 78)):  # logged every 3
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "train_loss")]
        assert steps == sorted(set(steps)) and steps[-1] == last  # none twice: the first member not retrained
    assert not list(runs_dir.glob("checkpoints/*/step-*.pt"))  # FINISHED runs' checkpoints dropped

    _train(tmp_path / "whole", monkeypatch, *args)  # never interrupted
    client_w, whole = _children(tmp_path / "whole")
    for name, run in whole.items():
        for key, value in run.data.metrics.items():
            if key not in TIMING:
                assert resumed[name].data.metrics[key] == pytest.approx(value, abs=TOL), (name, key)
        curve = _history(client_w, run, "train_loss")
        assert _history(client, resumed[name], "train_loss") == pytest.approx(curve, abs=TOL), name


def test_a_member_checkpoint_is_refused_by_a_job_alone(tmp_path):
    """A fused member's checkpoint names its weights as the group holds them: training.fit refuses it in one line
    rather than loading nothing (strict=False would skip every key)."""
    from types import SimpleNamespace

    import torch

    from sentlab.checkpoints import Checkpoints
    from sentlab.errors import RunError
    from sentlab.training import Trainer

    saved = Checkpoints(tmp_path / "run", every=None, keep=1)
    saved.save({"fused": True, "trainable": {}}, 3)
    cfg = SimpleNamespace(
        batch_size=2, lr=1e-3, weight_decay=0.0, precision="fp32", grad_accum=1, epochs=1, warmup_ratio=0.0,
        scheduler="linear",
    )  # fmt: skip
    head = SimpleNamespace(class_weights=None)
    trainer = Trainer(torch.nn.Linear(2, 2), head, {"train": {"input_ids": [[1], [2]]}}, cfg, None, None, saved, None)
    with pytest.raises(RunError, match="fused group's checkpoint: rerun the sweep's own command"):
        trainer._resume()
