"""The interface every head style implements (sentlab.heads has one file per style)."""

from __future__ import annotations

import uuid

import torch


class Head:
    """The interface the training loop uses (see seq_cls.py for the simplest one)."""

    name: str
    task_type: str  # peft's TaskType: what the adapter wraps and saves
    padding_side: str  # "right" or "left", set on the tokenizer
    class_weights: torch.Tensor | None = None  # [n_labels] weights of the train loss (train.class_weights), or None

    def __init__(self, cfg, tokenizer, labels):
        self.cfg = cfg  # the whole run config
        self.tokenizer = tokenizer
        tokenizer.padding_side = self.padding_side
        self.label_names = list(labels.names)  # labels: sentlab.data.Labels

    def model_class(self):
        """The transformers AutoModel class to load the backbone with."""
        raise NotImplementedError

    @classmethod
    def check_backbone(cls, config) -> None:
        """Raise ConfigError when the backbone (its transformers config) cannot serve this head."""

    def model_kwargs(self) -> dict:
        """Extra from_pretrained arguments (e.g. num_labels)."""
        return {}

    def encode(self, split):
        """Tokenize a data split (columns text, label) into model features."""
        raise NotImplementedError

    def features(self, texts: list[str]) -> list[dict]:
        """Texts as model features, one dict per text (as `encode` gives them, without a label), tokenized
        directly: what prediction runs per request (no datasets round trip). This default goes through `encode`;
        the heads here tokenize directly."""
        from datasets import Dataset

        return list(self.encode(Dataset.from_dict({"text": list(texts), "label": [0] * len(texts)})))

    @staticmethod
    def map_text(split, tokenize):
        """`split.map(tokenize)` over batches of texts, in memory. Left to itself, datasets fingerprints a map by
        pickling `tokenize` with the tokenizer it holds: 0.7 s a split, longer than tokenizing thousands of
        texts. A fresh fingerprint skips that, and nothing is read from or written to the datasets cache
        under it (re-tokenizing costs far less than training on the same rows)."""
        return split.map(
            tokenize,
            batched=True,
            remove_columns=["text"],
            keep_in_memory=True,
            load_from_cache_file=False,
            new_fingerprint=uuid.uuid4().hex,
        )

    def collate(self, features: list[dict]) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    def loss(self, model, batch) -> torch.Tensor:
        raise NotImplementedError

    def evaluate_batch(self, model, batch) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean loss, log-probabilities over the labels [batch, n_labels])."""
        raise NotImplementedError

    def start_evaluation(self, model, device) -> None:
        """Called once before each evaluation pass, with the model as it is then (e.g. the generative head's
        contextual calibration scores its content-free inputs here)."""

    def evaluation_metrics(self) -> dict[str, float]:
        """Values of the last evaluation pass worth logging besides its metrics (e.g. the content-free label
        probabilities of contextual calibration)."""
        return {}
