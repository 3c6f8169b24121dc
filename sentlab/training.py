"""The training loop: AdamW on the trainable (LoRA + head) weights, length-grouped batches padded to their
longest example, mixed precision where the hardware is fast at it, eval every epoch, checkpoints
(sentlab.checkpoints) to resume from, early stopping."""

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

from sentlab import distributed
from sentlab.checkpoints import Checkpoints, Stopped, rng_states, set_rng_states
from sentlab.errors import RunError
from sentlab.metrics import classification_metrics

log = logging.getLogger(__name__)


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def resolve_precision(precision: str, device: torch.device, model=None) -> str:
    """train.precision=auto: bf16 autocast where bf16 matrix products are fast (CUDA GPUs that support it; CPUs
    with avx512_bf16 or AMX), else fp32. A bitsandbytes-quantized base on CPU computes in fp32, measured fastest
    there (docs/benchmarks/seq_cls_speed.md). Any other value is taken as it is."""
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    quantized = getattr(model, "is_loaded_in_4bit", False) or getattr(model, "is_loaded_in_8bit", False)
    if device.type != "cpu" or quantized:
        return "fp32"
    return "bf16" if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported() else "fp32"


def autocast(device: torch.device, precision: str):
    """Mixed precision for the forward pass (`precision` as resolve_precision gives it); fp32 runs as is."""
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


@torch.inference_mode()
def evaluate(model, head, features, train_cfg, device, desc="eval") -> Evaluation:
    """Loss and label log-probabilities on encoded `features`."""
    model.eval()
    precision = resolve_precision(train_cfg.precision, device, model)
    with autocast(device, precision):
        head.start_evaluation(model, device)  # e.g. contextual calibration's content-free scores
    # Sorting by length keeps padding small; the order does not matter for metrics.
    order = np.argsort([len(ids) for ids in features["input_ids"]], kind="stable")
    loader = DataLoader(features.select(order), batch_size=train_cfg.eval_batch_size, collate_fn=head.collate)
    losses, log_probs, labels = [], [], []
    for batch in tqdm(loader, desc=desc, leave=False, disable=None):
        batch = to_device(batch, device)
        with autocast(device, precision):
            loss, scores = head.evaluate_batch(model, batch)
        losses.append(loss.item() * len(scores))
        log_probs.append(scores.float().cpu().numpy())
        labels.append(batch["labels"].cpu().numpy())
    log_probs, labels = np.concatenate(log_probs), np.concatenate(labels)
    inverse = np.argsort(order)  # back to the data's own order
    return Evaluation(sum(losses) / len(labels), log_probs[inverse], labels[inverse])


MEGABATCH = 50  # batches sorted by length together (as in transformers' LengthGroupedSampler)


def epoch_batches(
    lengths: list[int], batch_size: int, seed: int, epoch: int, group_by_length: bool = True
) -> list[list[int]]:
    """The train batches of `epoch` (lists of example indices), every example once, fixed by (seed, epoch): a
    resumed run trains the rest of an epoch on exactly the batches an uninterrupted one would.

    A seeded shuffle, cut into batches; grouped by length, each run of MEGABATCH batches of the shuffle is
    sorted by length before it is cut, and the batches are then shuffled: a batch holds examples of about one
    length (so little padding) while what it holds and when it comes stay random. The batch with the longest
    example comes first, so that a run too big for memory fails at its first step, not hours in.
    """
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(len(lengths), generator=generator).tolist()
    if not group_by_length:
        return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]
    batches = []
    for start in range(0, len(order), batch_size * MEGABATCH):
        chunk = sorted(
            order[start : start + batch_size * MEGABATCH], key=lengths.__getitem__
        )  # stable: ties stay shuffled
        batches += [chunk[i : i + batch_size] for i in range(0, len(chunk), batch_size)]
    batches = [batches[i] for i in torch.randperm(len(batches), generator=generator).tolist()]
    longest = max(range(len(batches)), key=lambda b: max(lengths[i] for i in batches[b]))
    batches.insert(0, batches.pop(longest))
    return batches


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


def fit(
    model,
    head,
    train_features,
    val_features,
    train_cfg,
    device,
    label_names,
    log_metrics,
    checkpoints: Checkpoints | None = None,
    after_epoch=None,
) -> dict:
    """Train for train_cfg.epochs (fewer with train.patience); returns the kept epoch, its validation metrics and
    the training time (`epoch`, `val`, `train_time_s`).

    `log_metrics(metrics: dict, step: int)` receives train loss/lr every `log_every` optimizer steps and val_*
    metrics after each evaluated epoch (step = epoch). With `checkpoints`, training starts from the latest
    checkpoint there, if any, saves one when due and at each epoch's end, and on a stop signal saves one and
    raises Stopped. `after_epoch(epoch, val)`, if given, runs after each evaluated epoch and may raise to end
    training there (sentlab.study.Pruned: an Optuna trial that its study's pruner stops).

    In a process group (train.num_processes > 1, sentlab.distributed) every rank calls fit: the epoch's global
    batches of batch_size * N examples are cut into one shard per rank, DDP averages the gradients, the loss
    logged is the global batches'; only rank 0 validates, logs and writes checkpoints, and rank 0's checkpoint
    holds every rank's RNG states. `val_features`, `log_metrics` and `after_epoch` matter on rank 0 only (an
    after_epoch that raises there ends the other ranks too).
    """
    from transformers import get_scheduler

    rank, world = distributed.rank(), distributed.world_size()
    global_batch = train_cfg.batch_size * world  # train.batch_size is per process
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    optimizer = torch.optim.AdamW(trainable.values(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay)
    precision = resolve_precision(train_cfg.precision, device, model)
    lengths = [len(ids) for ids in train_features["input_ids"]]
    n_batches = math.ceil(len(lengths) / global_batch)
    total_steps = math.ceil(n_batches / train_cfg.grad_accum) * train_cfg.epochs
    scheduler = get_scheduler(train_cfg.scheduler, optimizer, int(train_cfg.warmup_ratio * total_steps), total_steps)
    progress = Progress()
    state = checkpoints.latest() if checkpoints and rank == 0 else None
    if (state := distributed.broadcast(state)) is not None:  # rank 0's checkpoint, on every rank
        model.load_state_dict(state["trainable"], strict=False)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        progress = Progress(**state["progress"])
        if rank > 0:
            set_rng_states(state["rng_ranks"][rank])
        log.info(f"resumed at step {progress.step} (epoch {progress.epoch}, batch {progress.batch})")
    ddp_model = distributed.wrap(model, device)
    start = time.perf_counter() - progress.train_s
    seen = 0  # examples this process trained on (this attempt)

    def checkpoint():
        if not checkpoints:
            return
        rng_ranks = distributed.gather_objects(rng_states()) if world > 1 else None  # a collective: every rank
        if rank == 0:
            progress.train_s = time.perf_counter() - start
            state = {
                "progress": vars(progress),
                "trainable": {n: p.detach() for n, p in trainable.items()},
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
            }
            checkpoints.save({**state, "rng_ranks": rng_ranks} if rng_ranks else state, progress.step)

    def agreed_stop() -> int | None:
        """The stop signal that reached any rank (or None): every rank decides on this agreed signal, never on
        its own flag, which a signal can set at any moment. One collective with N ranks; none with one."""
        signum = (checkpoints.stop_signal if checkpoints else None) or 0
        if world > 1:
            signum = int(distributed.gather([signum])[:, 0].max())
        return signum or None

    def stop_if_asked(signum: int | None):
        if signum:
            raise Stopped(signum, progress.epoch, progress.step)

    while progress.epoch <= train_cfg.epochs and progress.stopped_epoch is None:
        epoch = progress.epoch
        model.train()
        batches = epoch_batches(lengths, global_batch, train_cfg.seed, epoch, train_cfg.group_by_length)
        shards = [distributed.shard(b) for b in batches[progress.batch :]]  # this rank's part of each, its factor
        # Its own generator: creating the loader's iterator would otherwise draw from the global RNG (dropout's).
        loader = DataLoader(
            train_features,
            batch_sampler=[mine for mine, _ in shards],
            collate_fn=head.collate,
            generator=torch.Generator(),
        )
        # One bar per epoch, in examples of all ranks (its rate is examples/s); None: off when not a terminal.
        bar = tqdm(
            total=len(lengths),
            initial=sum(map(len, batches[: progress.batch])),
            desc=f"epoch {epoch}/{train_cfg.epochs}",
            unit="ex",
            disable=None if rank == 0 else True,
        )
        # The loss is summed on the device and read every log_every steps: reading it each step would make the
        # host wait for the device (a sync per step on a GPU).
        loss_sum, loss_count = torch.zeros((), device=device), 0
        # With N ranks, each adds its shard's loss times its factor: their sum over ranks / N is the global batch's.
        for i, (batch, (_, factor)) in enumerate(zip(loader, shards), start=progress.batch):
            with autocast(device, precision):
                loss = head.loss(ddp_model, to_device(batch, device))
            (loss * factor / train_cfg.grad_accum).backward()
            loss_sum += loss.detach().float() * factor
            loss_count += 1
            bar.update(len(batches[i]))
            seen += len(batch["labels"]) if factor else 0
            if (i + 1) % train_cfg.grad_accum and i + 1 < n_batches:
                continue
            torch.nn.utils.clip_grad_norm_(trainable.values(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            progress.batch, progress.step = i + 1, progress.step + 1
            stop = agreed_stop()
            if progress.step % train_cfg.log_every == 0 or i + 1 == n_batches:  # on every rank at once
                mean_loss = distributed.gather([loss_sum.item()])[:, 0].sum().item() / world / loss_count
                if not math.isfinite(mean_loss):
                    bar.close()
                    raise RunError(
                        f"train loss is {mean_loss} at epoch {epoch}, step {progress.step}: lower train.lr "
                        f"(now {train_cfg.lr}) or use train.precision=fp32"
                    )
                if progress.step % train_cfg.log_every == 0 and rank == 0:
                    log_metrics({"train_loss": mean_loss, "lr": scheduler.get_last_lr()[0]}, progress.step)
                bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
                loss_sum, loss_count = torch.zeros((), device=device), 0
            if checkpoints and (checkpoints.due(progress.step) or stop):
                checkpoint()
                bar.close()
                stop_if_asked(stop)
        bar.close()

        progress.epoch, progress.batch = epoch + 1, 0
        if (train_cfg.eval_every_epoch or epoch == train_cfg.epochs) and rank == 0:  # the others wait
            val = evaluate(model, head, val_features, train_cfg, device, desc="validation").metrics(label_names)
            log_metrics({f"val_{k}": v for k, v in val.items()}, epoch)
            log.info(f"epoch {epoch}: " + "  ".join(f"val_{k}={val[k]:.4f}" for k in ("loss", "accuracy", "f1_macro")))
            _judge(progress, epoch, val, model, train_cfg, log_metrics)
            if after_epoch:
                after_epoch(epoch, val)
        progress.stopped_epoch = distributed.broadcast(progress.stopped_epoch)  # rank 0's early stop, for all
        stop = agreed_stop()
        checkpoint()  # the epoch's end: a resumed run goes on with the next epoch
        stop_if_asked(stop)

    if world > 1:
        log.info(f"rank {rank}: trained on {seen} examples")
    last = progress.epoch - 1
    if progress.kept_state is not None and progress.kept["epoch"] != last:
        model.load_state_dict(progress.kept_state, strict=False)
        log.info(
            f"kept the adapter of epoch {progress.kept['epoch']} "
            f"(best val_{train_cfg.select_metric}={progress.best_score:.4f})"
        )
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
        log.info(
            f"early stop after epoch {epoch}: val_{train_cfg.select_metric} did not improve on "
            f"{progress.best_score:.4f} for {train_cfg.patience} evaluated epochs (train.patience)"
        )
