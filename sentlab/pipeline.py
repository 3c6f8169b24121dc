"""One run, start to end: validate, load data and model, add LoRA, train, test, log it all to MLflow."""
from __future__ import annotations

import gc
import logging
import resource
import tempfile
import time
from pathlib import Path

import torch

from sentlab import adapters, backbones, console, mlflow_model, quant, tracking
from sentlab.config import validate
from sentlab.data import load_data
from sentlab.heads import head_class, make_head
from sentlab.metrics import confusion, metrics_table, plot_confusion
from sentlab.training import evaluate, fit, pick_device

log = logging.getLogger(__name__)


def run(cfg, overrides: list[str] = (), sweep_dir: str | None = None, hydra_dir: str | None = None) -> dict:
    """One configuration: its run id and metrics. A single run always trains. In a sweep, a job whose config
    (its hash, tag `sentlab.config_hash`) already has a FINISHED run in the experiment is skipped and returns
    that run's metrics (`force=true` reruns it), and a job that fails before its run starts is still
    recorded as a FAILED child run, so that the sweep's summary shows it.
    """
    sweep = tracking.read_sweep(sweep_dir)
    if sweep is None:
        return _run(cfg, overrides, sweep_dir, hydra_dir)
    experiment_id = tracking.connect(cfg.tracking)
    config_hash = tracking.config_hash(cfg)
    if not cfg.get("force", False) and (done := tracking.finished_run(experiment_id, config_hash)):
        return _skip(done, sweep_dir, config_hash)
    try:
        return _run(cfg, overrides, sweep_dir, hydra_dir)
    except Exception as err:
        if not tracking.has_child(experiment_id, sweep["parent_run_id"], config_hash):  # failed before its run
            try:
                params = tracking.flat_params(cfg)
            except Exception:  # an unresolvable interpolation: the error says which
                params = {}
            tags = {"sentlab.config_hash": config_hash, "sentlab.overrides": " ".join(overrides)}
            name = tracking.run_name(list(overrides), cfg, sweep)
            tracking.failed_run(experiment_id, name, sweep["parent_run_id"], tags, params, err)
        raise
    finally:  # free the job's memory before the next one starts (hydra #2631): what reference cycles keep
        gc.collect()
        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _skip(done, sweep_dir: str, config_hash: str) -> dict:
    """A sweep job whose config already has a FINISHED run: noted for the sweep's summary, not rerun."""
    metrics = done.data.metrics
    log.info(f"skip: {done.info.run_name!r} already FINISHED as run {done.info.run_id} (force=true reruns it)")
    tracking.note_skipped(sweep_dir, config_hash, done)
    split = {s: {k[len(s) + 1:]: v for k, v in metrics.items() if k.startswith(s + "_")} for s in ("val", "test")}
    return {"run_id": done.info.run_id, "skipped": True, **split, "train_time_s": metrics.get("train_time_s")}


def _run(cfg, overrides: list[str], sweep_dir: str | None, hydra_dir: str | None) -> dict:
    """Train and test one configuration; returns the run id and its metrics.

    Everything cheap that can fail on bad input (config values, data files,
    columns, labels, tokenizer) is checked before the MLflow run starts, so bad
    input leaves no run behind; anything that fails later marks the run FAILED.
    """
    validate(cfg)
    quant.import_only_if_needed(cfg.quant)  # before transformers imports peft
    from transformers import set_seed

    set_seed(cfg.train.seed)
    hashes = {"sentlab.config_hash": tracking.config_hash(cfg),  # of the config as asked for (what a sweep looks up)
              "sentlab.setting_hash": tracking.config_hash(cfg, seeds=False)}
    model_config = backbones.load_config(cfg.backbone)  # an unknown source fails here, before the data loads
    head_class(cfg.head.name).check_backbone(model_config)
    data = load_data(cfg.data)
    tokenizer = backbones.load_tokenizer(cfg.backbone)
    _cap_max_length(cfg, backbones.max_positions(model_config, tokenizer))
    head = make_head(cfg, tokenizer, data)  # sets the padding side it needs
    quantization = quant.quantization_config(cfg.quant)
    device = pick_device(cfg.train.device)
    mlflow_model.check(cfg.tracking)

    experiment_id = tracking.connect(cfg.tracking)
    tags = {
        **hashes,
        "sentlab.overrides": " ".join(overrides),
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
    with tracking.mlflow.start_run(
        experiment_id=experiment_id, run_name=name, parent_run_id=parent, tags=tags
    ) as active:
        try:
            result = _train_and_log(cfg, data, head, tokenizer, quantization, device, hydra_dir)
        except BaseException as err:
            tracking.mlflow.set_tag("error", f"{type(err).__name__}: {err}"[:5000])
            raise
        finally:  # the run's log file (train.log in its Hydra folder), failed runs included
            if path := console.log_file():
                tracking.mlflow.log_artifact(path, "logs")
        run_id = active.info.run_id
    log.info(f"MLflow run {run_id} ({name}) in {cfg.tracking.uri}")
    if cfg.tracking.uri.startswith("sqlite:///"):
        make_ui = "make ui" if cfg.runs_dir == "runs" else f"make ui RUNS={cfg.runs_dir}"
        log.info(f"open it: {make_ui}, then http://127.0.0.1:5000/#/experiments/{experiment_id}/runs/{run_id}")
    return {"run_id": run_id, **result}


def _cap_max_length(cfg, limit: int | None) -> None:
    """train.max_length above what the backbone can take would crash on the first long text: cap it, and say so."""
    if limit is not None and cfg.train.max_length > limit:
        log.warning(f"train.max_length={cfg.train.max_length} is more than the {limit} tokens the backbone takes: "
                    f"capped to {limit}")
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


def _train_and_log(cfg, data, head, tokenizer, quantization, device, hydra_dir) -> dict:
    mlflow = tracking.mlflow
    mlflow.log_params(tracking.flat_params(cfg))
    mlflow.log_dict(tracking.resolved(cfg), "config.yaml")
    if hydra_dir and (Path(hydra_dir) / ".hydra").is_dir():
        mlflow.log_artifacts(str(Path(hydra_dir) / ".hydra"), "hydra")
    sizes = {split: len(rows) for split, rows in data.splits.items()}
    mlflow.log_params(
        {
            "dataset.name": data.name,
            "dataset.source": str(data.source)[: tracking.MAX_PARAM_LENGTH],
            "dataset.label_names": ",".join(data.label_names),
            **{f"dataset.{split}_size": n for split, n in sizes.items()},
            **{f"dataset.{split}_dropped": n for split, n in data.dropped.items()},
        }
    )
    mlflow_model.log_inputs(cfg, data)
    log.info(_describe(data))

    model = backbones.load_model(
        head.model_class(), cfg.backbone, tokenizer, quantization_config=quantization, **head.model_kwargs()
    )
    model = quant.prepare(model, cfg.quant)
    model = adapters.add_lora(model, cfg.lora, head.task_type).to(device)
    counts = adapters.parameter_counts(model)
    mlflow.log_metrics(counts)
    log.info(
        f"model {cfg.backbone.name} ({cfg.backbone.source}): {counts['trainable_params']:,} trainable of "
        f"{counts['total_params']:,} parameters ({counts['trainable_pct']:.3f}%), on {device.type}"
    )

    features = {split: head.encode(rows) for split, rows in data.splits.items()}
    start = time.perf_counter()
    kept = {"epoch": 0, "val": None}
    if cfg.train.epochs > 0:
        kept = fit(
            model, head, features["train"], features["val"], cfg.train, device, data.label_names,
            log_metrics=lambda metrics, step: mlflow.log_metrics(metrics, step=step),
        )
    train_time = time.perf_counter() - start
    mlflow.log_metrics({"train_time_s": train_time, "kept_epoch": kept["epoch"]})

    results = {}
    for split in ("val", "test"):
        if split == "val" and kept["val"] is not None:
            results[split] = kept["val"]
            continue
        evaluation = evaluate(model, head, features[split], cfg.train, device, desc=split)
        results[split] = evaluation.metrics(data.label_names)
        if split == "test":
            _log_confusion(evaluation, data.label_names)
            _log_predictions(evaluation, data.label_names, "test_predictions.csv")
    mlflow.log_metrics({f"{split}_{k}": v for split, m in results.items() for k, v in m.items()})
    log.info(f"test ({sizes['test']} rows):\n" + metrics_table(results["test"], data.label_names))

    adapter_mb = _log_adapter(model, tokenizer)
    mlflow_model.log_model(cfg, data)
    peak_mb = _peak_memory_mb(device)
    mlflow.log_metrics({"adapter_size_mb": adapter_mb, "peak_memory_mb": peak_mb})
    return {"val": results["val"], "test": results["test"], "kept_epoch": kept["epoch"], "train_time_s": train_time}


def _log_predictions(evaluation, label_names, path: str) -> None:
    """Per-example predictions (row id, label, prediction, a probability per label): what compare's paired
    test between runs reads."""
    import numpy as np
    import pandas as pd

    frame = pd.DataFrame({"id": np.arange(len(evaluation.labels)), "label": evaluation.labels,
                          "prediction": evaluation.preds})
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
