"""Validation of a composed run config: cheap checks that run before anything heavy loads."""
from __future__ import annotations

from sentlab.errors import ConfigError


PRECISIONS = ("auto", "fp32", "bf16", "fp16")
SELECT_METRICS = ("accuracy", "f1_macro", "recall_macro", "precision_macro")  # higher is better


def _check(ok: bool, setting: str, problem: str, fix: str):
    if not ok:
        raise ConfigError(f"{setting}: {problem} ({fix})")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate(cfg) -> None:
    """Raise ConfigError naming the first bad setting; data files are checked by sentlab.data."""
    from sentlab.data import check_data_config

    lora, train = cfg.lora, cfg.train
    _check(isinstance(lora.r, int) and lora.r > 0, "lora.r", f"must be a positive integer, got {lora.r!r}", "e.g. lora.r=8")
    _check(_number(lora.alpha) and lora.alpha > 0, "lora.alpha", f"must be > 0, got {lora.alpha!r}", "e.g. lora.alpha=16")
    _check(
        _number(lora.dropout) and 0 <= lora.dropout < 1,
        "lora.dropout", f"must be in [0, 1), got {lora.dropout!r}", "e.g. lora.dropout=0.1",
    )
    _check(lora.bias in ("none", "all", "lora_only"), "lora.bias", f"unknown value {lora.bias!r}", "none, all or lora_only")
    _check(_number(train.lr) and train.lr > 0, "train.lr", f"must be > 0, got {train.lr!r}", "e.g. train.lr=5e-4")
    _check(
        isinstance(train.epochs, int) and train.epochs >= 0,
        "train.epochs", f"must be an integer >= 0, got {train.epochs!r}", "0 evaluates the untrained model",
    )
    for key in ("batch_size", "eval_batch_size", "grad_accum", "max_length", "log_every"):
        value = train[key]
        _check(
            isinstance(value, int) and value > 0,
            f"train.{key}", f"must be a positive integer, got {value!r}", f"set train.{key} to 1 or more",
        )
    for key in ("patience", "checkpoint_every"):
        value = train[key]
        _check(
            value is None or (isinstance(value, int) and value > 0),
            f"train.{key}", f"must be a positive integer or null, got {value!r}", f"e.g. train.{key}=3",
        )
    _check(
        isinstance(train.keep_checkpoints, int) and train.keep_checkpoints > 0, "train.keep_checkpoints",
        f"must be a positive integer, got {train.keep_checkpoints!r}", "e.g. train.keep_checkpoints=2",
    )
    _check(train.keep in ("best", "last"), "train.keep", f"unknown value {train.keep!r}", "best or last")
    _check(
        train.select_metric in SELECT_METRICS,
        "train.select_metric", f"unknown metric {train.select_metric!r}", " | ".join(SELECT_METRICS),
    )
    _check(
        train.precision in PRECISIONS, "train.precision", f"unknown value {train.precision!r}", " | ".join(PRECISIONS)
    )
    _check(
        _number(train.warmup_ratio) and 0 <= train.warmup_ratio < 1,
        "train.warmup_ratio", f"must be in [0, 1), got {train.warmup_ratio!r}", "e.g. 0.06",
    )
    _check(bool(cfg.backbone.source), "backbone.source", "is empty", "a hub id, a local folder or package:<module>/<folder>")
    check_data_config(cfg.data)
