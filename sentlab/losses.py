"""Class weights for imbalanced data, and the two heads' losses with them.

    python -m sentlab.train data=tweet_eval train.class_weights=auto
    python -m sentlab.train data=tweet_eval 'train.class_weights=[2,1,1]'   (one weight per label, label order)

`auto` is inverse frequency over the training labels, normalised so that the mean weight over the classes
is 1: w_c = (1 / n_c) / mean_k(1 / n_k). Balanced data gives every class 1; a class with half the examples
of another gets twice its weight. (scikit-learn's "balanced" is N / (K n_c), whose mean over *examples* is 1;
the two differ by a constant factor, which the losses below cancel.)

Both losses divide by the summed weight of the batch's labels (what torch's weighted cross-entropy does), so
an example's weight sets its share of the batch's loss, the loss stays on its unweighted scale, and weights
that are all equal give exactly the unweighted loss.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from sentlab.errors import ConfigError


def class_weights(labels: Sequence[int], setting, num_labels: int) -> torch.Tensor | None:
    """[num_labels] weights for train.class_weights = null | "none" | "auto" | a list of positive numbers;
    None means unweighted."""
    if setting is None or setting == "none":
        return None
    if setting == "auto":
        counts = torch.bincount(torch.as_tensor(list(labels), dtype=torch.long), minlength=num_labels).double()
        if len(counts) > num_labels:
            raise ConfigError(f"train.class_weights=auto: a label id >= {num_labels} in the training data")
        if (counts == 0).any():
            missing = [i for i, n in enumerate(counts.tolist()) if n == 0]
            raise ConfigError(
                f"train.class_weights=auto: no training example of label id(s) {missing}; "
                "give the weights as a list, e.g. train.class_weights=[1,2,1]"
            )
        inverse = 1.0 / counts
        return (inverse / inverse.mean()).float()
    if isinstance(setting, str):
        raise ConfigError(f"train.class_weights: unknown value {setting!r} (null, auto, or a list such as [1,2,1])")
    weights = [float(w) for w in setting]
    if len(weights) != num_labels or any(w <= 0 for w in weights):
        raise ConfigError(
            f"train.class_weights: need {num_labels} positive numbers (one per label, in label "
            f"order), got {list(setting)}"
        )
    return torch.tensor(weights)


def seq_cls_loss(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy over the classifier's logits [B, K], each example weighted by its class:
    sum_i w[y_i] * CE_i / sum_i w[y_i]. Unweighted, it is transformers' own seq_cls loss."""
    weight = None if weights is None else weights.to(logits.device, torch.float32)
    return F.cross_entropy(logits.float(), labels, weight=weight)


def label_token_loss(
    token_log_probs: torch.Tensor, token_mask: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """The generative head's loss: the negative log-likelihood of each gold label word's tokens
    (token_log_probs [B, T], zero-masked by token_mask [B, T]), each example weighted by its class:
    sum_i w[y_i] * NLL_i / sum_i w[y_i] * tokens_i. Unweighted, it is the mean over the batch's label tokens,
    as the head computes it today; with one-token label words it is the cross-entropy of the gold token."""
    mask = token_mask.to(token_log_probs.dtype)
    nll = -(token_log_probs * mask).sum(dim=1)  # [B]
    tokens = mask.sum(dim=1)  # [B]
    w = torch.ones_like(nll) if weights is None else weights.to(nll.device, nll.dtype)[labels]
    return (w * nll).sum() / (w * tokens).sum()
