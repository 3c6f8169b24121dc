"""One run, start to end: validate, load data and model, add LoRA, train, test, log it all to MLflow."""

from __future__ import annotations

import gc
import logging
import resource
import shlex
import sys
import tempfile
import time
from pathlib import Path

import torch
from omegaconf import OmegaConf

from sentlab import adapters, backbones, checkpoints, console, distributed, mlflow_model, quant, study, tracking
from sentlab.config import validate
from sentlab.data import load_data
from sentlab.errors import ConfigError
from sentlab.heads import head_class, make_head
from sentlab.metrics import confusion, metrics_table, plot_confusion
from sentlab.training import evaluate, fit, pick_device, resolve_precision

log = logging.getLogger(__name__)


def run(cfg, overrides: list[str] = (), sweep_dir: str | None = None, hydra_dir: str | None = None) -> dict:
    """One configuration: its run id and metrics.

    A run of a config that was interrupted (KILLED by a signal, or RUNNING with a dead process) is resumed from
    its last checkpoint in the same MLflow run, and so is the run `resume=RUN_ID` names. A single run
    otherwise always trains. In a sweep, a job whose config (its hash, tag `sentlab.config_hash`) already
    FINISHED is answered by that run (`force=true` reruns it), and a job that fails before its run starts is
    still recorded as a FAILED child run, so that the sweep's summary shows it.
    """
    sweep = tracking.read_sweep(sweep_dir)
    if cfg.resume:
        if sweep is not None:
            raise ConfigError("resume: names one run, not a sweep (rerun the sweep's own command to continue it)")
        return _resume(cfg, overrides, hydra_dir)
    if sweep is None:
        return _run(cfg, overrides, None, hydra_dir)
    experiment_id = tracking.connect(cfg.tracking)
    config_hash = tracking.config_hash(cfg)
    parent = sweep["parent_run_id"]
    if not cfg.force and (done := tracking.finished_run(experiment_id, config_hash, parent)):
        return _reuse(done, cfg, overrides, sweep, experiment_id, config_hash)
    try:
        try:
            prepared = prepare(cfg)
        except Exception as err:  # before its run could start: recorded as a FAILED child, for the summary
            try:
                params = tracking.flat_params(cfg)
            except Exception:  # an unresolvable interpolation: the error says which
                params = {}
            tags = {"sentlab.config_hash": config_hash, **_job_tags(cfg, overrides)}
            name = tracking.run_name(list(overrides), cfg, sweep)
            tracking.failed_run(experiment_id, name, parent, tags, params, err)
            raise
        return _start(cfg, prepared, overrides, sweep_dir, hydra_dir)
    except checkpoints.Stopped:  # the whole sweep stops; rerunning its command continues it
        tracking.mlflow.MlflowClient().set_terminated(parent, "KILLED")
        raise
    finally:  # free the job's memory before the next one starts (hydra #2631): what reference cycles keep
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _job_tags(cfg, overrides) -> dict:
    """The tags every run of a job carries: its overrides and, for an Optuna trial, its number in the study."""
    tags = {"sentlab.overrides": " ".join(overrides)}
    if cfg.get("trial"):
        tags["sentlab.trial"] = str(cfg.trial.number)
    return tags


def _result(run) -> dict:
    """A FINISHED run's id and metrics, as _run returns them."""
    metrics = run.data.metrics
    split = {s: {k[len(s) + 1 :]: v for k, v in metrics.items() if k.startswith(s + "_")} for s in ("val", "test")}
    return {"run_id": run.info.run_id, **split, "train_time_s": metrics.get("train_time_s")}


def _reuse(done, cfg, overrides, sweep: dict, experiment_id: str, config_hash: str) -> dict:
    """A sweep job whose config already FINISHED: not trained again. Done in another sweep or as a single run,
    it becomes a child run of this sweep that carries that run's results (tag `sentlab.reuses`)."""
    parent = sweep["parent_run_id"]
    if done.data.tags.get("mlflow.parentRunId") == parent:
        log.info(f"skip: {done.info.run_name!r} already FINISHED in this sweep (force=true reruns it)")
        return _result(done)
    name = tracking.run_name(list(overrides), cfg, sweep)
    own = ("sentlab.host", "sentlab.pid", "sentlab.resume_command", "sentlab.trial")  # that run's, not its results'
    tags = {k: v for k, v in done.data.tags.items() if k.startswith("sentlab.") and k not in own}
    tags.update(_job_tags(cfg, overrides))
    run_id = tracking.reuse_run(experiment_id, name, parent, tags, done)
    log.info(
        f"reuse: {name!r} already FINISHED as run {done.info.run_id}: child run {run_id} carries its results "
        f"(force=true reruns it)"
    )
    return {**_result(done), "run_id": run_id}


def _resume(cfg, overrides: list[str], hydra_dir: str | None) -> dict:
    """`resume=RUN_ID`: that run's logged config, trained on from its last checkpoint in the same MLflow run."""
    tracking.connect(cfg.tracking)
    client = tracking.mlflow.MlflowClient()
    try:
        run = client.get_run(str(cfg.resume))
    except tracking.mlflow.exceptions.MlflowException:
        raise ConfigError(
            f"resume: no run {cfg.resume} in {cfg.tracking.uri} (the id in the stop message or the "
            f"MLflow UI; runs_dir=... for another store)"
        ) from None
    status, run_id = run.info.status, run.info.run_id
    if status == "FINISHED":
        log.info(f"resume: run {run_id} ({run.info.run_name}) already FINISHED: nothing to do")
        return _result(run)
    if status not in ("KILLED", "RUNNING"):
        raise ConfigError(
            f"resume: run {run_id} is {status} ({run.data.tags.get('error', 'no error recorded')}); "
            f"rerun its command to train it again"
        )
    if tracking.is_alive(run):
        raise ConfigError(
            f"resume: run {run_id} is still RUNNING (pid {run.data.tags.get('sentlab.pid')} on "
            f"{run.data.tags.get('sentlab.host')}); stop it first"
        )
    if any(not tracking.is_infra(o.split("=")[0]) for o in overrides) and (
        tracking.config_hash(cfg) != run.data.tags.get("sentlab.config_hash")
    ):
        raise ConfigError(
            f"resume: the overrides given change run {run_id}'s config (resume with resume={run_id} "
            f"and infrastructure keys only)"
        )
    with tempfile.TemporaryDirectory() as tmp:
        logged = OmegaConf.load(client.download_artifacts(run_id, "config.yaml", tmp))
    # Resumed on its own, a trial's run reports to no study (rerun the sweep's command to resume it as its trial).
    logged = OmegaConf.merge(
        logged, {"runs_dir": cfg.runs_dir, "tracking": cfg.tracking, "resume": run_id, "trial": None}
    )
    return _run(logged, run.data.tags.get("sentlab.overrides", "").split(), None, hydra_dir, resume_run=run)


def _run(cfg, overrides: list[str], sweep_dir: str | None, hydra_dir: str | None, resume_run=None) -> dict:
    """Train and test one configuration; returns the run id and its metrics."""
    return _start(cfg, prepare(cfg), overrides, sweep_dir, hydra_dir, resume_run)


def prepare(cfg) -> tuple:
    """Everything cheap that can fail on bad input (config values, data files, columns, labels, tokenizer),
    checked before the MLflow run starts, so that bad input leaves no run behind."""
    validate(cfg)
    quant.import_only_if_needed(cfg.quant)  # before transformers imports peft
    from transformers import set_seed

    set_seed(cfg.train.seed)
    hashes = {
        "sentlab.config_hash": tracking.config_hash(cfg),  # of the config as asked for (what a sweep looks up)
        "sentlab.setting_hash": tracking.config_hash(cfg, seeds=False),
    }
    model_config = backbones.load_config(cfg.backbone)  # an unknown source fails here, before the data loads
    head_class(cfg.head.name).check_backbone(model_config)
    data = load_data(cfg.data)
    tokenizer = backbones.load_tokenizer(cfg.backbone)
    _cap_max_length(cfg, backbones.max_positions(model_config, tokenizer))
    head = make_head(cfg, tokenizer, data)  # sets the padding side it needs
    mlflow_model.check(cfg.tracking)
    return hashes, data, tokenizer, head, quant.quantization_config(cfg.quant), pick_device(cfg.train.device)


def _start(
    cfg, prepared: tuple, overrides: list[str], sweep_dir: str | None, hydra_dir: str | None, resume_run=None
) -> dict:
    """The MLflow run of a prepared config: a new one, or resume_run (or an interrupted run of the same config)
    resumed. Anything that fails in it marks it FAILED; a stop signal marks it KILLED, with a checkpoint."""
    hashes, data, tokenizer, head, quantization, device = prepared
    experiment_id = tracking.connect(cfg.tracking)
    tags = {
        **hashes,
        **_job_tags(cfg, overrides),
        "sentlab.backbone": cfg.backbone.name,
        "sentlab.head": cfg.head.name,
        "sentlab.data": cfg.data.name,
        "sentlab.quant": cfg.quant.name,
    }
    if cfg.train.epochs == 0:
        tags["sentlab.zero_shot"] = "true"  # the untrained model: the baseline a sweep compares against
    if fallback := quant.fallback_tag(cfg.quant, quantization):
        tags["sentlab.quant_fallback"] = fallback
    if commit := tracking.git_commit():
        tags["mlflow.source.git.commit"] = commit
    sweep = tracking.read_sweep(sweep_dir)
    name = tracking.run_name(list(overrides), cfg, sweep)
    parent = sweep["parent_run_id"] if sweep else None
    if resume_run is None and not cfg.force:
        resume_run = _interrupted(experiment_id, tags["sentlab.config_hash"], parent, cfg.runs_dir)
    if resume_run is None:
        active = tracking.mlflow.start_run(experiment_id=experiment_id, run_name=name, parent_run_id=parent, tags=tags)
    else:
        active = tracking.mlflow.start_run(run_id=resume_run.info.run_id)
        name = active.info.run_name
        for tag in ("sentlab.resume_command", "error"):  # what said how it stopped
            if tag in resume_run.data.tags:
                tracking.mlflow.MlflowClient().delete_tag(active.info.run_id, tag)
        log.info(f"resume: run {active.info.run_id} ({name}) from its last checkpoint")
    run_id = active.info.run_id
    tracking.mlflow.set_tags(tracking.process_tags())
    saved = checkpoints.Checkpoints(
        checkpoints.folder(cfg.runs_dir, run_id), cfg.train.checkpoint_every, cfg.train.keep_checkpoints
    )
    status = "FAILED"
    try:
        if resume_run is None:
            _log_config(cfg, data, hydra_dir)
        result = _train_and_log(cfg, data, head, tokenizer, quantization, device, saved)
        status = "FINISHED"
    except study.Pruned as pruned:  # its Optuna trial was stopped early, for good: KILLED, and never resumed
        status, result = "KILLED", {"val": pruned.val, "test": None, "pruned_epoch": pruned.epoch}
        tracking.mlflow.set_tag("sentlab.pruned", f"after epoch {pruned.epoch} of {cfg.train.epochs}")
        tracking.mlflow.log_metric("pruned_epoch", pruned.epoch)
    except checkpoints.Stopped as stop:
        status, stop.command = "KILLED", _resume_command(cfg, run_id, sweep)
        tracking.mlflow.set_tag("sentlab.resume_command", stop.command)
        raise
    except BaseException as err:
        tracking.mlflow.set_tag("error", f"{type(err).__name__}: {err}"[:5000])
        raise
    finally:  # the run's log file (train.log in its Hydra folder), failed runs included; a resume's beside it
        if path := console.log_file():
            folder = "logs" if resume_run is None else f"logs/resume-{time.strftime('%Y%m%d-%H%M%S')}"
            tracking.mlflow.log_artifact(path, folder)
        tracking.mlflow.end_run(status)
    saved.remove()
    log.info(f"MLflow run {run_id} ({name}) in {cfg.tracking.uri}")
    if cfg.tracking.uri.startswith("sqlite:///"):
        make_ui = "make ui" if cfg.runs_dir == "runs" else f"make ui RUNS={cfg.runs_dir}"
        log.info(f"open it: {make_ui}, then http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}")
    return {"run_id": run_id, **result}


def _interrupted(experiment_id: str, config_hash: str, parent: str | None, runs_dir: str):
    """The run of this config (in this sweep, or in none) to resume: the newest interrupted one with a
    checkpoint. An interrupted one without a checkpoint (its process died before the first) is marked FAILED."""
    client = tracking.mlflow.MlflowClient()
    for run in tracking.interrupted_runs(experiment_id, config_hash, parent):
        if checkpoints.Checkpoints(checkpoints.folder(runs_dir, run.info.run_id), None, 1).files():
            return run
        if run.info.status == "RUNNING":
            client.set_tag(run.info.run_id, "error", "its process died before its first checkpoint")
            client.set_terminated(run.info.run_id, "FAILED")
    return None


def _resume_command(cfg, run_id: str, sweep: dict | None) -> str:
    """What continues a stopped run: in a sweep, the sweep's own command again; else resume=RUN_ID."""
    if sweep:
        return "python -m sentlab.train " + shlex.join(sys.argv[1:])
    store = "" if cfg.runs_dir == "runs" else f" runs_dir={shlex.quote(str(cfg.runs_dir))}"
    return f"python -m sentlab.train resume={run_id}{store}"


def _cap_max_length(cfg, limit: int | None) -> None:
    """train.max_length above what the backbone can take would crash on the first long text: cap it, and say so."""
    if limit is not None and cfg.train.max_length > limit:
        log.warning(
            f"train.max_length={cfg.train.max_length} is more than the {limit} tokens the backbone takes: "
            f"capped to {limit}"
        )
        cfg.train.max_length = limit


def _describe(data) -> str:
    """Rows per split with their label balance, and rows dropped."""
    from collections import Counter

    parts = []
    for split, rows in data.splits.items():
        counts = Counter(rows["label"])
        balance = ", ".join(f"{name} {counts.get(i, 0)}" for i, name in enumerate(data.label_names))
        parts.append(f"{split} {len(rows)} ({balance})")
    dropped = sum(data.dropped.values())
    return f"data {data.name}: " + "; ".join(parts) + (f"; {dropped} rows without text dropped" if dropped else "")


def _log_config(cfg, data, hydra_dir) -> None:
    """What a new run logs first: its config (params, YAML, Hydra's folder) and its data set."""
    mlflow = tracking.mlflow
    mlflow.log_params(tracking.flat_params(cfg))
    # train.batch_size is per process: a step trains on batch_size * num_processes * grad_accum examples
    mlflow.log_param("train.effective_batch_size", distributed.effective_batch_size(cfg.train))
    mlflow.log_dict(tracking.resolved(cfg), "config.yaml")
    if hydra_dir and (Path(hydra_dir) / ".hydra").is_dir():
        mlflow.log_artifacts(str(Path(hydra_dir) / ".hydra"), "hydra")
    mlflow.log_params(
        {
            "dataset.name": data.name,
            "dataset.source": str(data.source)[: tracking.MAX_PARAM_LENGTH],
            "dataset.label_names": ",".join(data.label_names),
            **{f"dataset.{split}_size": len(rows) for split, rows in data.splits.items()},
            **{f"dataset.{split}_dropped": n for split, n in data.dropped.items()},
        }
    )
    mlflow_model.log_inputs(cfg, data)


def _train_and_log(cfg, data, head, tokenizer, quantization, device, saved: checkpoints.Checkpoints) -> dict:
    mlflow = tracking.mlflow
    sizes = {split: len(rows) for split, rows in data.splits.items()}
    log.info(_describe(data))

    with saved.catch_signals():  # from here to the end of training, SIGTERM/SIGINT stop it at a checkpoint
        model = load_model(cfg, head, tokenizer, quantization, device)
        counts = adapters.parameter_counts(model)
        mlflow.log_metrics(counts)
        precision = resolve_precision(cfg.train.precision, device, model)
        mlflow.log_param("precision_used", precision)  # what train.precision=auto chose here
        log.info(
            f"model {cfg.backbone.name} ({cfg.backbone.source}): {counts['trainable_params']:,} trainable of "
            f"{counts['total_params']:,} parameters ({counts['trainable_pct']:.3f}%), on {device.type} in {precision}"
        )

        features = {split: head.encode(rows) for split, rows in data.splits.items()}
        kept = {"epoch": 0, "val": None, "train_time_s": 0.0}
        if cfg.train.epochs > 0:
            # train.num_processes > 1: this process is rank 0, the others train beside it (sentlab.distributed)
            workers = (
                OmegaConf.create(tracking.resolved(cfg)),
                head,
                features["train"],
                console.log_file(),
                saved.path,
            )
            trial = cfg.get("trial")  # an Optuna trial: reports each epoch, may be pruned (raises study.Pruned)
            with distributed.processes(cfg.train.get("num_processes", 1), device, workers):
                kept = fit(
                    model,
                    head,
                    features["train"],
                    features["val"],
                    cfg.train,
                    device,
                    data.label_names,
                    log_metrics=lambda metrics, step: mlflow.log_metrics(metrics, step=step),
                    checkpoints=saved,
                    after_epoch=study.epoch_hook(trial, cfg.train, mlflow.active_run().info.run_id) if trial else None,
                )
    train_time = kept["train_time_s"]
    mlflow.log_metrics({"train_time_s": train_time, "kept_epoch": kept["epoch"]})

    results = {}
    for split in ("val", "test"):
        if split == "val" and kept["val"] is not None:
            results[split] = kept["val"]
            continue
        evaluation = evaluate(model, head, features[split], cfg.train, device, desc=split)
        results[split] = evaluation.metrics(data.label_names)
        if split == "test":
            mlflow.log_metrics(head.evaluation_metrics())  # e.g. contextual calibration's content-free probabilities
            _log_confusion(evaluation, data.label_names)
            _log_predictions(evaluation, data.label_names, "test_predictions.csv")
    mlflow.log_metrics({f"{split}_{k}": v for split, m in results.items() for k, v in m.items()})
    log.info(f"test ({sizes['test']} rows):\n" + metrics_table(results["test"], data.label_names))

    adapter_mb = _log_adapter(model, tokenizer)
    mlflow_model.log_model(cfg, data)
    peak_mb = _peak_memory_mb(device)
    mlflow.log_metrics({"adapter_size_mb": adapter_mb, "peak_memory_mb": peak_mb})
    return {"val": results["val"], "test": results["test"], "kept_epoch": kept["epoch"], "train_time_s": train_time}


def load_model(cfg, head, tokenizer, quantization, device):
    """The backbone with its head, quantized as configured, with LoRA adapters, on `device`."""
    model = backbones.load_model(
        head.model_class(), cfg.backbone, tokenizer, quantization_config=quantization, **head.model_kwargs()
    )
    model = quant.prepare(model, cfg.quant)
    return adapters.add_lora(model, cfg.lora, head.task_type).to(device)


def _log_predictions(evaluation, label_names, path: str) -> None:
    """Per-example predictions (row id, label, prediction, a probability per label): what compare's paired
    test between runs reads."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame(
        {"id": np.arange(len(evaluation.labels)), "label": evaluation.labels, "prediction": evaluation.preds}
    )
    for i, name in enumerate(label_names):
        frame[f"prob_{name}"] = np.exp(evaluation.log_probs[:, i]).round(6)
    with tempfile.TemporaryDirectory() as tmp:
        file = Path(tmp) / path
        frame.to_csv(file, index=False)
        tracking.mlflow.log_artifact(str(file))


def _log_confusion(evaluation, label_names):
    matrix = confusion(evaluation.labels, evaluation.preds, label_names)
    tracking.mlflow.log_dict({"labels": list(label_names), "matrix": matrix.tolist()}, "confusion_matrix.json")
    tracking.log_figure(plot_confusion(matrix, label_names, "test confusion matrix"), "confusion_matrix.png")


def _log_adapter(model, tokenizer) -> float:
    """Save the adapter (and head) as safetensors with the tokenizer, log it; its size in MB."""
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "adapter"
        model.save_pretrained(folder)
        size = sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20
        tokenizer.save_pretrained(folder)
        tracking.mlflow.log_artifacts(str(folder), "adapter")
    return size


def _peak_memory_mb(device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    # Peak resident memory of this process (KiB on Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
