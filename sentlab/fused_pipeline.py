"""A fused sweep group, start to end (what hydra/launcher=fused runs for each group of sentlab.fused.group_jobs):
the members' jobs prepared once (data, tokenizer, head), one base loaded with every member's adapter
(models.build_group), trained together (sentlab.fused_training), then each member tested and logged as its own
ordinary child run, through sentlab.pipeline's own functions: the same params, metrics, tags, artifacts, adapter
and MLflow model as the job run alone, plus the tag `sentlab.fused_group`.

    results = run_group([MemberJob(cfg, overrides, hydra_dir, log_file), ...], sweep_dir)
    # each a job's result as pipeline.run returns it ({"run_id", "val", "test", ...}), or the exception that ended it

A member whose config already FINISHED is answered by that run (as a sweep job is); one that fails before its run
starts is a FAILED child (Store.record_failure); one that fails in training (NaN loss) is a FAILED child while
the others go on.

Checkpoints: each member saves its own under runs_dir/checkpoints/<its run id>/ (sentlab.fused_training). A stop
signal ends the group at a checkpoint: the members that had left the stack are tested and end as they would
(FINISHED, pruned, FAILED), every other member's run is KILLED with the resume command (the sweep's own), the
sweep's parent run KILLED, and Stopped raised. The same sweep command then answers the FINISHED members by their
runs and reopens the KILLED ones (Store.interrupted, by config hash), which go on from their checkpoints: members
that stand at different steps (or at none) train as separate groups, one after another.
"""

from __future__ import annotations

import gc
import logging
import time
import uuid
from dataclasses import dataclass

import torch

from sentlab import checkpoints, console, methods, models, pipeline, study, tags, tracking
from sentlab.config import validate, with_max_length
from sentlab.fused_training import GroupTrainer, MemberHooks
from sentlab.multi_lora import Member
from sentlab.runs import Job, Run, Store
from sentlab.training import resolve_precision

log = logging.getLogger(__name__)


@dataclass
class MemberJob:
    """One job of a group: its composed run config, overrides, Hydra output folder and log file."""

    cfg: object
    overrides: list[str]
    hydra_dir: str | None = None
    log_file: str | None = None


@dataclass
class GroupMember:
    """A member that trains: its job, prepared config, member name and (once started) its MLflow run."""

    index: int
    job: Job
    prepared: pipeline.Prepared
    name: str
    run: Run | None = None
    closing: object = None  # the run's closing() context, entered by hand: members end one by one
    resume: object = None  # its interrupted MLflow run (Store.interrupted), reopened
    state: dict | None = None  # that run's latest checkpoint (Checkpoints.read)
    saved: checkpoints.Checkpoints | None = None  # its run's checkpoint folder


def run_group(jobs: list[MemberJob], sweep_dir: str | None) -> list:
    """Each job's result, or the exception that ended it, in the order of `jobs`."""
    sweep = tracking.read_sweep(sweep_dir)
    store = Store.of(jobs[0].cfg.tracking)
    results: list = [None] * len(jobs)
    todo = []
    for i, member_job in enumerate(jobs):
        job = Job(member_job.cfg, list(member_job.overrides), sweep)
        if not job.cfg.force and (done := store.finished(job)):
            results[i] = store.reuse(job, done)
        else:
            todo.append((i, job))
    members = _prepare(store, todo, results)
    try:
        for part in _by_progress(store, members):
            _train_group(store, part, jobs, results)
    except checkpoints.Stopped:  # the whole sweep stops; rerunning its command continues it
        if sweep is not None:
            store.client.set_terminated(todo[0][1].parent, "KILLED")
        raise
    finally:  # free the group's memory before the next group starts
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    return results


def _prepare(store: Store, todo: list, results: list) -> list[GroupMember]:
    """Every member checked (a bad one is a FAILED child), the data and tokenizer loaded once for all."""
    valid = []
    for i, job in todo:
        try:
            validate(job.cfg)
            valid.append((i, job))
        except Exception as err:
            store.record_failure(job, err)
            results[i] = err
    if not valid:
        return []
    try:
        first = pipeline.prepare(valid[0][1].cfg)
    except Exception as err:  # data or backbone: the same for every member
        for i, job in valid:
            store.record_failure(job, err)
            results[i] = err
        return []
    members = []
    for i, job in valid:
        cfg = with_max_length(job.cfg, first.cfg.train.max_length)
        prepared = pipeline.Prepared(cfg, first.data, first.head, first.device, first.quant_fallback)
        members.append(GroupMember(i, job, prepared, name=f"job{i}"))
    return members


def _by_progress(store: Store, members: list[GroupMember]) -> list[list[GroupMember]]:
    """Each member's interrupted run and its checkpoint, if any; the members split by the step their checkpoints
    stand at (0: from the start), one group each. A job alone's checkpoint cannot go on in a group: that member
    starts again, in a new run."""
    parts: dict[int, list[GroupMember]] = {}
    for m in members:
        cfg = m.prepared.cfg
        if not cfg.force and (interrupted := store.interrupted(m.job)):
            folder = checkpoints.folder(cfg.runs_dir, interrupted.info.run_id)
            state = checkpoints.Checkpoints(folder, None, 1).read()
            if state is not None and state.get("fused"):
                m.resume, m.state = interrupted, state
            else:
                log.warning(f"run {interrupted.info.run_id} was stopped alone, not in a group: it trains anew")
        parts.setdefault(m.state["progress"]["step"] if m.state else 0, []).append(m)
    return list(parts.values())


def _train_group(store: Store, members: list[GroupMember], jobs: list[MemberJob], results: list) -> None:
    group_id = uuid.uuid4().hex[:12]
    first = members[0].prepared
    log.info(f"fused group {group_id}: {len(members)} jobs on one {first.cfg.backbone.name} base")
    for m in members:
        _start(store, m, jobs[m.index], group_id)
    trainer, clock = None, _Clock()
    try:
        with members[0].saved.catch_signals():  # from here to the end of training, a stop lands at a checkpoint
            group, features = _build(members)
            clock.lap("built")
            trainer = GroupTrainer(
                group, first.head, features, {m.name: m.prepared.cfg.train for m in members}, first.device,
                hooks={m.name: _hooks(m) for m in members}, checkpoints={m.name: m.saved for m in members},
                states={m.name: m.state for m in members if m.state is not None},
            )  # fmt: skip
            outcomes = trainer.run()
            clock.lap("trained")
    except BaseException as err:  # the group as a whole failed (loading the base, a bad batch), or was stopped
        for m in members:
            outcome = trainer.members[m.name].outcome if trainer else None
            if isinstance(err, checkpoints.Stopped) and outcome is not None:  # it had left the stack: it ends
                results[m.index] = _finish(m, group, trainer, features, outcome)
            else:
                _close(m, err)
                results[m.index] = err
        if isinstance(err, Exception):
            return
        raise
    trained = [m.name for m in members if outcomes[m.name].error is None]
    tests = trainer.evaluate(features["test"], trained, "test")  # every trained member's at once
    clock.lap("tested")
    for m in members:
        results[m.index] = _finish(m, group, trainer, features, outcomes[m.name], tests.get(m.name))
    clock.lap("logged")
    log.info(f"fused group {group_id} of {len(members)}: {clock}")


class _Clock:
    """Where a group's time went: seconds per phase, in order ("built 2.1 s, trained 40.2 s, ...")."""

    def __init__(self):
        self.last, self.laps = time.perf_counter(), []

    def lap(self, name: str) -> None:
        now = time.perf_counter()
        self.laps.append((name, now - self.last))
        self.last = now

    def __str__(self) -> str:
        return ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self.laps)


def _start(store: Store, m: GroupMember, member_job: MemberJob, group_id: str) -> None:
    """A member's run started (or its interrupted run reopened) and entered, its config logged if new."""
    run_tags = {**pipeline._tags(m.job, m.prepared), tags.FUSED_GROUP: group_id}
    m.run = Run.start(store, m.job, run_tags, m.resume)
    m.closing = m.run.closing(member_job.log_file)
    m.closing.__enter__()
    cfg = m.prepared.cfg
    m.saved = checkpoints.Checkpoints(
        checkpoints.folder(cfg.runs_dir, m.run.id), cfg.train.checkpoint_every, cfg.train.keep_checkpoints
    )
    if m.run.resumed:
        m.run.set_tags({tags.FUSED_GROUP: group_id})
    else:
        pipeline._log_config(m.run, cfg, m.prepared.data, member_job.hydra_dir)


def _build(members: list[GroupMember]):
    """The group's model (one base, every member's adapter) and the encoded splits, logged to each run."""
    first = members[0].prepared
    cfg, head, device = first.cfg, first.head, first.device
    log.info(pipeline._describe(first.data))
    specs = [_member(m) for m in members]
    group = models.build_group(cfg, head, device, specs)
    precision = resolve_precision(cfg.train.precision, device, group.model)
    for m in members:
        m.run.log_metrics(member_counts(group, m.name))
        m.run.log_params({"precision_used": precision})
    features = {split: head.encode(rows) for split, rows in first.data.splits.items()}
    return group, features


def _member(m: GroupMember) -> Member:
    lora, train = m.prepared.cfg.lora, m.prepared.cfg.train
    return Member(m.name, r=lora.r, alpha=lora.alpha, dropout=lora.dropout, seed=train.seed)


def member_counts(group, name: str) -> dict[str, float]:
    """A member's parameter counts as adapters.parameter_counts gives them for its job alone: its own trainable
    weights, and the base's (the frozen head included) plus those."""
    own = {id(p) for m in group.members for p in group.parameters(m).values()}
    base = sum(methods.weights_in(p) for p in group.model.parameters() if id(p) not in own)
    trainable = sum(p.numel() for p in group.parameters(name).values())
    total = base + trainable
    return {"trainable_params": trainable, "total_params": total, "trainable_pct": 100.0 * trainable / total}


def _hooks(m: GroupMember) -> MemberHooks:
    trial = m.prepared.cfg.get("trial")
    after_epoch = study.epoch_hook(trial, m.prepared.cfg.train, m.run.id) if trial else None
    return MemberHooks(log_metrics=m.run.log_metrics, after_epoch=after_epoch)


def _finish(m: GroupMember, group, trainer: GroupTrainer, features: dict, outcome, test=None) -> dict | BaseException:
    """A member's run after training: tested (its `test` evaluation if made already) and logged
    (pipeline.evaluate_and_log), or pruned, or FAILED."""
    error = outcome.error
    try:
        if isinstance(error, study.Pruned):
            m.run.prune(error.epoch, m.prepared.cfg.train.epochs)
            m.run.log_metrics({f"val_{k}": v for k, v in error.val.items()})
            result = {"run_id": m.run.id, "val": error.val, "test": None, "pruned_epoch": error.epoch}
        elif error is not None:
            raise error
        else:
            kept = {"epoch": outcome.epoch, "val": outcome.val, "train_time_s": outcome.train_time_s,
                    "evaluation": outcome.evaluation}  # fmt: skip
            with trainer.only(m.name) as model:
                save = lambda folder: group.export(m.name, folder)  # noqa: E731
                result = pipeline.evaluate_and_log(m.run, m.prepared, model, features, kept, save, {"test": test})
            result = {"run_id": m.run.id, **result}
    except Exception as err:
        _close(m, err)
        return err
    _close(m, None)
    m.saved.remove()  # its adapter is in MLflow
    group.remove(m.name)  # its weights freed
    return result


def _close(m: GroupMember, error: BaseException | None) -> None:
    """End a member's run as Run.closing ends it: FINISHED (or KILLED if pruned), or FAILED with its error."""
    console.log_file()  # flushed before the run logs it
    if error is None:
        m.closing.__exit__(None, None, None)
    else:
        m.closing.__exit__(type(error), error, error.__traceback__)
