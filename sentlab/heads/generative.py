"""Generative head: a causal LM reads a prompt and the label word that follows it is the prediction.

    prompt  = head.template with {text} filled in       e.g. "Tweet: great day\\nSentiment:"
    target  = head.label_prefix + a label word          e.g. " positive"

Training is the causal-LM loss on the label word's tokens only (the prompt is masked). Prediction
scores every label word in one batched forward pass and takes the best; there is no free
generation, so every prediction is a label and comes with a probability over the labels:
- every label word one token: the logits at the last prompt position, over the K label tokens;
- otherwise: each word's log-probability is the sum over its tokens (the K continuations batched).

Prompts are left-padded and the model gets explicit position ids, so a padded row scores exactly
like the same example alone. At start-up the label words are checked as they tokenize after the
prompt: words the tokenizer cannot represent, that merge with the prompt's end, or whose first
tokens collide are a ConfigError naming them.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from sentlab.errors import ConfigError
from sentlab.heads import Head


class GenerativeHead(Head):
    name = "generative"
    task_type = "CAUSAL_LM"
    padding_side = "left"  # the label word follows the last prompt token in every row

    def __init__(self, cfg, tokenizer, data):
        super().__init__(cfg, tokenizer, data)
        # "\n" typed on the command line (head.template='Review: {text}\nSentiment:') is a newline.
        template = cfg.head.template.replace("\\n", "\n") if isinstance(cfg.head.template, str) else None
        if not isinstance(template, str) or template.count("{text}") != 1:
            raise ConfigError(
                f"head.template: must contain {{text}} exactly once, got {cfg.head.template!r} "
                "(e.g. head.template='Review: {text}\\nSentiment:')"
            )
        self.prefix, self.suffix = template.split("{text}")
        self.label_words = list(data.label_words)
        self.label_ids = label_token_ids(tokenizer, self.suffix, cfg.head.label_prefix, self.label_words)
        self.single_token = all(len(ids) == 1 for ids in self.label_ids)
        # [K, n_max] label tokens (right-padded with the pad id) and their lengths.
        n_max = max(len(ids) for ids in self.label_ids)
        pad = tokenizer.pad_token_id
        self.label_table = torch.tensor([ids + [pad] * (n_max - len(ids)) for ids in self.label_ids])
        self.label_lengths = torch.tensor([len(ids) for ids in self.label_ids])
        # The prompt's fixed tokens; the text is cut to what is left of train.max_length.
        self.head_ids = tokenizer(self.prefix, add_special_tokens=False)["input_ids"] if self.prefix else []
        self.tail_ids = tokenizer(self.suffix, add_special_tokens=False)["input_ids"]
        self.bos = [tokenizer.bos_token_id] if cfg.head.add_bos and tokenizer.bos_token_id is not None else []
        fixed = len(self.bos) + len(self.head_ids) + len(self.tail_ids) + n_max
        room = cfg.train.max_length - fixed
        if room < 8:
            raise ConfigError(
                f"train.max_length: {cfg.train.max_length} tokens leave {max(room, 0)} for the text: the "
                f"template and the longest label word take {fixed} (raise train.max_length, or shorten head.template)"
            )

    @classmethod
    def check_backbone(cls, config) -> None:
        """A bidirectional encoder (BERT, RoBERTa, ...) has no next-token head to read the label word from:
        loaded as a causal LM it would run and predict one class for every row."""
        from transformers.models.auto.modeling_auto import MODEL_FOR_MASKED_LM_MAPPING_NAMES

        if config.model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
            raise ConfigError(
                f"head: the generative head needs a decoder (a causal LM), but the backbone is a "
                f"{config.model_type} encoder; use head=seq_cls, or a decoder backbone such as backbone=smollm2"
            )

    def model_class(self):
        from transformers import AutoModelForCausalLM

        return AutoModelForCausalLM

    # -- data ---------------------------------------------------------------------------------
    def encode(self, split):
        """Prompt token ids per row, the whole prompt tokenized as one string (as a user of the model
        would); a text too long for train.max_length (with the label word) is cut, keeping the
        template's end."""
        tok, bos, tail = self.tokenizer, self.bos, self.tail_ids
        limit = self.cfg.train.max_length - int(self.label_lengths.max()) - len(bos)

        def tokenize(batch):
            whole = tok([self.prompt(t) for t in batch["text"]], add_special_tokens=False)["input_ids"]
            long = [i for i, ids in enumerate(whole) if len(ids) > limit]
            if long:  # cut the text, then put the template's end back
                cut = tok([self.prefix + batch["text"][i] for i in long], add_special_tokens=False)["input_ids"]
                for i, ids in zip(long, cut):
                    whole[i] = ids[: limit - len(tail)] + tail
            return {"input_ids": [bos + ids for ids in whole]}

        return self.map_text(split, tokenize)

    def prompt(self, text: str) -> str:
        """The prompt for one text, as a string."""
        return self.prefix + text + self.suffix

    def collate(self, features):
        """Left-padded prompts (input_ids, attention_mask) and class ids (labels)."""
        ids = [f["input_ids"] for f in features]
        width = max(map(len, ids))
        pad = self.tokenizer.pad_token_id
        return {
            "input_ids": torch.tensor([[pad] * (width - len(x)) + list(x) for x in ids]),
            "attention_mask": torch.tensor([[0] * (width - len(x)) + [1] * len(x) for x in ids]),
            "labels": torch.tensor([f["label"] for f in features]),
        }

    # -- model ----------------------------------------------------------------------------------
    def _continue(self, model, batch, words: torch.Tensor):
        """Forward prompt + one label word per row (words: [B] indices into the label table).

        Returns the log-probabilities (full vocabulary) of that word's tokens [B, n_max] and their
        mask [B, n_max]. Rows are [left pad | prompt | word | right pad]; position ids count real
        tokens only, so padding never shifts a row.
        """
        table = self.label_table.to(batch["input_ids"].device)
        lengths = self.label_lengths.to(table.device)
        n_max = table.shape[1]
        targets = table[words]  # [B, n_max]
        word_mask = torch.arange(n_max, device=table.device)[None, :] < lengths[words][:, None]
        input_ids = torch.cat([batch["input_ids"], targets], dim=1)
        mask = torch.cat([batch["attention_mask"], word_mask.long()], dim=1)
        # Logits at the last prompt position predict the first word token, and so on: keep only
        # those n_max positions (the last position, which predicts past the word, is never needed).
        logits = _forward(model, input_ids[:, :-1], mask[:, :-1], keep=n_max)
        log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, targets[..., None]).squeeze(-1)
        return log_probs * word_mask, word_mask

    def loss(self, model, batch):
        """Causal-LM loss on the gold label word's tokens (mean over tokens); the prompt is masked."""
        if self.single_token:
            logits = _forward(model, batch["input_ids"], batch["attention_mask"], keep=1)[:, -1]
            gold = self.label_table[:, 0].to(logits.device)[batch["labels"]]
            return F.cross_entropy(logits.float(), gold)
        log_probs, mask = self._continue(model, batch, batch["labels"])
        return -log_probs.sum() / mask.sum()

    def evaluate_batch(self, model, batch):
        """(the training loss, log-probabilities over the K labels [B, K]) from one forward pass."""
        if self.single_token:
            logits = _forward(model, batch["input_ids"], batch["attention_mask"], keep=1)[:, -1].float()
            first = self.label_table[:, 0].to(logits.device)
            gold = first[batch["labels"]]
            loss = F.cross_entropy(logits, gold)  # the same objective training minimizes
            return loss, torch.log_softmax(logits[:, first], dim=-1)
        # Multi-token words: the K continuations of every prompt in one batch of B*K rows.
        n, k = batch["input_ids"].shape[0], len(self.label_ids)
        repeated = {key: batch[key].repeat_interleave(k, dim=0) for key in ("input_ids", "attention_mask")}
        words = torch.arange(k, device=batch["input_ids"].device).repeat(n)
        log_probs, mask = self._continue(model, repeated, words)
        scores = log_probs.sum(dim=1).view(n, k)  # log P(word | prompt), summed over its tokens
        gold = scores.gather(1, batch["labels"][:, None]).squeeze(1)
        loss = -(gold / self.label_lengths.to(scores.device)[batch["labels"]]).mean()
        return loss, torch.log_softmax(scores, dim=-1)


def _forward(model, input_ids, attention_mask, keep: int) -> torch.Tensor:
    """Logits [B, keep, V] of the last `keep` positions, with position ids that skip left padding."""
    position_ids = (attention_mask.cumsum(dim=1) - 1).clamp(min=0)
    return model(
        input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, logits_to_keep=keep
    ).logits[:, -keep:]


def label_token_ids(tokenizer, prompt_end: str, label_prefix: str, words: list[str]) -> list[list[int]]:
    """Token ids of each label word as it follows the prompt (label_prefix, e.g. a space, included).

    Raises ConfigError for words the tokenizer cannot represent (unknown token, or decoding does
    not give the word back), words that merge with the end of the prompt (their tokens depend on
    the prompt), and words whose first tokens collide (they would score the same).
    """
    def ids(s):
        return tokenizer(s, add_special_tokens=False)["input_ids"]

    fix = "choose other words with data.label_words=[...] or change head.label_prefix / head.template"
    end = ids(prompt_end) if prompt_end else []
    result, bad, merged = [], [], []
    for word in words:
        if not isinstance(word, str) or not word.strip():
            raise ConfigError(f"data.label_words: empty label word {word!r} ({fix})")
        together = ids(prompt_end + label_prefix + word)
        if together[: len(end)] != end:
            merged.append(word)
            continue
        word_ids = together[len(end):]
        unk = tokenizer.unk_token_id
        round_trip = tokenizer.decode(word_ids).strip() == (label_prefix + word).strip()
        if not word_ids or (unk is not None and unk in word_ids) or not round_trip:
            bad.append(word)
        result.append(word_ids)
    if merged:
        raise ConfigError(
            f"data.label_words: {_words(merged)} merge with the end of the prompt {prompt_end!r} when tokenized, "
            f"so they cannot be scored as separate tokens ({fix})"
        )
    if bad:
        raise ConfigError(f"data.label_words: the tokenizer cannot represent {_words(bad)} exactly ({fix})")
    firsts = {}
    for word, word_ids in zip(words, result):
        firsts.setdefault(word_ids[0], []).append(word)
    clashes = [group for group in firsts.values() if len(group) > 1]
    if clashes:
        shown = "; ".join(
            f"{_words(g)} all start with token {tokenizer.convert_ids_to_tokens(result[words.index(g[0])][0])!r}"
            for g in clashes
        )
        raise ConfigError(f"data.label_words: first tokens collide: {shown} ({fix})")
    return result


def _words(words) -> str:
    return ", ".join(repr(w) for w in words)
