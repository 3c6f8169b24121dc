"""sentlab.export writes a Hugging Face folder that transformers loads without sentlab and that predicts as the
run's model does: the base with the adapter beside it, or merged (checked before writing; a QLoRA run's base
reloaded unquantized, merging into its 4-bit base refused)."""

from __future__ import annotations

import json

import pytest
from conftest import FAST, all_runs, tiny_args

TEXTS = ["a fine kettle, works well", "broke after a day", "it is okay", "terrible, it leaks"]


@pytest.fixture
def exported(tiny_models, train, store, runs_dir, tmp_path, capsys):
    """Train a run with ARGS, export it (with --merge or not); (run's classifier, folder, printed line)."""
    from sentlab import export, mlflow_model

    def _exported(args: list[str], merge: bool):
        train(*FAST, *args)
        (run,) = all_runs(store())
        uri = f"sqlite:///{runs_dir}/mlflow.db"
        out = tmp_path / ("merged" if merge else "base_and_adapter")
        capsys.readouterr()
        assert export.main([run.info.run_id, str(out), "--tracking-uri", uri, *(["--merge"] if merge else [])]) == 0
        line = capsys.readouterr().out.strip().splitlines()[-1]
        return mlflow_model.load(run.info.run_id), out, line

    return _exported


@pytest.mark.parametrize("merge", [False, True])
def test_seq_cls_export_loads_with_transformers_alone(merge, exported, tiny_models):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    classifier, out, line = exported(tiny_args(tiny_models, "roberta"), merge)
    assert (out / "adapter_config.json").exists() != merge
    if merge:
        assert "match the adapter's on 16 held-out texts (largest log-probability difference" in line
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    assert model.config.id2label == {0: "negative", 1: "neutral", 2: "positive"}
    tokenizer = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    classifier.precision = "fp32"  # as transformers alone computes (train.precision=auto may pick bf16 here)
    assert torch.log_softmax(logits, -1).numpy() == pytest.approx(classifier.log_probs(TEXTS), abs=1e-4)


def test_generative_export_carries_its_prompt_and_label_words(exported, tiny_models):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    words = ["head=generative", "data.label_words=[terrible,okay,great]", "head.template='Review: {text}\\nSentiment:'"]
    classifier, out, _ = exported([*tiny_args(tiny_models, "gpt_neox"), *words], merge=True)
    info = json.loads((out / "classifier.json").read_text())
    assert info["template"] == "Review: {text}\nSentiment:" and info["label_words"] == ["terrible", "okay", "great"]
    model, tokenizer = AutoModelForCausalLM.from_pretrained(out).eval(), AutoTokenizer.from_pretrained(out)
    labels = []
    for text in TEXTS:  # what classifier.json says to do: score each label word after the filled template
        prompt = tokenizer(info["template"].format(text=text), return_tensors="pt")
        with torch.no_grad():
            last = model(**prompt).logits[0, -1]
        firsts = [
            tokenizer(info["label_prefix"] + w, add_special_tokens=False)["input_ids"][0] for w in info["label_words"]
        ]
        labels.append(info["label_names"][int(last[firsts].argmax())])
    assert labels == list(classifier.predict(TEXTS)["label"])


def test_qlora_export_merges_into_the_unquantized_base(exported, tiny_models, store, runs_dir):
    from omegaconf import OmegaConf

    from sentlab import adapters, classifier
    from sentlab.errors import ConfigError

    words = ["head=generative", "data.label_words=[terrible,okay,great]", "train.max_length=256", "quant=nf4"]
    _, out, line = exported([*tiny_args(tiny_models, "gpt_neox"), *words], merge=True)
    assert "merged" in line and (out / "model.safetensors").exists()
    (run,) = all_runs(store())
    cfg = OmegaConf.load(store().download_artifacts(run.info.run_id, "config.yaml"))
    quantized = classifier.load(cfg, store().download_artifacts(run.info.run_id, "adapter"))
    with pytest.raises(ConfigError, match="cannot merge a LoRA adapter into a 4-bit base"):
        adapters.merge(quantized.model)


def test_export_bad_input_is_one_line(tiny_models, train, store, runs_dir, tmp_path, capsys, monkeypatch):
    from sentlab import classifier, export

    train(*tiny_args(tiny_models, "bert"), *FAST, "train.epochs=0")
    (run,) = all_runs(store())
    uri = f"sqlite:///{runs_dir}/mlflow.db"
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    for args, message in [
        ([run.info.run_id, str(tmp_path / "full")], "OUT_DIR: "),
        (["0123abcd", str(tmp_path / "new")], "run 0123abcd: no such run"),
    ]:
        capsys.readouterr()
        assert export.main([*args, "--tracking-uri", uri]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
    assert not (tmp_path / "new").exists()

    monkeypatch.setattr(classifier, "MERGE_TOLERANCE", -1.0)  # every merge now "differs": nothing is written
    assert export.main([run.info.run_id, str(tmp_path / "new"), "--merge", "--tracking-uri", uri]) == 1
    assert "differ from the adapter's on 16 held-out texts" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize("method", ["full", "ia3"])
def test_every_weight_method_exports_merged(method, exported, tiny_models):
    """method=full exports as it is (every weight is the model's); ia3 merges like LoRA."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    classifier, out, _ = exported([*tiny_args(tiny_models, "bert"), f"method={method}"], merge=True)
    assert not (out / "adapter_config.json").exists()
    model, tokenizer = (
        AutoModelForSequenceClassification.from_pretrained(out).eval(),
        AutoTokenizer.from_pretrained(out),
    )
    with torch.no_grad():
        logits = model(**tokenizer(TEXTS, padding=True, return_tensors="pt")).logits
    classifier.precision = "fp32"
    assert torch.log_softmax(logits, -1).numpy() == pytest.approx(classifier.log_probs(TEXTS), abs=1e-4)


@pytest.mark.slow  # a decoder run, two exports
def test_prefix_tuning_exports_beside_the_base_and_refuses_merge(tiny_models, train, store, runs_dir, tmp_path, capsys):
    from sentlab import export

    train(*FAST, *tiny_args(tiny_models, "gpt_neox"), "method=prefix", "method.num_virtual_tokens=4")
    (run,) = all_runs(store())
    uri = f"sqlite:///{runs_dir}/mlflow.db"
    assert export.main([run.info.run_id, str(tmp_path / "a"), "--tracking-uri", uri]) == 0
    assert json.loads((tmp_path / "a" / "adapter_config.json").read_text())["peft_type"] == "PREFIX_TUNING"
    capsys.readouterr()
    assert export.main([run.info.run_id, str(tmp_path / "b"), "--tracking-uri", uri, "--merge"]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("sentlab.export: error: merge: virtual tokens")


def test_onnx_export_predicts_as_pytorch(tiny_models, train, store, runs_dir, tmp_path, capsys):
    """--onnx: the merged folder plus model.onnx, whose ONNX Runtime logits equal the merged PyTorch model's
    within onnx_model.TOLERANCE, on texts of other lengths and batch sizes than the export traced."""
    pytest.importorskip("onnxruntime")
    import numpy as np
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sentlab import export, mlflow_model, onnx_model

    train(*FAST, *tiny_args(tiny_models, "roberta"))
    (run,) = all_runs(store())
    out, uri = tmp_path / "onnx", f"sqlite:///{runs_dir}/mlflow.db"
    capsys.readouterr()
    assert export.main([run.info.run_id, str(out), "--tracking-uri", uri, "--onnx"]) == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert "model.onnx: ONNX Runtime's logits match PyTorch's on the same texts" in line, line
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    tokenizer = AutoTokenizer.from_pretrained(out)
    texts = [*TEXTS, "a much longer review that goes on and on about the kettle " * 3]
    session = onnx_model.OnnxClassifier.session(out / onnx_model.FILE)
    names = {i.name for i in session.get_inputs()}
    for batch in (texts[:1], texts):
        encoded = tokenizer(batch, padding=True, return_tensors="pt")
        with torch.no_grad():
            expected = model(**encoded).logits.numpy()
        got = session.run(["logits"], {k: v.numpy() for k, v in encoded.items() if k in names})[0]
        assert np.abs(got - expected).max() <= onnx_model.TOLERANCE
    classifier = mlflow_model.load(run.info.run_id)
    classifier.precision = "fp32"
    runtime = onnx_model.OnnxClassifier(out / onnx_model.FILE, classifier.head, classifier.cfg)
    assert runtime.predict(texts)["label"].tolist() == classifier.predict(texts)["label"].tolist()
    assert runtime.log_probs(texts) == pytest.approx(classifier.log_probs(texts), abs=1e-4)


def test_onnx_export_refuses_a_generative_run(tiny_models, train, store, runs_dir, tmp_path, capsys):
    from sentlab import export

    words = ["head=generative", "data.label_words=[terrible,okay,great]", "train.max_length=256"]
    train(*FAST, *tiny_args(tiny_models, "gpt_neox"), *words)
    (run,) = all_runs(store())
    out = tmp_path / "onnx"
    code = export.main([run.info.run_id, str(out), "--tracking-uri", f"sqlite:///{runs_dir}/mlflow.db", "--onnx"])
    assert code == 2
    assert "--onnx: head=generative is not exported to ONNX" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())
