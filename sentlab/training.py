"""The training loop: the method's optimizer (AdamW, or LoRA+'s groups) on the trainable weights, length-grouped
batches padded to their longest example, mixed precision where the hardware is fast at it, eval every epoch, checkpoints
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

from sentlab import distributed, methods
from sentlab.checkpoints import Stopped, rng_states, set_rng_states
from sentlab.errors import RunError
from sentlab.metrics import classification_metrics

log = logging.getLogger(__name__)


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
def evaluate(model, head, features, device, batch_size: int, precision: str = "auto", desc="eval") -> Evaluation:
    """Loss and label log-probabilities on encoded `features`, in batches of `batch_size` sorted by length, in
    `precision` (as train.precision: auto picks the hardware's)."""
    model.eval()
    precision = resolve_precision(precision, device, model)
    with autocast(device, precision):
        head.start_evaluation(model, device)  # e.g. contextual calibration's content-free scores
    score = lambda batch: [head.evaluate_batch(model, batch)]  # noqa: E731
    return evaluate_each(score, head, features, device, batch_size, precision, desc)[0]


@torch.inference_mode()
def evaluate_each(score, head, features, device, batch_size: int, precision: str, desc="eval") -> list[Evaluation]:
    """One Evaluation per model that `score(batch)` scores: it returns a (mean loss, label log-probabilities)
    pair per model for the batch's rows (one model: evaluate; a fused group's members on the same rows at once:
    sentlab.fused_training). Batches of `batch_size` sorted by length, results in the data's own order."""
    # Sorting by length keeps padding small; the order does not matter for metrics.
    order = np.argsort([len(ids) for ids in features["input_ids"]], kind="stable")
    loader = DataLoader(features.select(order), batch_size=batch_size, collate_fn=head.collate)
    per_model, labels = None, []  # per model: its loss sums and log-probability chunks, batch by batch
    for batch in tqdm(loader, desc=desc, leave=False, disable=None):
        batch = to_device(batch, device)
        with autocast(device, precision):
            pairs = score(batch)
        per_model = per_model or [([], []) for _ in pairs]
        for (losses, chunks), (loss, scores) in zip(per_model, pairs):
            losses.append(loss.item() * len(scores))
            chunks.append(scores.float().cpu().numpy())
        labels.append(batch["labels"].cpu().numpy())
    labels = np.concatenate(labels)
    inverse = np.argsort(order)  # back to the data's own order
    return [Evaluation(sum(losses) / len(labels), np.concatenate(chunks)[inverse], labels[inverse])
            for losses, chunks in per_model]  # fmt: skip


EPOCH_CURVE = "epoch/"  # per-epoch validation metrics are logged as epoch/val_<name>, step = epoch
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
        chunk = sorted(order[start : start + batch_size * MEGABATCH], key=lengths.__getitem__)  # stable: ties shuffled
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

    def judge(self, cfg, epoch: int, val: dict, weights) -> bool:
        """After an evaluated epoch: the epoch to keep (train.keep; weights() copies its trainable weights for
        keep=best); True when early stopping ends training here (train.patience)."""
        improved = val[cfg.select_metric] > self.best_score
        if improved:
            self.best_score, self.stale = val[cfg.select_metric], 0
        else:
            self.stale += 1
        if cfg.keep == "last" or improved:
            self.kept = {"epoch": epoch, "val": val}
            if cfg.keep == "best":
                self.kept_state = weights()
        if cfg.patience and self.stale >= cfg.patience and epoch < cfg.epochs:
            self.stopped_epoch = epoch
            return True
        return False


def _no_log(metrics: dict, step: int) -> None:
    pass


def fit(
    model, head, features: dict, train_cfg, device, *, log_metrics=_no_log, checkpoints=None, after_epoch=None,
    method=None,
) -> dict:  # fmt: skip
    """Train for train_cfg.epochs (fewer with train.patience) on features["train"], validating on
    features["val"]; returns the kept epoch, its validation metrics and the training time (`epoch`, `val`,
    `train_time_s`), and that epoch's val Evaluation (`evaluation`: the run's val predictions, not computed
    again; None when the kept epoch was validated before a resume).

    `log_metrics(metrics: dict, step: int)` receives train loss/lr every `log_every` optimizer steps and
    epoch/val_* metrics after each evaluated epoch (step = epoch). With `checkpoints` (a Checkpoints),
    training starts from the latest checkpoint there, if any, saves one when due and at each epoch's end, and on
    a stop signal saves one and raises Stopped. `after_epoch(epoch, val)`, if given, runs after each evaluated
    epoch and may raise to end training there (sentlab.study.Pruned: an Optuna trial that its pruner stops).
    `method` (the run's method config) picks the optimizer (sentlab.methods.optimizer); None: AdamW.

    In a process group (train.num_processes > 1, sentlab.distributed) every rank calls fit: the epoch's global
    batches of batch_size * N examples are cut into one shard per rank, DDP averages the gradients, the loss
    logged is the global batches'; only rank 0 validates, logs and writes checkpoints, and rank 0's checkpoint
    holds every rank's RNG states. features["val"], `log_metrics` and `after_epoch` matter on rank 0 only (an
    after_epoch that raises there ends the other ranks too).
    """
    trainer = Trainer(model, head, features, train_cfg, device, log_metrics, checkpoints, after_epoch, method)
    return trainer.run()


class Trainer:
    """One training: the optimizer and schedule of the trainable weights, the progress, the checkpoints."""

    def __init__(self, model, head, features, train_cfg, device, log_metrics, checkpoints, after_epoch, method=None):
        from transformers import get_scheduler

        self.model, self.head, self.cfg, self.device = model, head, train_cfg, device
        self.train_features, self.val_features = features["train"], features.get("val")
        self.log_metrics, self.checkpoints, self.after_epoch = log_metrics, checkpoints, after_epoch
        self.rank, self.world = distributed.rank(), distributed.world_size()
        self.global_batch = train_cfg.batch_size * self.world  # train.batch_size is per process
        self.trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
        if method is None:
            self.optimizer = torch.optim.AdamW(
                self.trainable.values(), lr=train_cfg.lr, weight_decay=train_cfg.weight_decay
            )
        else:
            self.optimizer = methods.optimizer(model, train_cfg, method)
        self.precision = resolve_precision(train_cfg.precision, device, model)
        self.lengths = [len(ids) for ids in self.train_features["input_ids"]]
        self.example_weights = None  # train.class_weights: each example's weight, for the ranks' loss factors
        if head.class_weights is not None:
            self.example_weights = head.class_weights[torch.as_tensor(list(self.train_features["label"]))].tolist()
        self.n_batches = math.ceil(len(self.lengths) / self.global_batch)
        total_steps = math.ceil(self.n_batches / train_cfg.grad_accum) * train_cfg.epochs
        warmup = int(train_cfg.warmup_ratio * total_steps)
        self.scheduler = get_scheduler(train_cfg.scheduler, self.optimizer, warmup, total_steps)
        self.progress = Progress()
        self.kept_evaluation = None  # the kept epoch's val Evaluation (a resumed run's earlier epochs: none)
        self.seen = 0  # examples this process trained on (this attempt)

    def run(self) -> dict:
        self._resume()
        self.ddp_model = distributed.wrap(self.model, self.device)
        self.start = time.perf_counter() - self.progress.train_s
        progress = self.progress
        while progress.epoch <= self.cfg.epochs and progress.stopped_epoch is None:
            epoch = progress.epoch
            self._train_epoch(epoch)
            progress.epoch, progress.batch = epoch + 1, 0
            if (self.cfg.eval_every_epoch or epoch == self.cfg.epochs) and self.rank == 0:  # the others wait
                self._validate(epoch)
            progress.stopped_epoch = distributed.broadcast(progress.stopped_epoch)  # rank 0's early stop, for all
            stop = self._agreed_stop()
            self._checkpoint()  # the epoch's end: a resumed run goes on with the next epoch
            self._stop_if_asked(stop)
        if self.world > 1:
            log.info(f"rank {self.rank}: trained on {self.seen} examples")
        if progress.kept_state is not None and progress.kept["epoch"] != progress.epoch - 1:
            self.model.load_state_dict(progress.kept_state, strict=False)
            log.info(
                f"kept the adapter of epoch {progress.kept['epoch']} "
                f"(best val_{self.cfg.select_metric}={progress.best_score:.4f})"
            )
        return {**progress.kept, "train_time_s": time.perf_counter() - self.start, "evaluation": self.kept_evaluation}

    def _resume(self) -> None:
        """From rank 0's latest checkpoint, on every rank, if there is one."""
        state = self.checkpoints.latest() if self.checkpoints and self.rank == 0 else None
        if (state := distributed.broadcast(state)) is None:
            return
        if state.get("fused"):  # a fused group's member: weights named and stacked as sentlab.multi_lora has them
            raise RunError(
                f"{self.checkpoints.path} is a fused group's checkpoint: rerun the sweep's own command "
                "(hydra/launcher=fused) to resume it"
            )
        self.model.load_state_dict(state["trainable"], strict=False)
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.progress = Progress(**state["progress"])
        if self.rank > 0:
            set_rng_states(state["rng_ranks"][self.rank])
        log.info(f"resumed at step {self.progress.step} (epoch {self.progress.epoch}, batch {self.progress.batch})")

    def _train_epoch(self, epoch: int) -> None:
        cfg, progress = self.cfg, self.progress
        self.model.train()
        batches = epoch_batches(self.lengths, self.global_batch, cfg.seed, epoch, cfg.group_by_length)
        # this rank's part of each batch, and its loss factor
        shards = [distributed.shard(b, self.example_weights) for b in batches[progress.batch :]]
        # Its own generator: creating the loader's iterator would otherwise draw from the global RNG (dropout's).
        loader = DataLoader(
            self.train_features,
            batch_sampler=[mine for mine, _ in shards],
            collate_fn=self.head.collate,
            generator=torch.Generator(),
        )
        # One bar per epoch, in examples of all ranks (its rate is examples/s); None: off when not a terminal.
        self.bar = tqdm(
            total=len(self.lengths),
            initial=sum(map(len, batches[: progress.batch])),
            desc=f"epoch {epoch}/{cfg.epochs}",
            unit="ex",
            disable=None if self.rank == 0 else True,
        )
        # The loss is summed on the device and read every log_every steps: reading it each step would make the
        # host wait for the device (a sync per step on a GPU). With N ranks, each adds its shard's loss times its
        # factor: their sum over ranks / N is the global batch's.
        self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0
        try:
            for i, (batch, (_, factor)) in enumerate(zip(loader, shards), start=progress.batch):
                with autocast(self.device, self.precision):
                    loss = self.head.loss(self.ddp_model, to_device(batch, self.device))
                (loss * factor / cfg.grad_accum).backward()
                self.loss_sum += loss.detach().float() * factor
                self.loss_count += 1
                self.bar.update(len(batches[i]))
                self.seen += len(batch["labels"]) if factor else 0
                if (i + 1) % cfg.grad_accum == 0 or i + 1 == self.n_batches:
                    self._optimizer_step(epoch, i + 1)
        finally:
            self.bar.close()

    def _optimizer_step(self, epoch: int, batches_done: int) -> None:
        """Clip, step, schedule; then, on every rank at once, the loss when due, a checkpoint when due or asked."""
        progress = self.progress
        torch.nn.utils.clip_grad_norm_(self.trainable.values(), 1.0)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        progress.batch, progress.step = batches_done, progress.step + 1
        stop = self._agreed_stop()
        if progress.step % self.cfg.log_every == 0 or batches_done == self.n_batches:
            self._log_loss(epoch)
        if self.checkpoints and (self.checkpoints.due(progress.step) or stop):
            self._checkpoint()
            self._stop_if_asked(stop)

    def _log_loss(self, epoch: int) -> None:
        """The mean train loss since the last reading (over all ranks); a NaN or infinite one ends the run."""
        step = self.progress.step
        mean_loss = distributed.gather([self.loss_sum.item()])[:, 0].sum().item() / self.world / self.loss_count
        if not math.isfinite(mean_loss):
            raise RunError(
                f"train loss is {mean_loss} at epoch {epoch}, step {step}: lower train.lr "
                f"(now {self.cfg.lr}) or use train.precision=fp32"
            )
        if step % self.cfg.log_every == 0 and self.rank == 0:
            self.log_metrics({"train_loss": mean_loss, "lr": self.scheduler.get_last_lr()[0]}, step)
        self.bar.set_postfix(loss=f"{mean_loss:.4f}", refresh=False)
        self.loss_sum, self.loss_count = torch.zeros((), device=self.device), 0

    def _validate(self, epoch: int) -> None:
        cfg = self.cfg
        evaluation = evaluate(
            self.model, self.head, self.val_features, self.device, cfg.eval_batch_size, cfg.precision, "validation"
        )
        val = evaluation.metrics(self.head.label_names)
        # The per-epoch curve: `val_*` itself is the kept epoch's, logged by the run once training is done
        # (MLflow shows a metric's value at its highest step, which would be the last epoch's).
        self.log_metrics({f"{EPOCH_CURVE}val_{k}": v for k, v in val.items()}, epoch)
        log.info(f"epoch {epoch}: " + "  ".join(f"val_{k}={val[k]:.4f}" for k in ("loss", "accuracy", "f1_macro")))
        self._judge(epoch, val)
        if self.progress.kept["epoch"] == epoch:
            self.kept_evaluation = evaluation  # the run's val evaluation, unless a later epoch is kept
        if self.after_epoch:
            self.after_epoch(epoch, val)

    def _judge(self, epoch: int, val: dict) -> None:
        """After an evaluated epoch: the epoch to keep (train.keep) and early stopping (train.patience)."""
        cfg, progress = self.cfg, self.progress
        if progress.judge(cfg, epoch, val, lambda: {n: p.detach().clone() for n, p in self.trainable.items()}):
            self.log_metrics({"stopped_epoch": epoch}, epoch)
            log.info(
                f"early stop after epoch {epoch}: val_{cfg.select_metric} did not improve on "
                f"{progress.best_score:.4f} for {cfg.patience} evaluated epochs (train.patience)"
            )

    def _checkpoint(self) -> None:
        """A checkpoint (rank 0 writes it, with every rank's RNG states: a collective, so every rank calls it)."""
        if not self.checkpoints:
            return
        rng_ranks = distributed.gather_objects(rng_states()) if self.world > 1 else None
        if self.rank == 0:
            self.progress.train_s = time.perf_counter() - self.start
            state = {
                "progress": vars(self.progress),
                "trainable": {n: p.detach() for n, p in self.trainable.items()},
                "optimizer": self.optimizer.state_dict(),
                "scheduler": self.scheduler.state_dict(),
            }
            self.checkpoints.save({**state, "rng_ranks": rng_ranks} if rng_ranks else state, self.progress.step)

    def _agreed_stop(self) -> int | None:
        """The stop signal that reached any rank (or None): every rank decides on this agreed signal, never on its
        own flag, which a signal can set at any moment. One collective with N ranks; none with one."""
        signum = (self.checkpoints.stop_signal if self.checkpoints else None) or 0
        if self.world > 1:
            signum = int(distributed.gather([signum])[:, 0].max())
        return signum or None

    def _stop_if_asked(self, signum: int | None) -> None:
        if signum:
            raise Stopped(signum, self.progress.epoch, self.progress.step)
