"""Head styles: how a backbone turns text into a label, and what it is trained on.

A head tokenizes the data, collates batches, and gives the training loss and,
for evaluation, log-probabilities over the labels. Every head has one file here
and one config in sentlab/conf/head/ of the same name.
"""

from __future__ import annotations

from sentlab.heads.base import Head

__all__ = ["Head", "head_class", "make_head"]


def head_class(name: str) -> type[Head]:
    """The head class named `name` (cfg.head.name, one of sentlab.config.HEADS)."""
    from .generative import GenerativeHead
    from .seq_cls import SeqClsHead

    return {"seq_cls": SeqClsHead, "generative": GenerativeHead}[name]


def make_head(cfg, tokenizer, labels) -> Head:
    """The head named by cfg.head.name, for `labels` (sentlab.data.Labels)."""
    return head_class(cfg.head.name)(cfg, tokenizer, labels)
