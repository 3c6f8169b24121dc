"""The training loop of a fused sweep group: the members of one group (sentlab.fused) train together on one frozen
base (sentlab.multi_lora), each as sentlab.training.fit trains the same job alone.

    trainer = GroupTrainer(group, head, features, {name: train_cfg}, device, hooks={name: MemberHooks(...)})
    outcomes = trainer.run()      # {name: Outcome}: kept epoch and val, or the error that ended the member

Each step stacks one batch per active member (its own epoch_batches(seed, epoch): the batches it trains on
alone), and trains on the sum of the members' mean losses, so that each member's gradients are those of its own
run. Each member has its own AdamW, learning-rate schedule and gradient clipping, its own validation after each
epoch (all members on the same rows at once with the seq_cls head, GroupTrainer.evaluate; one at a time with the
generative head or an 8-bit base: sentlab.multi_lora says why), keep-best, early stopping and Optuna pruning. A member
leaves the stack when its epochs are done, when it stops early or is pruned, or when its loss turns NaN (its
run FAILS; the others go on). What each member logs goes to its own hooks.log_metrics.

Settings members share (sentlab.fused.setting_key): batch size, grad_accum, group_by_length, precision, eval
settings, log_every.

Checkpoints (sentlab.checkpoints): with `checkpoints={name: Checkpoints}`, each member saves its own, in its run's
folder, where its job alone would (every its train.checkpoint_every steps, at each epoch's end after validation):
its trainable weights, optimizer, scheduler, progress and kept-best state, the RNG states, the losses not yet
logged (so that a resumed member logs the same mean losses), and "fused": True (its weights are named as
sentlab.multi_lora has them). A stop signal (SIGTERM, SIGINT; caught inside the first member's
Checkpoints.catch_signals(), which the caller enters) ends the step, saves every active member's checkpoint and
raises Stopped. `states={name: checkpoint}` (Checkpoints.read) starts the members from their checkpoints, which
must all stand at the same step: the group goes on exactly where it stopped.
"""

from __future__ import annotations

import contextlib
import logging
import math
import time
from dataclasses import dataclass, field

import torch
from torch.utils.data import DataLoader

from sentlab.checkpoints import Stopped, set_rng_states
from sentlab.errors import RunError
from sentlab.multi_lora import Group, member_losses, member_scores, stack_batches
from sentlab.training import (
    EPOCH_CURVE,
    Evaluation,
    Progress,
    autocast,
    epoch_batches,
    evaluate,
    evaluate_each,
    resolve_precision,
    to_device,
)

log = logging.getLogger(__name__)


def _no_log(metrics: dict, step: int) -> None:
    pass


@dataclass
class MemberHooks:
    """What a member reports to: its run's log_metrics(metrics, step), and after_epoch(epoch, val) (an Optuna
    trial's hook, which raises sentlab.study.Pruned to stop it)."""

    log_metrics: object = _no_log
    after_epoch: object = None


@dataclass
class Outcome:
    """How a member's training ended: its kept epoch, that epoch's validation metrics and evaluation (None for an
    epoch validated before a resume), its training time, and the exception that ended it (a RunError for a NaN
    loss, sentlab.study.Pruned), or None."""

    epoch: int = 0
    val: dict | None = None
    train_time_s: float = 0.0
    error: BaseException | None = None
    evaluation: Evaluation | None = None


@dataclass
class MemberState:
    """One member's optimizer, schedule, progress and pending loss."""

    name: str
    cfg: object  # its train config
    optimizer: torch.optim.Optimizer
    scheduler: object
    hooks: MemberHooks
    params: list = field(default_factory=list)
    progress: Progress = field(default_factory=Progress)
    loss_sum: float = 0.0
    loss_count: int = 0
    kept_evaluation: Evaluation | None = None  # the kept epoch's val evaluation
    outcome: Outcome | None = None  # set when the member has left the stack


class GroupTrainer:
    """One group's training: the members' states, the shared data and model."""

    def __init__(
        self, group: Group, head, features: dict, train_cfgs: dict, device, hooks: dict | None = None,
        checkpoints: dict | None = None, states: dict | None = None,
    ):  # fmt: skip
        from transformers import get_scheduler

        self.group, self.head, self.device = group, head, device
        self.train_features, self.val_features = features["train"], features.get("val")
        first = next(iter(train_cfgs.values()))
        self.shared = first  # what all members share (batch size, precision, eval settings, log_every)
        self.precision = resolve_precision(first.precision, device, group.model)
        self.lengths = [len(ids) for ids in self.train_features["input_ids"]]
        self.n_batches = math.ceil(len(self.lengths) / first.batch_size)
        self.members: dict[str, MemberState] = {}
        for name, cfg in train_cfgs.items():
            params = list(group.parameters(name).values())
            optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
            total_steps = math.ceil(self.n_batches / cfg.grad_accum) * cfg.epochs
            scheduler = get_scheduler(cfg.scheduler, optimizer, int(cfg.warmup_ratio * total_steps), total_steps)
            member_hooks = (hooks or {}).get(name) or MemberHooks()
            self.members[name] = MemberState(name, cfg, optimizer, scheduler, member_hooks, params)
        self.checkpoints, self.states = checkpoints or {}, states or {}
        # the first member's Checkpoints holds the stop signal for the whole group (its catch_signals(), entered by
        # the caller as training.fit's caller enters it)
        self.signals = next(iter(self.checkpoints.values()), None)

    def active(self) -> list[MemberState]:
        return [m for m in self.members.values() if m.outcome is None]

    def run(self) -> dict[str, Outcome]:
        """Train until every member has left the stack (or a stop signal: Stopped, at a checkpoint)."""
        progress = self._resume()
        self.start = time.perf_counter() - progress.train_s
        epoch, first_batch = progress.epoch, progress.batch
        while self.active():
            self._train_epoch(epoch, first_batch)
            due = [m.name for m in self.active() if m.cfg.eval_every_epoch or epoch == m.cfg.epochs]
            evaluations = self.evaluate(self.val_features, due, f"validation epoch {epoch}")
            for member in self.active():
                self._end_epoch(member, epoch, evaluations.get(member.name))
            self._checkpoint(self.active())  # the epoch's end: a resumed group goes on with the next epoch
            self._stop_if_asked()
            epoch, first_batch = epoch + 1, 0
        return {name: m.outcome for name, m in self.members.items()}

    def _resume(self) -> Progress:
        """Every member from its checkpoint (`states`), if given; the group's progress (a member's: all equal)."""
        for name, state in self.states.items():
            member = self.members[name]
            self.group.load_state_dict(name, state["trainable"])
            member.optimizer.load_state_dict(state["optimizer"])
            member.scheduler.load_state_dict(state["scheduler"])
            member.progress = Progress(**state["progress"])
            member.loss_sum, member.loss_count = state["pending_loss"]
        if not self.states:
            return Progress()
        state = next(iter(self.states.values()))
        set_rng_states(state["rng"])  # saved at the same moment by every member
        progress = Progress(**state["progress"])
        log.info(f"group resumed at step {progress.step} (epoch {progress.epoch}, batch {progress.batch})")
        return progress

    def _train_epoch(self, epoch: int, first_batch: int = 0) -> None:
        """One epoch of every active member (from batch `first_batch`: a resumed group); a member whose loss turns
        NaN leaves the stack at once."""
        members = [m for m in self.active() if epoch <= m.cfg.epochs]
        batches_of = {m.name: iter(self._loader(m.cfg.seed, epoch, first_batch)) for m in members}
        self.group.model.train()
        for i in range(first_batch, self.n_batches):
            members = [m for m in members if m.outcome is None]
            if not members:
                return
            batches = [next(batches_of[m.name]) for m in members]
            sizes = [len(b["labels"]) for b in batches]
            self.group.set_active([m.name for m in members])
            self.group.set_sizes(sizes)
            stacked = stack_batches(batches, self.head.tokenizer.pad_token_id, self.head.padding_side)
            with autocast(self.device, self.precision):
                losses = member_losses(self.head, self.group.model, to_device(stacked, self.device), sizes)
            sum(loss / m.cfg.grad_accum for loss, m in zip(losses, members)).backward()
            stepped = []
            for member, loss in zip(members, losses):
                member.loss_sum += loss.detach().float()
                member.loss_count += 1
                if (i + 1) % member.cfg.grad_accum == 0 or i + 1 == self.n_batches:
                    self._optimizer_step(member, epoch, i + 1)
                    stepped.append(member)
            self._step_checkpoints([m for m in stepped if m.outcome is None])

    def _step_checkpoints(self, stepped: list[MemberState]) -> None:
        """After an optimizer step: each member's checkpoint when due; every active one's on a stop signal."""
        if not self.checkpoints or not stepped:
            return
        if self.signals.stop_signal:
            self._checkpoint(self.active())
        else:
            self._checkpoint([m for m in stepped if self.checkpoints[m.name].due(m.progress.step)])
        self._stop_if_asked()

    def _checkpoint(self, members: list[MemberState]) -> None:
        """Each member's checkpoint in its own folder (what training.fit saves for a job alone, marked fused)."""
        if not self.checkpoints:
            return
        for member in members:
            progress = member.progress
            progress.train_s = time.perf_counter() - self.start
            state = {
                "fused": True,
                "progress": vars(progress),
                "trainable": self.group.state_dict(member.name),
                "optimizer": member.optimizer.state_dict(),
                "scheduler": member.scheduler.state_dict(),
                "pending_loss": (float(member.loss_sum), member.loss_count),  # the losses not logged yet
            }
            self.checkpoints[member.name].save(state, progress.step)

    def _stop_if_asked(self) -> None:
        """On a stop signal (every active member's checkpoint saved): Stopped, at the group's progress."""
        if self.signals and self.signals.stop_signal and (active := self.active()):
            progress = active[0].progress
            raise Stopped(self.signals.stop_signal, progress.epoch, progress.step)

    def _loader(self, seed: int, epoch: int, first_batch: int = 0) -> DataLoader:
        """A member's batches of `epoch` from `first_batch` on: exactly those of its job alone
        (sentlab.training.epoch_batches)."""
        batches = epoch_batches(self.lengths, self.shared.batch_size, seed, epoch, self.shared.group_by_length)
        batches = batches[first_batch:]
        # Its own generator: creating the loader's iterator would otherwise draw from the global RNG (dropout's).
        return DataLoader(
            self.train_features, batch_sampler=batches, collate_fn=self.head.collate, generator=torch.Generator()
        )

    def _optimizer_step(self, member: MemberState, epoch: int, batches_done: int) -> None:
        """Clip, step, schedule one member; its mean loss when due (a NaN one ends the member: FAILED)."""
        torch.nn.utils.clip_grad_norm_(member.params, 1.0)
        member.optimizer.step()
        member.scheduler.step()
        member.optimizer.zero_grad(set_to_none=True)
        progress = member.progress
        progress.batch, progress.step = batches_done, progress.step + 1
        if progress.step % self.shared.log_every == 0 or batches_done == self.n_batches:
            self._log_loss(member, epoch)

    def _log_loss(self, member: MemberState, epoch: int) -> None:
        step = member.progress.step
        mean_loss = float(member.loss_sum) / member.loss_count
        member.loss_sum, member.loss_count = 0.0, 0
        if not math.isfinite(mean_loss):
            error = RunError(
                f"train loss is {mean_loss} at epoch {epoch}, step {step}: lower train.lr "
                f"(now {member.cfg.lr}) or use train.precision=fp32"
            )
            log.error(f"member {member.name}: {error}; the rest of its group goes on")
            self._leave(member, error)
            return
        if step % self.shared.log_every == 0:
            lr = member.scheduler.get_last_lr()[0]
            member.hooks.log_metrics({"train_loss": mean_loss, "lr": lr}, step)

    def evaluate(self, features, names: list[str], desc: str) -> dict[str, Evaluation]:
        """Members `names` on `features`, each as evaluate() gives it for the member alone: with the seq_cls head
        all at once (one forward per batch repeated once per member: the frozen products once per batch, in
        larger matrix products), else one at a time."""
        stacked = self.head.name == "seq_cls" and not getattr(self.group.model, "is_loaded_in_8bit", False)
        if len(names) < 2 or not stacked:
            evaluations = {}
            for name in names:
                with self.only(name):
                    evaluations[name] = evaluate(
                        self.group.model, self.head, features, self.device, self.shared.eval_batch_size,
                        self.shared.precision, f"{desc} {name}",
                    )  # fmt: skip
            return evaluations
        before = self.group.active
        self.group.set_active(names)
        self.group.model.eval()
        try:
            score = lambda batch: member_scores(self.head, self.group.model, batch, len(names))  # noqa: E731
            evaluations = evaluate_each(score, self.head, features, self.device, self.shared.eval_batch_size,
                                        self.precision, desc)  # fmt: skip
        finally:
            self.group.set_active(before)
        return dict(zip(names, evaluations))

    def _end_epoch(self, member: MemberState, epoch: int, evaluation: Evaluation | None) -> None:
        """After an epoch: validate (its val `evaluation`, when due), judge, run the member's after_epoch; leave
        when done."""
        cfg, progress = member.cfg, member.progress
        progress.epoch, progress.batch = epoch + 1, 0
        if evaluation is not None:
            try:
                self._validate(member, epoch, evaluation)
            except Exception as err:  # e.g. sentlab.study.Pruned from after_epoch
                self._leave(member, err)
                return
        if epoch >= cfg.epochs or progress.stopped_epoch is not None:
            self._leave(member, None)

    def _validate(self, member: MemberState, epoch: int, evaluation: Evaluation) -> None:
        cfg, progress = member.cfg, member.progress
        val = evaluation.metrics(self.head.label_names)
        member.hooks.log_metrics({f"{EPOCH_CURVE}val_{k}": v for k, v in val.items()}, epoch)
        shown = "  ".join(f"val_{k}={val[k]:.4f}" for k in ("loss", "accuracy", "f1_macro"))
        log.info(f"{member.name} epoch {epoch}: {shown}")
        if progress.judge(
            cfg, epoch, val, lambda: {k: t.clone() for k, t in self.group.state_dict(member.name).items()}
        ):
            member.hooks.log_metrics({"stopped_epoch": epoch}, epoch)
            log.info(f"{member.name}: early stop after epoch {epoch} (train.patience={cfg.patience})")
        if progress.kept["epoch"] == epoch:
            member.kept_evaluation = evaluation
        if member.hooks.after_epoch:
            member.hooks.after_epoch(epoch, val)

    def _leave(self, member: MemberState, error: BaseException | None) -> None:
        """The member is done: its kept epoch's weights put back, its outcome recorded; it trains no more."""
        progress = member.progress
        if error is None and progress.kept_state is not None and progress.kept["epoch"] != progress.epoch - 1:
            self.group.load_state_dict(member.name, progress.kept_state)
            log.info(f"{member.name}: kept the adapter of epoch {progress.kept['epoch']}")
        progress.kept_state = None
        member.optimizer.state.clear()
        elapsed = time.perf_counter() - self.start
        member.outcome = Outcome(progress.kept["epoch"], progress.kept["val"], elapsed, error, member.kept_evaluation)

    @contextlib.contextmanager
    def only(self, name: str):
        """Only member `name` runs in the model inside (an evaluation); the active set is put back after."""
        before = self.group.active
        self.group.set_active([name])
        try:
            yield self.group.model
        finally:
            self.group.set_active(before)
