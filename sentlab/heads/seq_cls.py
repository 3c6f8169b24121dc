"""Sequence-classification head: a linear layer over the pooled (encoder) or last-token (decoder) state."""

from __future__ import annotations

import torch
from transformers import AutoModelForSequenceClassification, DataCollatorWithPadding

from sentlab.heads.base import Head
from sentlab.losses import seq_cls_loss


class SeqClsHead(Head):
    name = "seq_cls"
    task_type = "SEQ_CLS"
    # Right padding: decoders pool the last non-pad token, found from config.pad_token_id.
    padding_side = "right"

    def __init__(self, cfg, tokenizer, labels):
        super().__init__(cfg, tokenizer, labels)
        self._pad = DataCollatorWithPadding(tokenizer)  # pads each batch to its longest example

    def model_class(self):
        return AutoModelForSequenceClassification

    def model_kwargs(self) -> dict:
        names = list(self.label_names)
        return {
            "num_labels": len(names),
            "id2label": dict(enumerate(names)),
            "label2id": {name: i for i, name in enumerate(names)},
        }

    def encode(self, split):
        return self.map_text(split, lambda batch: self._tokenize(batch["text"]))

    def features(self, texts):
        encoded = self._tokenize(list(texts))
        return [dict(zip(encoded.keys(), row)) for row in zip(*encoded.values())]

    def _tokenize(self, texts: list[str]):
        return self.tokenizer(texts, truncation=True, max_length=self.cfg.train.max_length)

    def collate(self, features):
        return self._pad(features)  # "label" becomes "labels"

    def loss(self, model, batch):
        if self.class_weights is None:
            return model(**batch).loss
        logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits
        return seq_cls_loss(logits, batch["labels"], self.class_weights)  # each example weighted by its class

    def evaluate_batch(self, model, batch):
        out = model(**batch)
        return out.loss, torch.log_softmax(out.logits.float(), dim=-1)
