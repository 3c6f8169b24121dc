"""Generative head: a causal LM reads a prompt and the label word that follows it is the prediction.

    prompt  = head.template with {text} filled in       e.g. "Tweet: great day\\nSentiment:"
    target  = label prefix + a label word               e.g. " positive"

Training is the causal-LM loss on the label word's tokens only (the prompt is masked). Prediction
scores every label word in one batched forward pass and takes the best; there is no free
generation, so every prediction is a label and comes with a probability over the labels:
- every label word one token: the logits at the last prompt position, over the K label tokens;
- otherwise: each word's log-probability is the sum over its tokens (the K continuations batched).

Prediction (evaluate_batch) runs the tokens that every prompt of a batch starts with (the template's
head) once and shares their key/value cache across the batch; multi-token words then continue from
the cache of the prompt instead of re-reading prompt + word K times.

Prompts are left-padded and the model gets explicit position ids, so a padded row scores exactly
like the same example alone. At start-up the label words are checked as they tokenize after the
prompt: words the tokenizer cannot represent, that merge with the prompt's end, or whose first
tokens collide are a ConfigError naming them.

Options (sentlab/conf/head/generative.yaml):
- head.chat_template=true: the filled template is the user message of the tokenizer's chat template
  (generation prompt added), and the label word is scored as the assistant's answer;
- head.calibration=contextual: contextual calibration (Zhao et al. 2021, "Calibrate before use"). Once
  per evaluation pass the label probabilities of content-free inputs (head.content_free, e.g. "N/A")
  are averaged, and every example's label probabilities are divided by them and renormalized. The
  training loss is unchanged.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import DynamicCache

from sentlab.errors import ConfigError
from sentlab.heads.base import Head
from sentlab.losses import label_token_loss

CONTENT_FREE = ("N/A", "", "[MASK]")  # the content-free inputs of Zhao et al. 2021


class GenerativeHead(Head):
    name = "generative"
    task_type = "CAUSAL_LM"
    padding_side = "left"  # the label word follows the last prompt token in every row

    def __init__(self, cfg, tokenizer, labels):
        super().__init__(cfg, tokenizer, labels)
        # "\n" typed on the command line (head.template='Review: {text}\nSentiment:') is a newline.
        template = cfg.head.template.replace("\\n", "\n")
        self.chat_template = bool(cfg.head.get("chat_template", False))
        if self.chat_template:
            template = chat_prompt(tokenizer, template)
        self.prefix, self.suffix = template.split("{text}")
        self.calibration = cfg.head.get("calibration", "none")
        self.content_free = list(cfg.head.get("content_free", CONTENT_FREE))
        self.content_free_probs = None  # [K] label probabilities of the content-free inputs (last evaluation)
        self.label_words = list(labels.words)
        # Before each word: a space after a plain prompt (GPT-style word tokens); nothing at the start of the
        # assistant's turn of a chat template. head.label_prefix set (not null) overrides both.
        self.label_prefix = cfg.head.get("label_prefix")
        if self.label_prefix is None:
            self.label_prefix = "" if self.chat_template else " "
        self.label_ids = label_token_ids(tokenizer, self.suffix, self.label_prefix, self.label_words)
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
        """Prompt token ids per row (see prompt_ids)."""
        return self.map_text(split, lambda batch: {"input_ids": self.prompt_ids(batch["text"])})

    def features(self, texts):
        return [{"input_ids": ids} for ids in self.prompt_ids(list(texts))]

    def prompt_ids(self, texts: list[str]) -> list[list[int]]:
        """Each text's prompt as token ids, the whole prompt tokenized as one string (as a user of the model
        would); a text too long for train.max_length (with the label word) is cut, keeping the template's end."""
        tok, bos, tail = self.tokenizer, self.bos, self.tail_ids
        limit = self.cfg.train.max_length - int(self.label_lengths.max()) - len(bos)
        whole = tok([self.prompt(t) for t in texts], add_special_tokens=False)["input_ids"]
        long = [i for i, ids in enumerate(whole) if len(ids) > limit]
        if long:  # cut the text, then put the template's end back
            cut = tok([self.prefix + texts[i] for i in long], add_special_tokens=False)["input_ids"]
            for i, ids in zip(long, cut):
                whole[i] = ids[: limit - len(tail)] + tail
        return [bos + ids for ids in whole]

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
        """Causal-LM loss on the gold label word's tokens (mean over tokens; each example weighted by its class with
        train.class_weights); the prompt is masked."""
        if self.single_token:
            logits = _forward(model, batch["input_ids"], batch["attention_mask"], keep=1)[:, -1]
            gold = self.label_table[:, 0].to(logits.device)[batch["labels"]]
            if self.class_weights is None:
                return F.cross_entropy(logits.float(), gold)
            log_probs = torch.log_softmax(logits.float(), dim=-1).gather(-1, gold[:, None])
            mask = torch.ones_like(log_probs)
        else:
            log_probs, mask = self._continue(model, batch, batch["labels"])
        # sum w * NLL / sum w * tokens: unweighted, the mean over the batch's label tokens
        return label_token_loss(log_probs, mask, batch["labels"], self.class_weights)

    def evaluate_batch(self, model, batch):
        """(the training loss, log-probabilities over the K labels [B, K]); contextually calibrated with
        head.calibration=contextual (the loss never is)."""
        first, scores = self._score(model, batch)
        gold = batch["labels"]
        if self.single_token:  # the same objective training minimizes
            loss = F.cross_entropy(first, self.label_table[:, 0].to(first.device)[gold])
        else:  # mean NLL of the gold word's tokens
            lengths = self.label_lengths.to(scores.device)
            loss = -(scores.gather(1, gold[:, None]).squeeze(1) / lengths[gold]).mean()
        log_probs = torch.log_softmax(scores, dim=-1)
        if self.content_free_probs is not None:  # divide by p(label | content-free input), renormalize
            log_probs = torch.log_softmax(log_probs - self.content_free_probs.to(log_probs.device).log(), dim=-1)
        return loss, log_probs

    def start_evaluation(self, model, device) -> None:
        """Once per evaluation pass: with head.calibration=contextual, the label probabilities of the
        content-free inputs under the model as it is now, averaged over the inputs and renormalized."""
        self.content_free_probs = None
        if self.calibration != "contextual":
            return
        ids = self.prompt_ids(self.content_free)
        probs = []
        for row in ids:  # one at a time: no padding, nothing shared
            batch = {
                "input_ids": torch.tensor([row], device=device),
                "attention_mask": torch.ones(1, len(row), dtype=torch.long, device=device),
            }
            probs.append(torch.softmax(self._score(model, batch)[1][0].float(), dim=-1))
        mean = torch.stack(probs).mean(dim=0)
        self.content_free_probs = mean / mean.sum()

    def evaluation_metrics(self) -> dict[str, float]:
        """The last evaluation's content-free label probabilities (head.calibration=contextual), by label."""
        if self.content_free_probs is None:
            return {}
        return {f"content_free_prob_{name}": float(p) for name, p in zip(self.label_names, self.content_free_probs)}

    def _score(self, model, batch):
        """(full-vocabulary logits at the last prompt position [B, V], log P(word | prompt) [B, K]).

        The tokens every row of the batch starts with are run once and their key/value cache is shared by
        the batch (not for sliding-window models, see _windowed); rows then read [shared | left pad | rest
        of the prompt], position ids counting real tokens only. Multi-token words continue from the prompt's
        cache (B*K rows of n_max-1 tokens)."""
        ids, mask = batch["input_ids"], batch["attention_mask"]
        n, width = ids.shape
        cache, shared = None, 0 if _windowed(model.config) else _shared_prefix(ids, mask)
        if shared:
            start = width - mask.sum(dim=1)  # where each row's prompt begins
            prefix = ids[:1, start[0] : start[0] + shared]
            cache = DynamicCache(config=model.config)
            model(input_ids=prefix, past_key_values=cache, use_cache=True, logits_to_keep=1)
            cache.batch_repeat_interleave(n)
            # Drop each row's shared tokens: [pad * start | prompt] -> [pad * start | rest].
            cols = torch.arange(width - shared, device=ids.device)[None, :]
            source = cols + shared * (cols >= start[:, None])
            ids, rest_mask = ids.gather(1, source), mask.gather(1, source)
            mask = torch.cat([torch.ones(n, shared, dtype=mask.dtype, device=mask.device), rest_mask], dim=1)
        use_cache = not self.single_token
        if use_cache and cache is None:
            cache = DynamicCache(config=model.config)
        positions = (mask.cumsum(dim=1) - 1).clamp(min=0)[:, -ids.shape[1] :]
        first = (
            model(
                input_ids=ids,
                attention_mask=mask,
                position_ids=positions,
                past_key_values=cache,
                use_cache=use_cache,
                logits_to_keep=1,
            )
            .logits[:, -1]
            .float()
        )
        first_log_probs = torch.log_softmax(first, dim=-1)
        table = self.label_table.to(ids.device)
        if self.single_token:
            return first, first_log_probs[:, table[:, 0]]
        # Every word's tokens after the prompt: the first from `first`, the rest from one more pass over the
        # B*K continuations, on the prompt's cache repeated K times.
        k, n_max = table.shape
        lengths = self.label_lengths.to(ids.device)
        word_mask = torch.arange(n_max, device=ids.device)[None, :] < lengths[:, None]  # [K, n_max]
        scores = first_log_probs[:, table[:, 0]]  # [B, K]: log P(first token | prompt)
        if n_max > 1:
            cache.batch_repeat_interleave(k)
            words = table[:, :-1].repeat(n, 1)  # [B*K, n_max-1]: each word's tokens but the last
            mask_k = torch.cat([mask.repeat_interleave(k, dim=0), word_mask[:, :-1].repeat(n, 1).long()], dim=1)
            positions = (mask_k.cumsum(dim=1) - 1).clamp(min=0)[:, -words.shape[1] :]
            logits = model(
                input_ids=words, attention_mask=mask_k, position_ids=positions, past_key_values=cache, use_cache=False
            ).logits.float()  # [B*K, n_max-1, V]: predict tokens 2..n_max
            later = torch.log_softmax(logits, dim=-1).gather(-1, table[:, 1:].repeat(n, 1)[..., None]).squeeze(-1)
            scores = scores + (later.view(n, k, n_max - 1) * word_mask[None, :, 1:]).sum(dim=-1)
        return first, scores


def _windowed(config) -> bool:
    """Does the model attend within a sliding window (gpt-neo's local layers, Mistral, ...)? Its window
    counts cache slots, not positions, so rows with padding inside them (after the shared tokens) would see a
    shorter window than the example alone: no sharing for these models."""
    kinds = [*(getattr(config, "attention_layers", None) or []), *(getattr(config, "layer_types", None) or [])]
    return bool(getattr(config, "sliding_window", None)) or any("local" in k or "sliding" in k for k in kinds)


def _shared_prefix(ids: torch.Tensor, mask: torch.Tensor) -> int:
    """How many tokens all rows of a left-padded batch start with (leaving each row at least one more)."""
    lengths = mask.sum(dim=1)
    longest = int(lengths.min()) - 1
    if longest < 1:
        return 0
    start = ids.shape[1] - lengths
    heads = ids.gather(1, start[:, None] + torch.arange(longest, device=ids.device)[None, :])
    same = (heads == heads[:1]).all(dim=0).long()
    return int(same.cumprod(dim=0).sum())


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
        word_ids = together[len(end) :]
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


def chat_prompt(tokenizer, template: str) -> str:
    """The template rendered through the tokenizer's chat template as the user's message, with the
    generation prompt (the assistant's turn) after it; {text} is kept, to be filled per example."""
    if not getattr(tokenizer, "chat_template", None):
        raise ConfigError(
            f"head.chat_template: the backbone's tokenizer ({type(tokenizer).__name__}, "
            f"{tokenizer.name_or_path}) has no chat template; use head.chat_template=false, or an instruction-"
            "tuned backbone whose tokenizer has one (e.g. backbone=smollm2)"
        )
    rendered = tokenizer.apply_chat_template(
        [{"role": "user", "content": template}], tokenize=False, add_generation_prompt=True
    )
    if rendered.count("{text}") != 1:
        raise ConfigError(
            f"head.chat_template: the chat template does not keep the message's {{text}} once: "
            f"{rendered!r}; use head.chat_template=false"
        )
    return rendered


def _words(words) -> str:
    return ", ".join(repr(w) for w in words)
