"""Every method through the whole run (issue 20): `method=NAME` trains a tiny model one epoch through the real entry
point, and the MLflow model it logs predicts after reload what the run predicted; the lexicon baseline is a run of
its own; refusals stop before any run; class weights reach the loss and the run's params."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import FAST, all_runs, tiny_args

PROBS = ["prob_negative", "prob_neutral", "prob_positive"]

# (arch, method, overrides): one of each kind of method, on the backbones they are meant for.
RUNS = [
    ("bert", "lora", []),
    ("bert", "ia3", ["train.lr=1e-2"]),
    ("roberta", "vera", ["method.r=16"]),
    ("gpt_neox", "prefix", ["method.num_virtual_tokens=4"]),  # a decoder's seq_cls
    ("bert", "bitfit", []),
    ("bert", "head_only", []),
    ("bert", "full", ["train.lr=1e-4"]),
    ("gpt_neox", "loraplus", ["head=generative", "data.label_words=[terrible,okay,great]", "train.max_length=256"]),  # noqa: E501
]


def logged_run(store, runs_dir):
    import mlflow

    (run,) = all_runs(store())
    assert run.info.status == "FINISHED"
    mlflow.set_tracking_uri(f"sqlite:///{runs_dir}/mlflow.db")
    return run


def reload_matches_the_run(store, run) -> None:
    """The run's MLflow model, reloaded, gives the test probabilities the run logged (its input example is the
    first test texts)."""
    import tempfile

    import mlflow

    from sentlab import mlflow_model

    with tempfile.TemporaryDirectory() as tmp:
        texts = mlflow_model.fetch(run.info.run_id, tmp).held_out_texts()
    model = mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/model")
    logged = pd.read_csv(store().download_artifacts(run.info.run_id, "test_predictions.csv")).head(len(texts))
    predicted = model.predict(pd.DataFrame({"text": texts}), params={"predict_method": "predict_table"})
    assert predicted[PROBS].to_numpy() == pytest.approx(logged[PROBS].to_numpy(), abs=1e-4)


@pytest.mark.parametrize("arch,method,extra", RUNS, ids=[m for _, m, _ in RUNS])
def test_method_runs_to_the_end_and_reloads(arch, method, extra, tiny_models, train, store, runs_dir):
    train(*tiny_args(tiny_models, arch), *FAST, f"method={method}", "train.precision=fp32", *extra)
    run = logged_run(store, runs_dir)
    params, metrics = run.data.params, run.data.metrics
    assert params["method.name"] == method
    assert 0 < metrics["trainable_params"] <= metrics["total_params"]
    if method == "full":
        assert metrics["trainable_params"] == metrics["total_params"]
    reload_matches_the_run(store, run)


def test_head_only_trains_exactly_the_classifier(tiny_models, train, store, runs_dir):
    train(*tiny_args(tiny_models, "bert"), *FAST, "method=head_only", "train.epochs=0")
    metrics = logged_run(store, runs_dir).data.metrics
    hidden = 64  # conftest.TINY; BERT's seq_cls head is classifier = Linear(hidden, 3)
    assert metrics["trainable_params"] == hidden * 3 + 3


def test_lexicon_is_a_run_of_its_own(train, store, runs_dir):
    from sentlab import mlflow_model

    train("method=lexicon", "data.max_samples.test=24")
    run = logged_run(store, runs_dir)
    metrics = run.data.metrics
    assert metrics["trainable_params"] == 0 and metrics["train_time_s"] == 0
    assert 0 <= metrics["test_accuracy"] <= 1 and "val_f1_macro" in metrics
    reload_matches_the_run(store, run)
    labels = mlflow_model.load(run.info.run_id).predict(["I love it, wonderful!", "Terrible, I hate it.", "A box."])
    assert list(labels["label"]) == ["positive", "negative", "neutral"]
    import mlflow

    requirements = open(mlflow.pyfunc.get_model_dependencies(f"runs:/{run.info.run_id}/model")).read()
    assert "vaderSentiment==" in requirements


@pytest.mark.parametrize(
    "args,setting",
    [
        (["method=full", "quant=nf4"], "method=full with quant=nf4"),
        (["method=head_only", "head=generative"], "method=head_only with head=generative"),
        (["method=prefix", "tracking.log_model=merged"], "tracking.log_model=merged"),
        (["train.class_weights=[1,2]"], "train.class_weights"),
    ],
)
def test_refusals_stop_before_the_run(args, setting, tiny_models, train, store, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(*tiny_args(tiny_models, "bert"), *FAST, *args)
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].removeprefix("sentlab: error: ").startswith(setting), lines
    assert all_runs(store()) == []


GENERATIVE = ["head=generative", "data.label_words=[terrible,okay,great]", "train.max_length=256"]


@pytest.mark.parametrize(
    "arch,setting,extra", [("bert", "auto", []), ("gpt_neox", "[1,2,3]", GENERATIVE)], ids=["seq_cls", "generative"]
)
def test_class_weights_are_logged(arch, setting, extra, tiny_models, train, store, runs_dir):
    train(*tiny_args(tiny_models, arch), *FAST, f"train.class_weights={setting}", *extra)
    params = logged_run(store, runs_dir).data.params
    weights = [float(params[f"class_weight.{n}"]) for n in ("negative", "neutral", "positive")]
    if setting == "auto":
        assert params["train.class_weights"] == "auto"
        assert sum(weights) / 3 == pytest.approx(1, abs=1e-3)
    else:
        assert weights == [1, 2, 3]


def test_seq_cls_head_weights_its_loss_by_class(tiny_models):
    """The head's train loss with class weights is sum_i w[y_i] CE_i / sum_i w[y_i], computed here by hand."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from sentlab.heads.seq_cls import SeqClsHead

    model = AutoModelForSequenceClassification.from_pretrained(str(tiny_models["bert"]), num_labels=3).eval()
    head = SeqClsHead.__new__(SeqClsHead)  # only loss() is used: no config needed
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_models["bert"]))
    batch = dict(tokenizer(["good", "bad one", "fine", "so so"], padding=True, return_tensors="pt"))
    batch["labels"] = torch.tensor([0, 1, 2, 2])
    head.class_weights = torch.tensor([3.0, 1.0, 0.5])
    with torch.no_grad():
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        per_example = -torch.log_softmax(logits, -1)[torch.arange(4), batch["labels"]]
        w = head.class_weights[batch["labels"]]
        assert head.loss(model, batch).item() == pytest.approx(((w * per_example).sum() / w.sum()).item(), rel=1e-5)
        head.class_weights = None
        assert head.loss(model, batch).item() == pytest.approx(per_example.mean().item(), rel=1e-5)


@pytest.mark.slow  # a sweep of four runs
def test_compare_shows_methods_and_baselines(tiny_models, train, store, runs_dir, capsys):
    import csv

    from sentlab import compare, comparison

    train("-m", *tiny_args(tiny_models, "bert"), *FAST, "method=lora,head_only,full,lexicon")
    capsys.readouterr()
    assert compare.main(["--runs-dir", str(runs_dir)]) == 0
    (parent,) = [r for r in all_runs(store()) if r.data.tags.get("sentlab.sweep") == "parent"]
    with open(runs_dir / "compare" / parent.info.run_id / "compare.csv", newline="") as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    assert set(rows) == {"lora", "head_only", "full", "lexicon"}
    assert rows["lora"]["kind"] == "" and rows["full"]["kind"] == "full baseline"
    assert rows["head_only"]["kind"] == "head_only baseline" and rows["lexicon"]["kind"] == "lexicon baseline"
    full, lora = rows["full"], rows["lora"]
    assert float(full["trainable_pct"]) == pytest.approx(100)
    assert (
        float(full["trainable_params"]) > float(lora["trainable_params"]) > float(rows["head_only"]["trainable_params"])
    )
    per_param = float(lora[comparison.PER_PARAM])
    assert per_param == pytest.approx(float(lora["test_accuracy"]) / float(lora["trainable_params"]) * 1e6)
    assert rows["lexicon"][comparison.PER_PARAM] == ""  # nothing trains: no ratio

    # predict --compare and evaluate take any method's model, the lexicon's included
    from sentlab import evaluate, predict

    uri, ids = f"sqlite:///{runs_dir}/mlflow.db", [rows[m]["run_id"] for m in ("lora", "full", "lexicon")]
    capsys.readouterr()
    assert predict.main(["I love it", "--compare", *ids, "--tracking-uri", uri]) == 0
    assert capsys.readouterr().out.count('"label"') == 0  # columns are named by run
    assert evaluate.main([ids[2], "data.max_samples.test=12", "--tracking-uri", uri]) == 0
    assert "test_accuracy=" in capsys.readouterr().out


@pytest.mark.slow  # three trainings each
@pytest.mark.parametrize("method", ["loraplus", "full"])
def test_a_stopped_method_resumes_as_if_never_stopped(method, tiny_models, tmp_path):
    """Stopped at its first optimizer step (a checkpoint saved) and resumed into a freshly built model, a run ends
    where an uninterrupted one does: LoRA+'s parameter groups and a full fine-tune's every weight come back."""
    import signal

    from transformers import set_seed

    from sentlab import checkpoints, models, pipeline
    from sentlab.config import compose
    from sentlab.training import fit

    args = [*tiny_args(tiny_models, "bert"), *FAST, f"method={method}", "train.precision=fp32", "train.epochs=2"]
    prepared = pipeline.prepare(compose([*args, f"runs_dir={tmp_path}"]))
    cfg, head, cpu = prepared.cfg, prepared.head, torch.device("cpu")
    features = {split: head.encode(rows) for split, rows in prepared.data.splits.items()}

    def train(folder, stop: bool):
        set_seed(0)
        model = models.build(cfg, head, cpu)
        saved = checkpoints.Checkpoints(tmp_path / folder, None, 2)
        saved.stop_signal = signal.SIGTERM if stop else None
        return fit(model, head, features, cfg.train, cpu, checkpoints=saved, method=cfg.method)

    with pytest.raises(checkpoints.Stopped):
        train("stopped", stop=True)
    resumed, fresh = train("stopped", stop=False), train("fresh", stop=False)
    for key in ("loss", "accuracy", "f1_macro"):
        assert resumed["val"][key] == pytest.approx(fresh["val"][key], abs=1e-6), key


def test_default_method_and_no_class_weights_keep_the_config_hash_of_older_runs():
    """Sweeps find FINISHED and interrupted runs by config hash: the method group and train.class_weights must
    not orphan the runs logged before them; any other choice is another config."""
    from omegaconf import OmegaConf

    from sentlab.tracking import config_hash

    before = OmegaConf.create({"train": {"batch_size": 8}, "lora": {"r": 8}})
    now = OmegaConf.create(
        {"train": {"batch_size": 8, "class_weights": None}, "lora": {"r": 8}, "method": {"name": "lora"}}
    )
    assert config_hash(now) == config_hash(before)
    now.method.name = "dora"
    assert config_hash(now) != config_hash(before)
    now.method.name, now.train.class_weights = "lora", "auto"
    assert config_hash(now) != config_hash(before)
