"""quant=int8 / nf4 (bitsandbytes on CPU), the fallback when bitsandbytes cannot run, and merging."""

from __future__ import annotations

import pytest
import torch
from conftest import CONF, FAST, all_runs, tiny_args
from omegaconf import OmegaConf

from sentlab.data import Labels

WORDS = "data.label_words=[terrible,okay,great]"  # single tokens in the tiny tokenizers
TWO_EPOCHS = [*FAST, "train.epochs=2", "train.keep=last"]  # train -> eval -> train -> eval


@pytest.mark.parametrize("arch,quant", [("gpt_neox", "nf4"), ("gpt_neo", "int8")])
def test_quantized_generative_lora_trains_after_an_eval_pass(arch, quant, tiny_models, train, store):
    train(*tiny_args(tiny_models, arch), "head=generative_tweet", WORDS, f"quant={quant}", *TWO_EPOCHS)
    (run,) = all_runs(store())
    assert run.info.status == "FINISHED"
    assert run.data.tags["sentlab.quant"] == quant and "sentlab.quant_fallback" not in run.data.tags
    epochs = {m.step for m in store().get_metric_history(run.info.run_id, "epoch/val_accuracy")}
    assert epochs == {1, 2}
    assert "test_accuracy" in run.data.metrics


def test_quantized_seq_cls_keeps_its_head_in_full_precision(tiny_models, train, store, runs_dir):
    """A 4-bit seq_cls run's head is a plain fp32 layer (a quantized one cannot train: peft #1720), in the run's
    model as loaded back, and it trained: its saved weights differ from those of the same run with 0 epochs (same
    seed, so the same initial head), while the 4-bit base layers stay 4-bit."""
    from safetensors.torch import load_file

    from sentlab import mlflow_model

    for epochs in (2, 0):
        train(*tiny_args(tiny_models, "gpt_neox"), "head=seq_cls", "quant=nf4", *TWO_EPOCHS, f"train.epochs={epochs}")
    runs = {run.data.params["train.epochs"]: run for run in all_runs(store())}
    assert {run.info.status for run in runs.values()} == {"FINISHED"}
    heads = {}
    for epochs, run in runs.items():
        weights = load_file(f"{store().download_artifacts(run.info.run_id, 'adapter')}/adapter_model.safetensors")
        heads[epochs] = {name: w for name, w in weights.items() if ".score." in name}
    assert heads["2"] and {w.dtype for w in heads["2"].values()} == {torch.float32}
    assert all(not torch.equal(heads["2"][name], heads["0"][name]) for name in heads["0"])

    mlflow_model.use_store(f"sqlite:///{runs_dir}/mlflow.db")
    model = mlflow_model.load(runs["2"].info.run_id).model
    kinds = {name: (type(m).__name__, getattr(m, "weight", None)) for name, m in model.named_modules()}
    score = [w for name, (kind, w) in kinds.items() if name.endswith("score.modules_to_save.default")]
    assert len(score) == 1 and type(score[0]).__name__ == "Parameter" and score[0].dtype == torch.float32
    assert any(kind == "Linear4bit" for kind, _ in kinds.values())


@pytest.mark.parametrize("quant,layer", [("nf4", "Linear4bit"), ("int8", "Linear8bitLt")])
def test_base_is_quantized_and_output_layers_are_not(quant, layer, tiny_models):
    from transformers import AutoModelForCausalLM

    from sentlab import quant as quantization

    cfg = OmegaConf.load(CONF / "quant" / f"{quant}.yaml")
    model = AutoModelForCausalLM.from_pretrained(
        tiny_models["gpt_neox"], quantization_config=quantization.quantization_config(cfg)
    )
    kinds = {name: type(module).__name__ for name, module in model.named_modules()}
    assert kinds["gpt_neox.layers.0.attention.query_key_value"] == layer
    assert kinds["lm_head"] == "Linear"  # the LM head stays in full precision
    assert quantization.is_4bit(model) == (quant == "nf4")


@pytest.mark.parametrize("fallback", ["error", "full_precision"])
def test_when_bitsandbytes_cannot_run(fallback, tiny_models, train, store, monkeypatch, capsys):
    from sentlab import quant

    reason = "bitsandbytes cannot be imported (ImportError: simulated)"
    monkeypatch.setattr(quant, "unavailable", lambda: reason)
    args = [*tiny_args(tiny_models, "gpt_neox"), "quant=nf4", f"quant.fallback={fallback}", *FAST]
    if fallback == "error":
        with pytest.raises(SystemExit) as exit_info:
            train(*args)
        assert exit_info.value.code == 2
        lines = capsys.readouterr().err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("sentlab: error: quant: quant=nf4 needs bitsandbytes"), lines
        assert "quant.fallback=full_precision" in lines[0]
        assert all_runs(store()) == []
    else:
        with pytest.warns(UserWarning, match="FULL PRECISION"):
            train(*args)
        (run,) = all_runs(store())
        assert run.info.status == "FINISHED"
        assert run.data.tags["sentlab.quant_fallback"] == f"full_precision: {reason}"


def _lora_model(tiny_models, quant_name):
    from sentlab import adapters, backbones, quant
    from sentlab.heads.generative import GenerativeHead

    backbone = OmegaConf.create({"source": str(tiny_models["gpt_neox"]), "pad_token": "eos"})
    tokenizer = backbones.load_tokenizer(backbone)
    cfg = OmegaConf.create(
        {
            "head": {"template": "Review: {text}\nSentiment:", "label_prefix": " ", "add_bos": False},
            "train": {"max_length": 64},
        }
    )
    head = GenerativeHead(cfg, tokenizer, Labels(["a", "b", "c"], ["terrible", "okay", "great"]))
    qcfg = OmegaConf.load(CONF / "quant" / f"{quant_name}.yaml")
    model = backbones.load_model(
        head.model_class(), backbone, tokenizer, quantization_config=quant.quantization_config(qcfg)
    )
    model = quant.prepare(model, qcfg)
    lora = OmegaConf.create(
        {
            "r": 4,
            "alpha": 8,
            "dropout": 0.0,
            "target_modules": ["query_key_value"],
            "bias": "none",
            "modules_to_save": None,
        }
    )
    model = adapters.add_lora(model, lora, head.task_type)
    torch.manual_seed(0)
    for name, param in model.named_parameters():
        if "lora_B" in name:  # B starts at zero (a no-op adapter): give it weights
            param.data.normal_(std=0.5)
    features = [
        {"input_ids": tokenizer(head.prompt(t), add_special_tokens=False)["input_ids"], "label": 0}
        for t in ["great stuff", "it broke after a day, do not buy", "okay"]
    ]
    return model.eval(), head, head.collate(features)


def test_merged_model_predicts_the_same(tiny_models):
    from peft import PeftModel

    from sentlab import adapters

    model, head, batch = _lora_model(tiny_models, "none")
    with torch.no_grad():
        before = head.evaluate_batch(model, batch)[1]
        merged = adapters.merge(model)
        after = head.evaluate_batch(merged, batch)[1]
    assert not isinstance(merged, PeftModel)
    assert not any("lora" in name for name, _ in merged.named_parameters())
    assert before.std() > 0.01  # the adapter changes the scores, so the comparison means something
    assert torch.allclose(before, after, atol=1e-4)


def test_merge_into_a_4bit_base_is_refused(tiny_models):
    from sentlab import adapters
    from sentlab.errors import ConfigError

    model, _, _ = _lora_model(tiny_models, "nf4")
    # The CPU workaround (ENVIRONMENT.md) is on: no 4-bit layer repacks into the inference-only layout.
    # (A no-op on CPUs without avx512_bf16, where bitsandbytes never takes that path.)
    layers = [m for m in model.modules() if type(m).__name__ == "Linear4bit" and hasattr(m, "quant_state")]
    assert layers and not any(getattr(m, "support_avx512bf16_for_cpu", False) for m in layers)
    with pytest.raises(ConfigError, match="^quant: cannot merge a LoRA adapter into a 4-bit base model"):
        adapters.merge(model)
