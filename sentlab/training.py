"""The training loop: AdamW on the trainable (LoRA + head) weights, dynamic padding, eval every epoch."""
from __future__ import annotations

import contextlib
import logging
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sentlab.errors import RunError
from sentlab.metrics import classification_metrics

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def autocast(device: torch.device, precision: str):
    """Mixed precision for the forward pass; fp32 runs as is."""
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}[precision]
    return torch.autocast(device_type=device.type, dtype=dtype)


def to_device(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}


@dataclass
class Evaluation:
    loss: float
    log_probs: np.ndarray  # [n, n_labels]
    labels: np.ndarray  # [n]

    @property
    def preds(self) -> np.ndarray:
        return self.log_probs.argmax(axis=1)

    def metrics(self, label_names) -> dict[str, float]:
        return {"loss": self.loss, **classification_metrics(self.labels, self.preds, label_names)}


@torch.no_grad()
def evaluate(model, head, features, train_cfg, device, desc="eval") -> Evaluation:
    """Loss and label log-probabilities on encoded `features`."""
    model.eval()
    # Sorting by length keeps padding small; the order does not matter for metrics.
    order = np.argsort([len(ids) for ids in features["input_ids"]], kind="stable")
    loader = DataLoader(features.select(order), batch_size=train_cfg.eval_batch_size, collate_fn=head.collate)
    losses, log_probs, labels = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=None):
        batch = to_device(batch, device)
        with autocast(device, train_cfg.precision):
            loss, scores = head.evaluate_batch(model, batch)
        losses.append(loss.item() * len(scores))
        log_probs.append(scores.float().cpu().numpy())
        labels.append(batch["labels"].cpu().numpy())
    log_probs, labels = np.concatenate(log_probs), np.concatenate(labels)
    inverse = np.argsort(order)  # back to the data's own order
    return Evaluation(sum(losses) / len(labels), log_probs[inverse], labels[inverse])


def fit(model, head, train_features, val_features, train_cfg, device, label_names, log_metrics) -> dict:
    """Train for train_cfg.epochs; returns the kept epoch and its validation metrics.

    `log_metrics(metrics: dict, step: int)` receives train loss/lr every `log_every`
    optimizer steps and val_* metrics after each evaluated epoch (step = epoch).
    """
    from transformers import get_scheduler

    generator = torch.Generator().manual_seed(train_cfg.seed)
    loader = DataLoader(
        train_features, batch_size=train_cfg.batch_size, shuffle=True, collate_fn=head.collate, generator=generator
    )
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(trainable, lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    steps_per_epoch = math.ceil(len(loader) / train_cfg.grad_accum)
    total_steps = steps_per_epoch * train_cfg.epochs
    scheduler = get_scheduler(
        train_cfg.scheduler, optimizer, int(train_cfg.warmup_ratio * total_steps), total_steps
    )

    kept = {"epoch": 0, "val": None}
    best_state, best_score = None, -math.inf
    step = 0
    for epoch in range(1, train_cfg.epochs + 1):
        model.train()
        # One bar per epoch, in examples (its rate is examples/s); None: off when not a terminal.
        bar = tqdm(total=len(train_features), desc=f"epoch {epoch}/{train_cfg.epochs}", unit="ex", disable=None)
        for i, batch in enumerate(loader):
            with autocast(device, train_cfg.precision):
                loss = head.loss(model, to_device(batch, device))
            if not torch.isfinite(loss):
                bar.close()
                raise RunError(
                    f"train loss is {loss.item()} at epoch {epoch}, batch {i}: lower train.lr "
                    f"(now {train_cfg.lr}) or use train.precision=fp32"
                )
            (loss / train_cfg.grad_accum).backward()
            bar.update(len(batch["labels"]))
            if (i + 1) % train_cfg.grad_accum and i + 1 < len(loader):
                continue
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            if step % train_cfg.log_every == 0:
                log_metrics({"train_loss": loss.item(), "lr": scheduler.get_last_lr()[0]}, step)
        bar.close()

        if not (train_cfg.eval_every_epoch or epoch == train_cfg.epochs):
            continue
        val = evaluate(model, head, val_features, train_cfg, device, desc="validation").metrics(label_names)
        log_metrics({f"val_{k}": v for k, v in val.items()}, epoch)
        log.info(f"epoch {epoch}: " + "  ".join(f"val_{k}={val[k]:.4f}" for k in ("loss", "accuracy", "f1_macro")))
        score = val[train_cfg.select_metric]
        if train_cfg.keep == "last" or score > best_score:
            best_score, kept = score, {"epoch": epoch, "val": val}
            if train_cfg.keep == "best":
                best_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}

    if best_state is not None and kept["epoch"] != train_cfg.epochs:
        model.load_state_dict(best_state, strict=False)
        log.info(f"kept the adapter of epoch {kept['epoch']} (best val_{train_cfg.select_metric}={best_score:.4f})")
    return kept
