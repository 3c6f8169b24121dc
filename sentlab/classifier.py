"""A trained run as a classifier: its model (built by sentlab.models) with its head, giving labels and
probabilities for texts; merged into its base, and saved as a plain Hugging Face folder."""

from __future__ import annotations

import json
from pathlib import Path

from sentlab import calibration, models
from sentlab.data import Labels
from sentlab.errors import ConfigError

MERGE_TOLERANCE = 1e-3  # largest log-probability difference a merge may make (float rounding only)


class Classifier:
    """A model rebuilt from a run, with its head: labels and probabilities for texts."""

    def __init__(self, model, head, cfg, adapter: str | None = None, temperature: float = 1.0):
        self.model, self.head, self.cfg = model, head, cfg
        self.temperature = temperature  # train.calibration=temperature's T (calibration.json): logits / T
        self.label_names = list(head.label_names)
        self.adapter = adapter  # on a base shared by several runs: the adapter to switch to (load_shared)
        self.precision = cfg.train.precision  # of its forward passes, as train.precision (auto: the hardware's)
        self._started = None  # what the head's per-model setup was last done for (_start)

    def evaluate(self, texts: list[str], labels: list[int] | None = None, batch_size: int | None = None):
        """sentlab.training's Evaluation of texts (labels: ids into label_names, else the loss is meaningless):
        the run's own evaluation path, in batches sorted by length, its probabilities at the run's temperature."""
        from datasets import Dataset

        from sentlab.training import evaluate

        if self.adapter:
            self.model.set_adapter(self.adapter)
        rows = Dataset.from_dict({"text": list(texts), "label": list(labels or [0] * len(texts))})
        batch_size = batch_size or self.cfg.train.eval_batch_size
        features = self.head.encode(rows)
        evaluation = evaluate(self.model, self.head, features, self.model.device, batch_size, self.precision, "predict")
        evaluation.log_probs = calibration.scale(evaluation.log_probs, self.temperature)
        return evaluation

    def log_probs(self, texts: list[str], batch_size: int | None = None):
        """[n, n_labels] log-probabilities: the texts tokenized directly (no datasets per call), in batches sorted
        by length, under torch.inference_mode; what predict and a served model run per request."""
        import numpy as np
        import torch

        from sentlab.training import autocast, resolve_precision, to_device

        out = np.zeros((len(texts), len(self.label_names)), dtype=np.float32)
        if not len(texts):
            return out
        if self.adapter:
            self.model.set_adapter(self.adapter)
        device = self.model.device
        precision = resolve_precision(self.precision, device, self.model)
        features = self.head.features(list(texts))
        order = np.argsort([len(f["input_ids"]) for f in features], kind="stable")
        size = batch_size or self.cfg.train.eval_batch_size
        with torch.inference_mode(), autocast(device, precision):
            self._start(device, precision)
            for start in range(0, len(order), size):
                rows = order[start : start + size]
                batch = self.head.collate([{**features[i], "label": 0} for i in rows])
                _, scores = self.head.evaluate_batch(self.model, to_device(batch, device))
                out[rows] = scores.float().cpu().numpy()
        return calibration.scale(out, self.temperature)

    def _start(self, device, precision: str) -> None:
        """The head's once-per-model setup (e.g. contextual calibration's content-free scores), redone only when
        the model, its adapter or the precision changed: not on every request."""
        key = (id(self.model), self.adapter, precision)
        if self._started != key:
            self.head.start_evaluation(self.model, device)
            self._started = key

    def predict(self, texts: list[str], batch_size: int | None = None):
        """A DataFrame: label, probability, prob_<label> for every label; one row per text."""
        import numpy as np

        from sentlab.metrics import prediction_frame

        return prediction_frame(np.exp(self.log_probs(texts, batch_size).astype(np.float64)), self.label_names)


class LexiconClassifier(Classifier):
    """The lexicon baseline (method=lexicon: VADER, sentlab.lexicon) behind the same interface: no model, no
    head; its loss is the mean negative log-likelihood of the given labels under its (uncalibrated) probabilities."""

    def __init__(self, cfg):
        from sentlab.lexicon import Lexicon

        self.model, self.head, self.cfg, self.adapter = None, None, cfg, None
        self.label_names = list(cfg.data.label_names)
        self.lexicon = Lexicon(self.label_names, cfg.method.threshold, cfg.method.scale)

    def log_probs(self, texts: list[str], batch_size: int | None = None):
        return self.lexicon.log_probs(list(texts)).astype("float32")

    def evaluate(self, texts: list[str], labels: list[int] | None = None, batch_size: int | None = None):
        import numpy as np

        from sentlab.training import Evaluation

        log_probs = self.lexicon.log_probs(list(texts)).astype(np.float32)
        labels = np.asarray(list(labels) if labels is not None else [0] * len(log_probs), dtype=np.int64)
        loss = float(-log_probs[np.arange(len(labels)), labels].mean()) if len(labels) else 0.0
        return Evaluation(loss, log_probs, labels)


def _head(cfg, tokenizer_folder: str | Path):
    from transformers import AutoTokenizer

    from sentlab.heads import make_head

    tokenizer = AutoTokenizer.from_pretrained(str(tokenizer_folder))  # saved with its pad token
    return make_head(cfg, tokenizer, Labels.of(cfg.data))


def load(cfg, adapter: str | Path | None = None, merged: str | Path | None = None, *, full_precision=False):
    """The classifier of run config `cfg`: its base rebuilt from backbone.source (quantized as the run was, unless
    full_precision) with the trained adapter in `adapter` on top; or the merged model in `merged`."""
    if models.method_of(cfg).name == "lexicon":
        return LexiconClassifier(cfg)
    device = models.pick_device("auto")
    if merged is not None:
        head = _head(cfg, merged)
        model = models.load_merged(head, merged, device).eval()
        return Classifier(model, head, cfg, temperature=calibration.load_temperature(merged))
    head = _head(cfg, adapter)
    model = models.build(cfg, head, device, adapter, full_precision=full_precision).eval()
    return Classifier(model, head, cfg, temperature=calibration.load_temperature(adapter))


def merged_for_serving(classifier: Classifier) -> Classifier:
    """The classifier with what trained folded into the base (sentlab.methods.merge: no adapter layers in each
    forward) where that changes its answers by float rounding only: a full-precision base computing in fp32.
    Under bf16 autocast (train.precision=auto on a CPU or GPU with bf16) the adapter stays: merged weights round
    differently from the adapter the run was tested with (up to 5e-4 in a probability, measured) and made a text's
    answer depend on the padding of its batch. A quantized base keeps its adapter too (a merge would re-quantize);
    virtual tokens (prefix, prompt) stay inputs; plain-weight methods (bitfit, head_only, full) and the lexicon
    baseline have nothing to merge."""
    from sentlab import methods
    from sentlab.training import resolve_precision

    model = classifier.model
    if model is None or classifier.adapter:  # no model: the lexicon baseline
        return classifier
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    fp32 = resolve_precision(classifier.precision, model.device, model) == "fp32"
    if hasattr(model, "peft_config") and not model.active_peft_config.is_prompt_learning and fp32 and not quantized:
        classifier.model = methods.merge(model).eval()
    return classifier


def load_shared(runs: list[tuple[str, object, str | None]]) -> list[Classifier]:
    """Classifiers of several runs on one base, from (ref, run config, adapter folder) triples: the base is loaded
    once, each run's adapter is added to it (peft load_adapter) and switched to when that run predicts. The runs
    must share backbone, head style, quantization and number of labels."""
    from sentlab.heads import make_head

    def base(cfg):
        return (
            f"backbone.source={cfg.backbone.source} head={cfg.head.name} quant={cfg.quant.name} "
            f"labels={len(cfg.data.label_names)}"
        )

    first_ref, first_cfg, _ = runs[0]
    for ref, cfg, adapter in runs:
        if adapter is None and models.method_of(cfg).name != "lexicon":
            raise ConfigError(
                f"{ref}: its model is merged (tracking.log_model=merged); comparing swaps adapters "
                "on one base: compare runs logged with tracking.log_model=adapter"
            )
    if not all(adapter and (Path(adapter) / "adapter_config.json").is_file() for _, _, adapter in runs):
        return [load(cfg, adapter) for _, cfg, adapter in runs]  # not all peft adapters (method=full, lexicon...)
    for ref, cfg, _ in runs:
        if base(cfg) != base(first_cfg):
            raise ConfigError(f"{ref}: {base(cfg)}, but {first_ref}: {base(first_cfg)}; compare runs of one base")
    first = load(first_cfg, runs[0][2])
    first.adapter = "default"  # peft's name for the adapter loaded first
    classifiers = [first]
    for i, (_, cfg, adapter) in enumerate(runs[1:], start=1):
        first.model.load_adapter(adapter, adapter_name=f"run{i}")
        head = make_head(cfg, first.head.tokenizer, Labels.of(cfg.data))
        temperature = calibration.load_temperature(adapter)
        classifiers.append(Classifier(first.model, head, cfg, adapter=f"run{i}", temperature=temperature))
    return classifiers


class MergeMismatch(RuntimeError):
    """The merged model does not predict as the adapter does."""


def merge(cfg, adapter: str | Path, texts: list[str]) -> tuple[Classifier, float]:
    """The adapter folded into the full-precision base (a QLoRA run's base is reloaded unquantized), checked
    to predict as the adapter does on `texts`: (classifier, largest log-probability difference)."""
    import numpy as np

    from sentlab import methods

    classifier = load(cfg, adapter, full_precision=True)
    classifier.precision = "fp32"  # the check compares two ways of adding the same weights: no bf16 rounding in it
    temperature, classifier.temperature = classifier.temperature, 1.0  # compared unscaled (T < 1 magnifies)
    before = classifier.log_probs(texts)
    classifier.model = methods.merge(classifier.model)
    after = classifier.log_probs(texts)
    classifier.temperature = temperature
    diff = float(np.abs(before - after).max())
    if diff > MERGE_TOLERANCE or (before.argmax(axis=1) != after.argmax(axis=1)).any():
        raise MergeMismatch(
            f"the merged model's predictions differ from the adapter's on {len(texts)} held-out "
            f"texts (largest log-probability difference {diff:.2e})"
        )
    return classifier, diff


def save(classifier: Classifier, folder: Path) -> None:
    """A Hugging Face folder: weights (safetensors), config with the label names as id2label, tokenizer,
    for a generative run its prompt template and label words (classifier.json), and a calibrated run's temperature
    (calibration.json)."""
    names = classifier.label_names
    config = classifier.model.config
    config.id2label, config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    classifier.model.save_pretrained(folder)
    classifier.head.tokenizer.save_pretrained(folder)
    if classifier.temperature != 1.0:
        calibration.save(folder, classifier.temperature)
    if classifier.head.name == "generative":
        head, built = classifier.cfg.head, classifier.head
        # The template as the model reads it (rendered through the chat template with head.chat_template).
        info = {
            "template": built.prefix + "{text}" + built.suffix,
            "label_prefix": built.label_prefix,
            "add_bos": bool(head.add_bos),
            "label_names": names,
            "label_words": built.label_words,
            "chat_template": built.chat_template,
            "calibration": built.calibration,
            "use": "score each prefix+label word after the filled template; the best one is the label",
        }
        if built.calibration == "contextual":
            info["content_free"] = built.content_free
            info["use"] += (
                "; contextual calibration: divide the label probabilities by the mean label "
                "probabilities of the content_free texts, renormalize"
            )
        (Path(folder) / "classifier.json").write_text(json.dumps(info, indent=1))
