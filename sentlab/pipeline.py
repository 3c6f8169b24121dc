"""One job, start to end: decide (answer it with a run that FINISHED, resume one that stopped, or train), prepare
(every cheap check before the MLflow run starts, so bad input leaves no run behind), train, test, log.

The MLflow run's life (new, reused, resumed, failed, killed) belongs to sentlab.runs; the model is built by
sentlab.models; the loop is sentlab.training's.
"""

from __future__ import annotations

import gc
import logging
import resource
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from omegaconf import OmegaConf

from sentlab import (
    backbones,
    calibration,
    checkpoints,
    console,
    losses,
    methods,
    mlflow_model,
    models,
    quant,
    ranks,
    reports,
    study,
    tags,
    tracking,
)
from sentlab import classifier as classifiers
from sentlab.config import effective_batch_size, validate, with_max_length
from sentlab.data import SentimentData, load_data
from sentlab.errors import ConfigError
from sentlab.heads import Head, head_class, make_head
from sentlab.metrics import metrics_table
from sentlab.runs import Job, Run, Store, results
from sentlab.training import evaluate, fit, resolve_precision

log = logging.getLogger(__name__)


def run(cfg, overrides: list[str] = (), sweep_dir: str | None = None, hydra_dir: str | None = None) -> dict:
    """One configuration: its run id and metrics.

    A run of a config that was interrupted (KILLED by a signal, or RUNNING with a dead process) is resumed from
    its last checkpoint in the same MLflow run, and so is the run `resume=RUN_ID` names. A single run otherwise
    always trains. In a sweep, a job whose config already FINISHED is answered by that run (`force=true` reruns
    it), and a job that fails before its run starts is still recorded as a FAILED child run, so that the sweep's
    summary shows it.
    """
    job = Job(cfg, list(overrides), tracking.read_sweep(sweep_dir))
    if cfg.resume:
        return _resume(job, hydra_dir)
    if job.sweep is None:
        prepared = prepare(cfg)
        return _train(Store.of(cfg.tracking), job, prepared, hydra_dir)
    try:
        return _sweep_job(job, hydra_dir)
    finally:  # free the job's memory before the next one starts (hydra #2631): what reference cycles keep
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _sweep_job(job: Job, hydra_dir: str | None) -> dict:
    store = Store.of(job.cfg.tracking)
    if not job.cfg.force and (done := store.finished(job)):
        return store.reuse(job, done)
    try:
        prepared = prepare(job.cfg)
    except Exception as err:  # before its run could start: recorded as a FAILED child, for the summary
        store.record_failure(job, err)
        raise
    try:
        return _train(store, job, prepared, hydra_dir)
    except checkpoints.Stopped:  # the whole sweep stops; rerunning its command continues it
        store.client.set_terminated(job.parent, "KILLED")
        raise


def _resume(job: Job, hydra_dir: str | None) -> dict:
    """`resume=RUN_ID`: that run's logged config, trained on from its last checkpoint in the same MLflow run."""
    if job.sweep is not None:
        raise ConfigError("resume: names one run, not a sweep (rerun the sweep's own command to continue it)")
    store = Store.of(job.cfg.tracking)
    job, named = store.named(job)
    if named.info.status == "FINISHED":
        log.info(f"resume: run {named.info.run_id} ({named.info.run_name}) already FINISHED: nothing to do")
        return results(named)
    return _train(store, job, prepare(job.cfg), hydra_dir, resume=named)


@dataclass
class Prepared:
    """A job ready to train: everything that could fail on bad input has been loaded and checked."""

    cfg: object  # the config as it runs: train.max_length capped to what the backbone takes
    data: SentimentData
    head: Head  # with the tokenizer (head.tokenizer)
    device: torch.device
    quant_fallback: str | None  # why quant=int8|nf4 trains in full precision here (quant.fallback), or None


def prepare(cfg) -> Prepared:
    """Everything cheap that can fail on bad input (config values, the model's config, data files, columns,
    labels, tokenizer, label words), checked before the MLflow run starts."""
    validate(cfg)
    method = _check_method(cfg)
    quant.import_only_if_needed(cfg.quant)  # before transformers imports peft
    from transformers import set_seed

    set_seed(cfg.train.seed)
    model_config = backbones.load_config(cfg.backbone)  # an unknown source fails here, before the data loads
    head_class(cfg.head.name).check_backbone(model_config)
    data = load_data(cfg.data)
    tokenizer = backbones.load_tokenizer(cfg.backbone)
    cfg = with_max_length(cfg, backbones.max_positions(model_config, tokenizer))
    head = make_head(cfg, tokenizer, data.labels)  # checks the label words; sets the padding side it needs
    if method.name == "lexicon":
        classifiers.LexiconClassifier(cfg)  # checks the label names and VADER's settings
    head.class_weights = losses.class_weights(
        data.splits["train"]["label"], cfg.train.get("class_weights"), len(data.label_names)
    )
    return Prepared(cfg, data, head, models.pick_device(cfg.train.device), quant.check(cfg.quant))


def _check_method(cfg) -> methods.Method:
    """The method, refused in one line where it does not fit the head, the quantization or the model logged."""
    method = methods.check(models.method_of(cfg).name, cfg.head.name, cfg.quant.name)
    if cfg.tracking.get("log_model", "adapter") == "merged" and method.name in ("prefix", "prompt", "lexicon"):
        raise ConfigError(
            f"tracking.log_model=merged: method={method.name} has no weights to merge into the base "
            "(use tracking.log_model=adapter)"
        )
    return method


def _train(store: Store, job: Job, prepared: Prepared, hydra_dir: str | None, resume=None) -> dict:
    """The MLflow run of a prepared job: a new one, or `resume` (or an interrupted run of the same config)
    reopened. Anything that fails in it marks it FAILED; a stop signal marks it KILLED, with a checkpoint."""
    cfg = prepared.cfg
    if resume is None and not cfg.force:
        resume = store.interrupted(job)
    run = Run.start(store, job, _tags(job, prepared), resume)
    saved = checkpoints.Checkpoints(
        checkpoints.folder(cfg.runs_dir, run.id), cfg.train.checkpoint_every, cfg.train.keep_checkpoints
    )
    with run.closing(console.log_file()):
        if not run.resumed:
            _log_config(run, cfg, prepared.data, hydra_dir)
            if (weights := prepared.head.class_weights) is not None:  # what train.class_weights=auto computed
                run.log_params(
                    {f"class_weight.{n}": f"{w:.4g}" for n, w in zip(prepared.data.label_names, weights.tolist())}
                )
        try:
            result = _train_and_test(run, prepared, saved)
        except study.Pruned as pruned:  # its Optuna trial was stopped early, for good: KILLED, never resumed
            run.prune(pruned.epoch, cfg.train.epochs)
            run.log_metrics({f"val_{k}": v for k, v in pruned.val.items()})  # what it reached, for compare
            result = {"val": pruned.val, "test": None, "pruned_epoch": pruned.epoch}
    saved.remove()
    log.info(f"MLflow run {run.id} ({run.name}) in {cfg.tracking.uri}")
    if cfg.tracking.uri.startswith("sqlite:///"):
        make_ui = "make ui" if cfg.runs_dir == "runs" else f"make ui RUNS={cfg.runs_dir}"
        log.info(f"open it: {make_ui}, then {tracking.ui_link('http://127.0.0.1:5000', store.experiment_id, run.id)}")
    return {"run_id": run.id, **result}


def _tags(job: Job, prepared: Prepared) -> dict:
    """A new run's tags: the job's (config hash, overrides, trial) and what the run is of."""
    cfg = prepared.cfg
    run_tags = {
        **job.tags(),
        tags.BACKBONE: cfg.backbone.name,
        tags.HEAD: cfg.head.name,
        tags.DATA: cfg.data.name,
        tags.QUANT: cfg.quant.name,
    }
    if cfg.train.epochs == 0:
        run_tags[tags.ZERO_SHOT] = "true"  # the untrained model: the baseline a sweep compares against
    if prepared.quant_fallback:
        run_tags[tags.QUANT_FALLBACK] = prepared.quant_fallback
    if commit := tracking.git_commit():
        run_tags[tags.GIT_COMMIT] = commit
    return run_tags


def _log_config(run: Run, cfg, data: SentimentData, hydra_dir: str | None) -> None:
    """What a new run logs first: its config (params, YAML, Hydra's folder) and its data set."""
    run.log_params(tracking.flat_params(cfg))
    # train.batch_size is per process: a step trains on batch_size * num_processes * grad_accum examples
    run.log_params({"train.effective_batch_size": effective_batch_size(cfg.train)})
    run.log_dict(tracking.resolved(cfg), "config.yaml")
    if hydra_dir and (Path(hydra_dir) / ".hydra").is_dir():
        run.log_artifacts(str(Path(hydra_dir) / ".hydra"), "hydra")
    run.log_params(
        {
            "dataset.name": data.name,
            "dataset.source": str(data.source)[: tracking.MAX_PARAM_LENGTH],
            "dataset.label_names": ",".join(data.label_names),
            **{f"dataset.{split}_size": len(rows) for split, rows in data.splits.items()},
            **{f"dataset.{split}_dropped": n for split, n in data.dropped.items()},
        }
    )
    mlflow_model.log_inputs(run, cfg, data)


def _train_and_test(run: Run, prepared: Prepared, saved: checkpoints.Checkpoints) -> dict:
    cfg, data, head, device = prepared.cfg, prepared.data, prepared.head, prepared.device
    log.info(_describe(data))
    if models.method_of(cfg).name == "lexicon":
        return _lexicon(run, prepared)
    with saved.catch_signals():  # from here to the end of training, SIGTERM/SIGINT stop it at a checkpoint
        model = models.build(cfg, head, device)
        counts = methods.trainable_counts(model)
        run.log_metrics(counts)
        precision = resolve_precision(cfg.train.precision, device, model)
        run.log_params({"precision_used": precision})  # what train.precision=auto chose here
        log.info(
            f"model {cfg.backbone.name} ({cfg.backbone.source}): {counts['trainable_params']:,} trainable of "
            f"{counts['total_params']:,} parameters ({counts['trainable_pct']:.3f}%), on {device.type} in {precision}"
        )
        features = {split: head.encode(rows) for split, rows in data.splits.items()}
        kept = {"epoch": 0, "val": None, "train_time_s": 0.0}
        if cfg.train.epochs > 0:
            kept = _fit(run, cfg, model, head, features, device, saved)
    return evaluate_and_log(run, prepared, model, features, kept, lambda folder: methods.save(model, folder))


def evaluate_and_log(
    run: Run, prepared: Prepared, model, features: dict, kept: dict, save_adapter, evaluated: dict | None = None
) -> dict:
    """What a trained model's run logs: its kept epoch and training time, val and test (_test: metrics,
    calibration, confusion matrix, predictions, errors), what trained (save_adapter(folder) writes it) and the
    MLflow model. Also a fused group's member (sentlab.fused_pipeline), with the group's model running that
    member only, and its test evaluation already made (`evaluated`: {split: Evaluation})."""
    cfg, data, head, device = prepared.cfg, prepared.data, prepared.head, prepared.device
    run.log_metrics({"train_time_s": kept["train_time_s"], "kept_epoch": kept["epoch"]})
    results, temperature = _test(run, prepared, model, features, kept, evaluated)

    adapter_mb = _log_adapter(run, save_adapter, head.tokenizer, temperature)
    mlflow_model.log_model(run, cfg, data)
    run.log_metrics({"adapter_size_mb": adapter_mb, "peak_memory_mb": _peak_memory_mb(device)})
    return {**results, "kept_epoch": kept["epoch"], "train_time_s": kept["train_time_s"]}


def _lexicon(run: Run, prepared: Prepared) -> dict:
    """method=lexicon: no model, no training; VADER labels val and test, logged as a trained run's results are,
    with a pyfunc model that labels texts the same way."""
    data = prepared.data
    lexicon = classifiers.LexiconClassifier(prepared.cfg)
    run.log_metrics({"trainable_params": 0, "total_params": 0, "train_time_s": 0.0, "kept_epoch": 0})
    val, test = (lexicon.evaluate(data.splits[s]["text"], data.splits[s]["label"]) for s in ("val", "test"))
    results = _log_results(run, {"val": val, "test": test}, data.label_names, data.splits["test"]["text"])
    mlflow_model.log_model(run, prepared.cfg, data)
    run.log_metrics({"adapter_size_mb": 0.0, "peak_memory_mb": _peak_memory_mb(torch.device("cpu"))})
    return {**results, "kept_epoch": 0, "train_time_s": 0.0}


def _fit(run: Run, cfg, model, head, features: dict, device, saved: checkpoints.Checkpoints) -> dict:
    """training.fit, logging to the run; with train.num_processes > 1 this process is rank 0 and the others train
    beside it (sentlab.ranks); an Optuna trial reports each epoch and may be pruned (study.Pruned)."""
    trial = cfg.get("trial")
    after_epoch = study.epoch_hook(trial, cfg.train, run.id) if trial else None
    workers = (OmegaConf.create(tracking.resolved(cfg)), head, features["train"], console.log_file(), saved.path)
    with ranks.processes(cfg.train.get("num_processes", 1), device, workers):
        return fit(
            model, head, features, cfg.train, device, log_metrics=run.log_metrics, checkpoints=saved,
            after_epoch=after_epoch, method=models.method_of(cfg),
        )  # fmt: skip


def _test(run: Run, prepared: Prepared, model, features: dict, kept: dict, evaluated: dict | None) -> tuple:
    """The kept model on val and test: ({"val": metrics, "test": metrics}, temperature), logged (_log_results).
    The val metrics and predictions are the kept epoch's when it was validated during training (kept["val"],
    kept["evaluation"]), else this pass's (zero-shot, train.eval_every_epoch=false, a resumed run's earlier
    epoch); a split in `evaluated` is not evaluated again."""
    cfg, head, device = prepared.cfg, prepared.head, prepared.device
    evaluated = {"val": kept.get("evaluation"), **(evaluated or {})}
    val = evaluated["val"] or _evaluate(model, head, features["val"], cfg, device, "val")
    test = evaluated.get("test") or _evaluate(model, head, features["test"], cfg, device, "test")
    run.log_metrics(head.evaluation_metrics())  # e.g. contextual calibration's content-free probabilities
    temperature = _calibrate(run, cfg, {"val": val, "test": test})
    texts = prepared.data.splits["test"]["text"]
    return _log_results(run, {"val": val, "test": test}, head.label_names, texts, kept["val"]), temperature


def _log_results(run: Run, evaluations: dict, label_names, test_texts, kept_val: dict | None = None) -> dict:
    """Each split's metrics with the calibration (ece, nll) of the probabilities the model serves, the test's
    confusion matrix, predictions and errors (misclassified examples), all logged; the metrics returned by split."""
    val, test = evaluations["val"], evaluations["test"]
    results = {"val": kept_val or val.metrics(label_names), "test": test.metrics(label_names)}
    for split, evaluation in evaluations.items():
        results[split] = {**results[split], **calibration.summary(evaluation.log_probs, evaluation.labels)}
    reports.log_confusion(run, test, label_names)
    reports.log_predictions(run, test, label_names)
    reports.log_errors(run, test, test_texts, label_names)
    run.log_metrics({f"{split}_{k}": v for split, m in results.items() for k, v in m.items()})
    log.info(f"test ({len(test.labels)} rows):\n" + metrics_table(results["test"], label_names))
    return results


def _calibrate(run: Run, cfg, evaluations: dict) -> float:
    """train.calibration=temperature: the temperature fitted on the val evaluation, applied to every evaluation's
    log-probabilities (logged with the ECE and NLL before it as <split>_{ece,nll}_uncalibrated); 1.0 otherwise.
    Either way each split's reliability diagram is logged."""
    before = {split: (e.log_probs, e.labels) for split, e in evaluations.items()}
    temperature = 1.0
    if cfg.train.get("calibration", "none") == "temperature":
        temperature = calibration.fit_temperature(evaluations["val"].log_probs, evaluations["val"].labels)
        for evaluation in evaluations.values():
            evaluation.log_probs = calibration.scale(evaluation.log_probs, temperature)
        uncalibrated = {split: calibration.summary(*pair) for split, pair in before.items()}
        run.log_metrics({f"{s}_{k}_uncalibrated": v for s, m in uncalibrated.items() for k, v in m.items()})
        run.log_metrics({"temperature": temperature})
        log.info(f"calibration: temperature {temperature:.3f} fitted on val (train.calibration=temperature)")
    reports.log_reliability(run, evaluations, before if temperature != 1.0 else None)
    return temperature


def _evaluate(model, head, features, cfg, device, split: str):
    return evaluate(model, head, features, device, cfg.train.eval_batch_size, cfg.train.precision, split)


def _describe(data: SentimentData) -> str:
    """Rows per split with their label balance, and rows dropped."""
    from collections import Counter

    parts = []
    for split, rows in data.splits.items():
        counts = Counter(rows["label"])
        balance = ", ".join(f"{name} {counts.get(i, 0)}" for i, name in enumerate(data.label_names))
        parts.append(f"{split} {len(rows)} ({balance})")
    dropped = sum(data.dropped.values())
    return f"data {data.name}: " + "; ".join(parts) + (f"; {dropped} rows without text dropped" if dropped else "")


def _log_adapter(run: Run, save_adapter, tokenizer, temperature: float = 1.0) -> float:
    """Save what trained (save_adapter(folder): a peft adapter with the head, or the trained weights) as
    safetensors with the tokenizer and a fitted temperature (calibration.json), log it as adapter/; its size in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "adapter"
        save_adapter(folder)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        tokenizer.save_pretrained(folder)
        if temperature != 1.0:
            calibration.save(folder, temperature, fitted_on="val")
        run.log_artifacts(str(folder), "adapter")
    return size


def _peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak resident memory (KiB on Linux)
