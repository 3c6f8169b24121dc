"""The training loop: AdamW on the trainable (LoRA + head) weights, dynamic padding, eval every epoch,
checkpoints (sentlab.checkpoints) to resume from, early stopping."""
from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from sentlab.checkpoints import Checkpoints, Stopped
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
    with autocast(device, train_cfg.precision):
        head.start_evaluation(model, device)  # e.g. contextual calibration's content-free scores
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


def epoch_order(n: int, seed: int, epoch: int) -> list[int]:
    """The train examples' order in `epoch`: a permutation fixed by (seed, epoch), so that a resumed run trains
    the rest of an epoch on exactly the batches an uninterrupted one would."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 100_003 + epoch)).tolist()


@dataclass
class Progress:
    """Where training stands: what a checkpoint holds besides weights, optimizer, scheduler and RNG states."""

    epoch: int = 1  # the epoch in progress
    batch: int = 0  # its batches already trained
    step: int = 0  # optimizer steps so far
    kept: dict = field(default_factory=lambda: {"epoch": 0, "val": None})  # the epoch train.keep keeps, its val
    kept_state: dict | None = None  # that epoch's trainable weights (keep=best)
    best_score: float = -math.inf  # the best val_<select_metric> so far
    stale: int = 0  # evaluated epochs since best_score last improved (train.patience)
    stopped_epoch: int | None = None  # the epoch early stopping ended training at
    train_s: float = 0.0  # seconds of training so far, a stopped run's earlier attempts included


def fit(model, head, train_features, val_features, train_cfg, device, label_names, log_metrics,
        checkpoints: Checkpoints | None = None) -> dict:
    """Train for train_cfg.epochs (fewer with train.patience); returns the kept epoch, its validation metrics and
    the training time (`epoch`, `val`, `train_time_s`).

    `log_metrics(metrics: dict, step: int)` receives train loss/lr every `log_every` optimizer steps and val_*
    metrics after each evaluated epoch (step = epoch). With `checkpoints`, training starts from the latest
    checkpoint there, if any, saves one when due and at each epoch's end, and on a stop signal saves one and
    raises Stopped.
    """
    from transformers import get_scheduler

    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(trainable.values(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    n_batches = math.ceil(len(train_features) / train_cfg.batch_size)
    total_steps = math.ceil(n_batches / train_cfg.grad_accum) * train_cfg.epochs
    scheduler = get_scheduler(
        train_cfg.scheduler, optimizer, int(train_cfg.warmup_ratio * total_steps), total_steps
    )
    progress = Progress()
    if checkpoints and (state := checkpoints.latest()):
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        progress = Progress(**state["progress"])
        log.info(f"resumed at step {progress.step} (epoch {progress.epoch}, batch {progress.batch})")
    start = time.perf_counter() - progress.train_s

    def checkpoint():
        if checkpoints:
            progress.train_s = time.perf_counter() - start
            state = {"progress": vars(progress), "trainable": {n: p.detach() for n, p in trainable.items()},
                     "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
            checkpoints.save(state, progress.step)

    def stop_if_asked():
        if checkpoints and checkpoints.stop_signal:
            raise Stopped(checkpoints.stop_signal, progress.epoch, progress.step)

    while progress.epoch <= train_cfg.epochs and progress.stopped_epoch is None:
        epoch = progress.epoch
        model.train()
        order = epoch_order(len(train_features), train_cfg.seed, epoch)[progress.batch * train_cfg.batch_size:]
        # Its own generator: creating the loader's iterator would otherwise draw from the global RNG (dropout's).
        loader = DataLoader(train_features, batch_size=train_cfg.batch_size, sampler=order, collate_fn=head.collate,
                            generator=torch.Generator())
        # One bar per epoch, in examples (its rate is examples/s); None: off when not a terminal.
        bar = tqdm(total=len(train_features), initial=len(train_features) - len(order),
                   desc=f"epoch {epoch}/{train_cfg.epochs}", unit="ex", disable=None)
        for i, batch in enumerate(loader, start=progress.batch):
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
            if (i + 1) % train_cfg.grad_accum and i + 1 < n_batches:
                continue
            torch.nn.utils.clip_grad_norm_(trainable.values(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.batch, progress.step = i + 1, progress.step + 1
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
            if progress.step % train_cfg.log_every == 0:
                log_metrics({"train_loss": loss.item(), "lr": scheduler.get_last_lr()[0]}, progress.step)
            if checkpoints and (checkpoints.due(progress.step) or checkpoints.stop_signal):
                checkpoint()
                bar.close()
                stop_if_asked()
        bar.close()

        progress.epoch, progress.batch = epoch + 1, 0
        if train_cfg.eval_every_epoch or epoch == train_cfg.epochs:
            val = evaluate(model, head, val_features, train_cfg, device, desc="validation").metrics(label_names)
            log_metrics({f"val_{k}": v for k, v in val.items()}, epoch)
            log.info(f"epoch {epoch}: " + "  ".join(f"val_{k}={val[k]:.4f}" for k in ("loss", "accuracy", "f1_macro")))
            _judge(progress, epoch, val, model, train_cfg, log_metrics)
        checkpoint()  # the epoch's end: a resumed run goes on with the next epoch
        stop_if_asked()

    last = progress.epoch - 1
    if progress.kept_state is not None and progress.kept["epoch"] != last:
        model.load_state_dict(progress.kept_state, strict=False)
        log.info(f"kept the adapter of epoch {progress.kept['epoch']} "
                 f"(best val_{train_cfg.select_metric}={progress.best_score:.4f})")
    return {**progress.kept, "train_time_s": time.perf_counter() - start}


def _judge(progress: Progress, epoch: int, val: dict, model, train_cfg, log_metrics) -> None:
    """After an evaluated epoch: the epoch to keep (train.keep) and early stopping (train.patience)."""
    improved = val[train_cfg.select_metric] > progress.best_score
    if improved:
        progress.best_score, progress.stale = val[train_cfg.select_metric], 0
    else:
        progress.stale += 1
    if train_cfg.keep == "last" or improved:
        progress.kept = {"epoch": epoch, "val": val}
        if train_cfg.keep == "best":
            progress.kept_state = {n: p.detach().clone() for n, p in model.named_parameters() if p.requires_grad}
    if train_cfg.patience and progress.stale >= train_cfg.patience and epoch < train_cfg.epochs:
        progress.stopped_epoch = epoch
        log_metrics({"stopped_epoch": epoch}, epoch)
        log.info(f"early stop after epoch {epoch}: val_{train_cfg.select_metric} did not improve on "
                 f"{progress.best_score:.4f} for {train_cfg.patience} evaluated epochs (train.patience)")
