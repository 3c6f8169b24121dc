"""The config layer, under everything else: where the configs live, how one is composed, and every check that
needs nothing loaded (no model, no tokenizer, no rows), so that bad input fails in one line before a run starts.

Checks that need a loaded object stay with it: the backbone's own config against the head (heads), the label
words against the tokenizer (heads.generative), the rows and columns of the data files (data), whether
bitsandbytes runs on this machine (quant).
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import OmegaConf

from sentlab.errors import ConfigError

log = logging.getLogger(__name__)

CONF_DIR = Path(__file__).resolve().parent / "conf"  # sentlab/conf/: inside the package, so a wheel carries it

HEADS = ("seq_cls", "generative")
QUANTS = ("none", "int8", "nf4")
DTYPES = ("fp32", "bf16", "fp16")
PRECISIONS = ("auto", *DTYPES)
SELECT_METRICS = ("accuracy", "f1_macro", "recall_macro", "precision_macro")  # higher is better
CALIBRATIONS = ("none", "contextual")
TEMPERATURE_CALIBRATIONS = ("none", "temperature")  # train.calibration: after training, on the validation split
LOG_MODELS = ("adapter", "merged")
PROMOTE = ("better", "not_worse", "always")  # tracking.promote: when a sweep moves @champion (sentlab.promotion)


# -- composition -----------------------------------------------------------------------------------


def compose(overrides: list[str] = ()):
    """The run config that `python -m sentlab.train OVERRIDES` would compose (outside a Hydra app)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return hydra_compose("config", overrides=list(overrides))


def check_group_choices(argv: list[str]) -> None:
    """An unknown option of a config group (`backbone=llama9`) as one line naming the choices, before Hydra
    starts (Hydra's own message is a paragraph). Values of a sweep (`backbone=a,b`) are checked one by one;
    Hydra's own groups (hydra/launcher=..., options that plugins add) are left to Hydra. A user's config folders
    (--config-dir, hydra.searchpath) add their options; a search path Hydra alone can read leaves it all to Hydra."""
    dirs = config_dirs(argv)
    for arg in argv:
        key, sep, value = arg.lstrip("+~").partition("=")
        folders = [d / key for d in dirs or () if (d / key).is_dir()]
        if not sep or key.startswith(("hydra", "-")) or not folders or not value or value == "null" or value[0] in "[(":
            continue
        choices = sorted({p.stem for folder in folders for p in folder.glob("*.yaml")})
        values = value.removeprefix("choice(").removesuffix(")").split(",")
        for unknown in [v.strip() for v in values if v.strip() not in choices]:
            where = " or ".join(f"{d}/{key}/" for d in ["sentlab/conf", *map(str, dirs[1:])])
            raise ConfigError(f"{key}: no option '{unknown}' in {where} (choose one of: {', '.join(choices)})")


def config_dirs(argv: list[str]) -> list[Path] | None:
    """sentlab's conf/, then the folders a command line adds (--config-dir/-cd DIR, hydra.searchpath=[file://DIR]);
    None when the search path has an entry that is no folder here (pkg://...)."""
    dirs = [CONF_DIR]
    for i, arg in enumerate(argv):
        name, sep, value = arg.partition("=")
        if name in ("--config-dir", "-cd"):
            value = value if sep else (argv[i + 1] if i + 1 < len(argv) else "")
            dirs.append(Path(value))
        elif name.lstrip("+") == "hydra.searchpath":
            for entry in value.strip("[]").split(","):
                entry = entry.strip().strip("'\"")
                if not entry.startswith("file://") and entry:
                    return None
                dirs.append(Path(entry.removeprefix("file://")))
    return dirs


def with_max_length(cfg, limit: int | None):
    """The config with train.max_length capped at what the backbone takes (a longer text would crash at the
    first long batch), said in a warning; the config itself is left as it is."""
    if limit is None or cfg.train.max_length <= limit:
        return cfg
    log.warning(
        f"train.max_length={cfg.train.max_length} is more than the {limit} tokens the backbone takes: capped to {limit}"
    )
    capped = cfg.copy()
    capped.train.max_length = limit
    return capped


# -- checks of a run config ------------------------------------------------------------------------


def _check(ok: bool, setting: str, problem: str, fix: str):
    if not ok:
        raise ConfigError(f"{setting}: {problem} ({fix})")


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _positive_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def validate(cfg) -> None:
    """Raise ConfigError naming the first bad setting of a composed run config."""
    _check(
        bool(cfg.backbone.source),
        "backbone.source",
        "is empty",
        "a hub id, a local folder or package:<module>/<folder>",
    )
    check_head(cfg.head)
    check_quant(cfg.quant)
    check_lora(cfg.lora)
    check_train(cfg.train)
    check_processes(cfg)
    check_tracking(cfg.tracking)
    check_data(cfg.data)


def check_head(head) -> None:
    _check(head.name in HEADS, "head", f"unknown head '{head.name}'", f"choose one of: {', '.join(HEADS)}")
    if head.name != "generative":
        return
    template = head.template
    _check(
        isinstance(template, str) and template.count("{text}") == 1,
        "head.template",
        f"must contain {{text}} exactly once, got {template!r}",
        "e.g. head.template='Review: {text}\\nSentiment:'",
    )
    calibration = head.get("calibration", "none")
    _check(calibration in CALIBRATIONS, "head.calibration", f"unknown value {calibration!r}", " | ".join(CALIBRATIONS))


def check_quant(quant) -> None:
    _check(
        quant.name in QUANTS, "quant", f"unknown quantization '{quant.name}'", "use quant=none, quant=int8 or quant=nf4"
    )
    if quant.name == "none":
        return
    _check(
        quant.fallback in ("error", "full_precision"),
        "quant.fallback",
        f"unknown value {quant.fallback!r}",
        "error or full_precision",
    )
    if quant.name == "nf4":
        _check(
            quant.quant_type in ("nf4", "fp4"),
            "quant.quant_type",
            f"unknown 4-bit type {quant.quant_type!r}",
            "nf4 or fp4",
        )
        _check(
            quant.compute_dtype in DTYPES,
            "quant.compute_dtype",
            f"unknown dtype {quant.compute_dtype!r}",
            f"one of: {', '.join(DTYPES)}",
        )


def check_lora(lora) -> None:
    _check(_positive_int(lora.r), "lora.r", f"must be a positive integer, got {lora.r!r}", "e.g. lora.r=8")
    _check(
        _number(lora.alpha) and lora.alpha > 0, "lora.alpha", f"must be > 0, got {lora.alpha!r}", "e.g. lora.alpha=16"
    )
    _check(
        _number(lora.dropout) and 0 <= lora.dropout < 1,
        "lora.dropout",
        f"must be in [0, 1), got {lora.dropout!r}",
        "e.g. lora.dropout=0.1",
    )
    _check(
        lora.bias in ("none", "all", "lora_only"), "lora.bias", f"unknown value {lora.bias!r}", "none, all or lora_only"
    )


def check_train(train) -> None:
    _check(_number(train.lr) and train.lr > 0, "train.lr", f"must be > 0, got {train.lr!r}", "e.g. train.lr=5e-4")
    _check(
        isinstance(train.epochs, int) and train.epochs >= 0,
        "train.epochs",
        f"must be an integer >= 0, got {train.epochs!r}",
        "0 evaluates the untrained model",
    )
    for key in ("batch_size", "eval_batch_size", "grad_accum", "max_length", "log_every", "keep_checkpoints"):
        _check(
            _positive_int(train[key]),
            f"train.{key}",
            f"must be a positive integer, got {train[key]!r}",
            f"set train.{key} to 1 or more",
        )
    for key in ("patience", "checkpoint_every"):
        value = train[key]
        _check(
            value is None or _positive_int(value),
            f"train.{key}",
            f"must be a positive integer or null, got {value!r}",
            f"e.g. train.{key}=3",
        )
    _check(train.keep in ("best", "last"), "train.keep", f"unknown value {train.keep!r}", "best or last")
    _check(
        train.select_metric in SELECT_METRICS,
        "train.select_metric",
        f"unknown metric {train.select_metric!r}",
        " | ".join(SELECT_METRICS),
    )
    calibration = train.get("calibration", "none")
    _check(
        calibration in TEMPERATURE_CALIBRATIONS,
        "train.calibration",
        f"unknown value {calibration!r}",
        " | ".join(TEMPERATURE_CALIBRATIONS),
    )
    _check(
        train.precision in PRECISIONS, "train.precision", f"unknown value {train.precision!r}", " | ".join(PRECISIONS)
    )
    _check(
        _number(train.warmup_ratio) and 0 <= train.warmup_ratio < 1,
        "train.warmup_ratio",
        f"must be in [0, 1), got {train.warmup_ratio!r}",
        "e.g. 0.06",
    )


def check_processes(cfg) -> None:
    """train.num_processes: a positive integer; more than one needs a GPU each on CUDA, and no quantization."""
    n, device = cfg.train.get("num_processes", 1), str(cfg.train.device)
    _check(
        _positive_int(n),
        "train.num_processes",
        f"must be a positive integer, got {n!r}",
        "1 trains in this process; N > 1 data-parallel in N processes",
    )
    if n == 1:
        return
    _check(
        cfg.quant.name == "none",
        "train.num_processes",
        f"={n} cannot train a quantized model (quant={cfg.quant.name}): bitsandbytes' quantized weights are not "
        f"supported with DDP here",
        "use quant=none, or train.num_processes=1",
    )
    _check(
        device in ("auto", "cpu", "cuda"),
        "train.num_processes",
        f"={n} with train.device={device}: the ranks pick their devices themselves (rank r on cuda:r, or the cpu)",
        "use train.device=auto, cuda or cpu",
    )
    import torch

    if device == "cuda" or (device == "auto" and torch.cuda.is_available()):
        gpus = torch.cuda.device_count()
        _check(
            n <= gpus,
            "train.num_processes",
            f"={n} but this machine has {gpus} GPU(s): one process per GPU",
            f"use train.num_processes={max(gpus, 1)}, or train.device=cpu",
        )


def effective_batch_size(train) -> int:
    """Examples per optimizer step: train.batch_size is per process, like HF's per_device_train_batch_size."""
    return train.batch_size * train.get("num_processes", 1) * train.grad_accum


def check_tracking(tracking) -> None:
    log_model = tracking.get("log_model", "adapter")
    _check(log_model in LOG_MODELS, "tracking.log_model", f"unknown value {log_model!r}", " or ".join(LOG_MODELS))
    promote = tracking.get("promote", "better")
    _check(promote in PROMOTE, "tracking.promote", f"unknown value {promote!r}", " or ".join(PROMOTE))
    margin = tracking.get("promote_margin", 0.01)
    _check(
        _number(margin) and 0 <= margin < 1,
        "tracking.promote_margin",
        f"must be a number in [0, 1), got {margin!r}",
        "a test accuracy difference, e.g. 0.01",
    )


def check_sweeper(settings) -> None:
    """The plain settings of sentlab's Optuna sweeper (sentlab/conf/hydra/sweeper/optuna.yaml); its sampler, pruner and
    storage are checked where they are built (sentlab.study, the sweeper)."""
    direction = settings.direction
    _check(
        direction in ("maximize", "minimize"),
        "hydra.sweeper.direction",
        f"unknown value {direction!r}",
        "maximize or minimize",
    )
    for key in ("n_trials", "n_jobs"):
        _check(
            _positive_int(settings[key]),
            f"hydra.sweeper.{key}",
            f"must be a positive integer, got {settings[key]!r}",
            "e.g. 8",
        )


# -- the data config -------------------------------------------------------------------------------

SPLITS = ("train", "val", "test")
FORMATS = {".csv": "csv", ".tsv": "csv", ".jsonl": "json", ".json": "json", ".parquet": "parquet"}
PAIR_FORMAT = "a [texts.txt, labels.txt] pair"

# Keys a data config may leave out, and what they mean then.
DATA_DEFAULTS = {
    "name": "data",
    "hub_id": None,
    "hub_subset": None,
    "hub_splits": {},
    "dir": None,
    "files": {},
    "text_column": "text",
    "label_column": "label",
    "label_words": None,  # None: the label names themselves
    "encoding": "utf-8",  # of local text files (csv, tsv, json, txt): any Python codec, e.g. latin-1
    "val_fraction": 0.1,
    "max_samples": {},
    "seed": 0,
}


def data_settings(data) -> dict:
    """The data node as a plain dict (interpolations resolved), with defaults filled in."""
    if OmegaConf.is_config(data):
        data = OmegaConf.to_container(data, resolve=True)
    data = {**DATA_DEFAULTS, **data}
    for key in ("hub_splits", "files", "max_samples"):
        data[key] = data[key] or {}
    return data


def data_dir(data: dict) -> Path:
    return Path(data["dir"]).expanduser().resolve()  # relative to the current directory


def check_data(data, needed: tuple[str, ...] = ("train", "test")) -> None:
    """Cheap checks of a data config, reading no rows: labels, columns, splits, files that exist. `needed`: the
    splits that must be given (an evaluation needs only test)."""
    data = data_settings(data)
    names = data["label_names"]
    if not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError("data.label_names: must be a non-empty list of names, e.g. [negative, positive]")
    if len({n.lower() for n in names}) != len(names):
        raise ConfigError(f"data.label_names: names must be distinct (case-insensitive), got {show(names)}")
    words = data["label_words"]
    if words is not None and len(words) != len(names):
        raise ConfigError(
            f"data.label_words: {len(words)} words for {len(names)} label_names {show(names)}; "
            "give one word per label, in the same order (or set data.label_words=null to use the names)"
        )
    text_column = data["text_column"]
    if not (isinstance(text_column, str) or (text_column and all(isinstance(c, str) for c in text_column))):
        raise ConfigError(f"data.text_column: must be a column name or a list of names, got {text_column!r}")
    for split, n in data["max_samples"].items():
        if split not in SPLITS or not (n is None or _positive_int(n)):
            raise ConfigError(
                f"data.max_samples.{split}: must be a positive number of rows or null, for train/val/test"
            )

    if data["dir"] is not None:
        wanted = _check_files(data, needed)
    elif data["hub_id"] is not None:
        wanted = _check_hub_splits(data, needed)
    else:
        raise ConfigError(
            f"data.dir: no data source for data '{data['name']}': data.dir and data.hub_id are both null "
            "(set data.dir to the folder that holds the data files, or data.hub_id to a hub data set)"
        )
    if "train" in needed and "val" not in wanted and not 0 < data["val_fraction"] < 1:
        raise ConfigError(
            f"data.val_fraction: must be between 0 and 1 to carve val from train, got {data['val_fraction']}"
        )


def _check_files(data: dict, needed: tuple[str, ...]) -> set[str]:
    """Check that the folder and every configured file exist; return the splits given."""
    folder = data_dir(data)
    if folder.is_file():
        raise ConfigError(
            f"data.dir: {folder} is a file, not a folder (set data.dir={folder.parent} and "
            f"data.files.train={folder.name}, and the other splits' files)"
        )
    if not folder.is_dir():
        raise ConfigError(
            f"data.dir: folder not found: {folder} (set data.dir to the folder that holds the data files; "
            f"a relative path is taken from the current directory {Path.cwd()})"
        )
    files = {split: name for split, name in data["files"].items() if name is not None}
    for split, name in files.items():
        setting = f"data.files.{split}"
        if split not in SPLITS:
            raise ConfigError(f"{setting}: unknown split '{split}' (use train, val and test)")
        names = [name] if isinstance(name, str) else list(name)
        if not isinstance(name, str) and len(names) != 2:
            raise ConfigError(f"{setting}: a list must be {PAIR_FORMAT}, got {names}")
        if isinstance(name, str) and Path(name).suffix.lower() not in FORMATS:
            raise ConfigError(f"{setting}: unknown format of '{name}' (use {', '.join(FORMATS)} or {PAIR_FORMAT})")
        for file_name in names:
            if not (folder / file_name).is_file():
                raise ConfigError(
                    f"{setting}: file not found: {folder / file_name} "
                    f"(set data.dir to the folder that holds it, or {setting} to its name)"
                )
    for split in needed:
        if split not in files:
            raise ConfigError(
                f"data.files.{split}: no {split} file given (set data.files.{split} to a file in {folder})"
            )
    return set(files)


def _check_hub_splits(data: dict, needed: tuple[str, ...]) -> set[str]:
    hub_splits = {split: name for split, name in data["hub_splits"].items() if name is not None}
    for split in hub_splits:
        if split not in SPLITS:
            raise ConfigError(f"data.hub_splits.{split}: unknown split '{split}' (use train, val and test)")
    for split in needed:
        if split not in hub_splits:
            raise ConfigError(
                f"data.hub_splits.{split}: no {split} split given (set it to a split of {data['hub_id']}, e.g. {split})"
            )
    return set(hub_splits)


def show(names) -> str:
    return "[" + ", ".join(str(n) for n in names) + "]"
