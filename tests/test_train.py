"""End to end through the real entry point: tiny models of every architecture, the MLflow store read back."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import CONF, FAST, SHARED_DATA, all_runs, tiny_args

from sentlab.data import Labels


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt_neo", "roberta", "distilbert", "bert"])
def test_lora_seq_cls_run_is_logged(arch, tiny_models, train, store):
    train(*tiny_args(tiny_models, arch), "lora.r=4", *FAST)

    (run,) = all_runs(store())
    assert run.info.status == "FINISHED"
    params, metrics, tags = run.data.params, run.data.metrics, run.data.tags
    assert params["lora.r"] == "4"
    assert params["backbone.source"] == str(tiny_models[arch])
    assert params["dataset.label_names"] == "negative,neutral,positive"
    for key in (
        "val_accuracy",
        "test_accuracy",
        "test_f1_macro",
        "test_recall_macro",
        "test_f1_positive",
        "train_time_s",
        "peak_memory_mb",
        "adapter_size_mb",
    ):
        assert key in metrics, key
    assert 0 < metrics["trainable_pct"] < 50
    assert metrics["trainable_params"] < metrics["total_params"]
    assert len(tags["sentlab.config_hash"]) == 16

    client = store()
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "adapter")}
    assert "adapter/adapter_model.safetensors" in artifacts
    assert "adapter/adapter_config.json" in artifacts
    matrix = json.loads(Path(client.download_artifacts(run.info.run_id, "confusion_matrix.json")).read_text())
    assert sum(map(sum, matrix["matrix"])) == 24  # every test example counted once
    history = client.get_metric_history(run.info.run_id, "train_loss")
    assert len(history) >= 2  # logged every 2 optimizer steps


def test_same_config_twice_gives_same_metrics(tiny_models, train, store):
    args = [*tiny_args(tiny_models, "roberta"), *FAST]
    train(*args)
    train(*args)
    first, second = all_runs(store())
    for key in ("val_loss", "test_loss", "test_accuracy"):
        assert first.data.metrics[key] == second.data.metrics[key], key


def test_decoder_seq_cls_is_padding_invariant(tiny_models):
    """Last-token pooling must ignore right padding (transformers #35909): batched == one by one."""
    import torch
    from omegaconf import OmegaConf

    from sentlab import backbones
    from sentlab.heads.seq_cls import SeqClsHead

    backbone = OmegaConf.create({"source": str(tiny_models["gpt_neox"]), "pad_token": "eos"})
    tokenizer = backbones.load_tokenizer(backbone)
    labels = Labels(["negative", "positive"], ["negative", "positive"])
    head = SeqClsHead(OmegaConf.create({"train": {"max_length": 64}}), tokenizer, labels)
    model = backbones.load_model(head.model_class(), backbone, tokenizer, **head.model_kwargs()).eval()
    texts = ["a short one", "a much longer review that needs several more tokens than the first"]
    features = [{**tokenizer(t), "label": 0} for t in texts]
    with torch.no_grad():
        batched = head.evaluate_batch(model, head.collate(features))[1]
        single = torch.cat([head.evaluate_batch(model, head.collate([f]))[1] for f in features])
    assert torch.allclose(batched, single, atol=1e-5)


def test_failure_after_start_marks_run_failed(tiny_models, train, store):
    with pytest.raises(SystemExit) as exit_info:
        train(*tiny_args(tiny_models, "roberta"), "lora.target_modules=[no_such_module]", *FAST)
    assert exit_info.value.code == 2
    (run,) = all_runs(store())
    assert run.info.status == "FAILED"
    assert "no_such_module" in run.data.tags["error"]


def test_multirun_is_one_parent_and_a_child_per_job(tiny_models, train, store):
    train("-m", *tiny_args(tiny_models, "bert"), "lora.r=2,4,8", *FAST)
    runs = all_runs(store())
    (parent,) = [r for r in runs if r.data.tags.get("sentlab.sweep") == "parent"]
    children = [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]
    assert parent.info.status == "FINISHED"
    assert sorted(r.data.params["lora.r"] for r in children) == ["2", "4", "8"]
    assert sorted(r.info.run_name for r in children) == ["lora.r=2", "lora.r=4", "lora.r=8"]
    assert all(r.info.status == "FINISHED" for r in children)


def test_minilm_learns_sst2(train, store):
    """The real packaged MiniLM on a slice of SST-2 beats chance (50%) by a clear margin."""
    train(
        "data=sst2",
        f"data.dir={SHARED_DATA / 'sst2'}",
        "data.max_samples.train=800",
        "data.max_samples.val=200",
        "data.max_samples.test=400",
        "train.epochs=2",
        "train.batch_size=16",
        "train.max_length=64",
    )
    (run,) = all_runs(store())
    assert run.data.metrics["test_accuracy"] > 0.7


@pytest.mark.parametrize("head_name", ["seq_cls", "generative"])
def test_encoding_neither_reads_nor_writes_the_datasets_cache(head_name, tiny_models):
    """Tokenized features live in memory under a fresh fingerprint: nothing stale can be read back, and
    the cache gains no file (datasets would otherwise pickle the tokenizer to fingerprint every split)."""
    import os

    from omegaconf import OmegaConf

    from sentlab import backbones
    from sentlab.data import load_data
    from sentlab.heads import make_head

    cfg = OmegaConf.create(
        {
            "head": {
                "name": head_name,
                "template": "Review: {text}\nSentiment:",
                "label_prefix": " ",
                "add_bos": False,
            },
            "train": {"max_length": 64},
        }
    )
    words = {"seed": 0, "label_words": ["terrible", "okay", "great"]}  # one token each in the tiny tokenizer
    data = load_data(OmegaConf.merge(OmegaConf.load(CONF / "data" / "demo.yaml"), words))
    backbone = OmegaConf.create({"source": str(tiny_models["gpt_neox"]), "pad_token": "eos"})
    tokenizer = backbones.load_tokenizer(backbone)
    head = make_head(cfg, tokenizer, data.labels)
    cache = Path(os.environ["HF_DATASETS_CACHE"])
    before = sorted(cache.rglob("*"))
    first, second = head.encode(data.splits["train"]), head.encode(data.splits["train"])
    assert sorted(cache.rglob("*")) == before
    assert first.cache_files == [] and first._fingerprint != second._fingerprint
    assert first["input_ids"] == second["input_ids"] and first["label"] == data.splits["train"]["label"]
    assert first["input_ids"][0][-1] != tokenizer.pad_token_id  # real tokens, no padding at encode time
