"""Sentiment data: train/val/test splits of (text, label) rows, from the hub or from local files.

A data config (sentlab/conf/data/*.yaml) names where the rows come from and which columns hold the
text and the label. `load_data` reads them, maps every split to exactly two columns
(`text`: str, `label`: int id into `label_names`), drops rows without text (counted, never
silently), carves a val split from train when there is none, and caps splits for quick runs.
"""

from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from sentlab.config import FORMATS, SPLITS, check_data, data_dir, data_settings, show
from sentlab.errors import ConfigError

if TYPE_CHECKING:  # `datasets` takes a second to import: only load_data imports it
    import datasets

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Labels:
    """What a head needs to know of the data: the label names (index = label id) and the words a generative
    head scores for them."""

    names: list[str]
    words: list[str]

    @classmethod
    def of(cls, data) -> Labels:
        """The labels a data config (a run's `data` node) names."""
        settings = data_settings(data)
        return cls(list(settings["label_names"]), list(settings["label_words"] or settings["label_names"]))


@dataclass
class SentimentData:
    name: str  # cfg.name
    source: str  # the hub id (with subset), or the resolved local folder
    label_names: list[str]  # index = label id
    label_words: list[str]  # verbalizers for the generative head
    splits: dict[str, datasets.Dataset]  # "train", "val", "test" (or those asked for); columns "text" and "label"
    dropped: dict[str, int]  # per split: rows dropped because their text was empty or not a string

    @property
    def labels(self) -> Labels:
        return Labels(self.label_names, self.label_words)


def load_data(cfg, only: tuple[str, ...] | None = None) -> SentimentData:
    """Load the data set a data config describes (cfg is the `data` node of the run config): train, val and test,
    or `only` the splits named (an evaluation reads its test split alone, and needs no other file)."""
    cfg = data_settings(cfg)
    if only is not None:  # the other splits' files are neither checked nor read
        cfg["files"] = {split: name for split, name in cfg["files"].items() if split in only}
        cfg["hub_splits"] = {split: name for split, name in cfg["hub_splits"].items() if split in only}
    check_data(cfg, needed=only or ("train", "test"))
    if cfg["dir"] is not None:
        source = str(data_dir(cfg))
        raw = _read_files(cfg)
    else:
        source = "/".join(filter(None, [cfg["hub_id"], cfg["hub_subset"]]))
        raw = _read_hub(cfg)

    splits, dropped = {}, {}
    for split, (table, where) in raw.items():
        splits[split] = _to_text_label(table, cfg, split, where)
        dropped[split] = len(table) - len(splits[split])
        if dropped[split]:
            log.warning(
                "data %s: dropped %d of %d %s rows whose text was empty or not a string",
                cfg["name"],
                dropped[split],
                len(table),
                split,
            )
        if len(splits[split]) == 0:
            raise ConfigError(f"data: split '{split}' is empty after dropping empty rows ({where})")

    if only is None:
        _warn_absent_labels(splits["train"], cfg)
        if "val" not in splits:
            splits["train"], splits["val"] = _carve_val(splits["train"], cfg)
            dropped["val"] = 0

    for split, n in cfg["max_samples"].items():
        if n is not None and split in splits and n < len(splits[split]):  # seeded shuffle, then the first n rows
            splits[split] = splits[split].shuffle(seed=cfg["seed"]).select(range(n))

    kept = only or SPLITS
    splits = {split: splits[split] for split in kept}
    log.debug(
        "data %s from %s: %s rows", cfg["name"], source, ", ".join(f"{split} {len(ds)}" for split, ds in splits.items())
    )
    return SentimentData(
        name=cfg["name"],
        source=source,
        label_names=list(cfg["label_names"]),
        label_words=list(cfg["label_words"] or cfg["label_names"]),
        splits=splits,
        dropped={split: dropped[split] for split in kept},
    )


def _warn_absent_labels(train: datasets.Dataset, cfg: dict) -> None:
    present = set(train.unique("label"))
    if len(present) < len(cfg["label_names"]):
        absent = [name for i, name in enumerate(cfg["label_names"]) if i not in present]
        log.warning(
            f"data {cfg['name']}: no train rows of {show(absent)}: the model cannot learn to predict "
            f"{'it' if len(absent) == 1 else 'them'} (check data.label_column and data.label_names)"
        )


# --- reading ----------------------------------------------------------------------------------


def _read_files(cfg) -> dict:
    """{split: (dataset as read, where it came from)} for each file in data.files.

    datasets' "Generating split" bars and its own error log are off while reading: local files read in about a
    second, and a file that cannot be read is one ConfigError naming it (cold cache or warm).
    """
    import datasets

    folder = data_dir(cfg)
    raw = {}
    bars_were_on = datasets.is_progress_bar_enabled()
    datasets.disable_progress_bars()
    datasets_log = logging.getLogger("datasets")
    level = datasets_log.level
    datasets_log.setLevel(logging.CRITICAL)
    try:
        for split, name in cfg["files"].items():
            if name is None:
                continue
            names = [name] if isinstance(name, str) else list(name)
            try:
                if isinstance(name, str):
                    table = _read_file(folder / name, cfg["encoding"])
                else:
                    table = _read_pair(folder / name[0], folder / name[1], split, cfg["encoding"])
            except ConfigError:
                raise
            except Exception as err:
                raise _read_error(err, [folder / n for n in names], split, cfg["encoding"]) from None
            if len(table) == 0:
                raise _no_rows(folder / names[0], split)
            raw[split] = (table, " + ".join(names))
    finally:
        datasets_log.setLevel(level)
        if bars_were_on:
            datasets.enable_progress_bars()
    return raw


def _no_rows(path: Path, split: str) -> ConfigError:
    return ConfigError(
        f"data.files.{split}: {path} has no rows (only a header, or empty); give the {split} split a file with rows"
    )


def _read_error(err: Exception, paths: list[Path], split: str, encoding: str) -> ConfigError:
    """One line for a file that could not be read: which file, which line for bad bytes, and the fix."""
    if "corresponds to no data" in str(err):
        return _no_rows(paths[0], split)
    cause = err if isinstance(err, UnicodeDecodeError) else err.__cause__
    if isinstance(cause, UnicodeDecodeError):
        for path in paths:
            with open(path, "rb") as f:
                for number, line in enumerate(f, start=1):
                    try:
                        line.decode(encoding)
                    except UnicodeDecodeError as bad:
                        return ConfigError(
                            f"data.encoding: {path} line {number} is not valid {encoding} (byte "
                            f"0x{line[bad.start]:02x} at column {bad.start + 1}); set data.encoding to the file's "
                            f"encoding, e.g. data.encoding=latin-1, or re-save the file as UTF-8"
                        )
    reason = str(cause or err).strip().splitlines()[0][:200]
    return ConfigError(f"data.files.{split}: cannot read {' + '.join(map(str, paths))}: {reason}")


def _read_file(path: Path, encoding: str) -> datasets.Dataset:
    from datasets import load_dataset

    suffix = path.suffix.lower()
    options = {} if FORMATS[suffix] == "parquet" else {"encoding": encoding}
    if FORMATS[suffix] == "csv":
        # na_filter=False keeps texts such as "NA" or "null" as written (an empty cell becomes "")
        options["na_filter"] = False
    if suffix == ".tsv":
        # TSV has no quoting: a quote character is part of the text (as in SST-2)
        options.update(delimiter="\t", quoting=csv.QUOTE_NONE)
    return load_dataset(FORMATS[suffix], data_files=str(path), split="train", **options)


def _read_pair(text_path: Path, label_path: Path, split: str, encoding: str) -> datasets.Dataset:
    """The tweet_eval format: one text a line in one file, its label on the same line of another."""
    from datasets import concatenate_datasets, load_dataset

    texts = load_dataset("text", data_files=str(text_path), split="train", encoding=encoding)
    labels = load_dataset("text", data_files=str(label_path), split="train", encoding=encoding)
    labels = labels.rename_column("text", "label")
    if len(texts) != len(labels):
        raise ConfigError(
            f"data.files.{split}: {text_path.name} has {len(texts)} lines but {label_path.name} has "
            f"{len(labels)}; the text and label files must be line-aligned"
        )
    return concatenate_datasets([texts, labels], axis=1)


def _read_hub(cfg) -> dict:
    from datasets import load_dataset

    raw = {}
    for split, hub_split in cfg["hub_splits"].items():
        if hub_split is not None:
            table = load_dataset(cfg["hub_id"], cfg["hub_subset"], split=hub_split)
            raw[split] = (table, f"{cfg['hub_id']} split '{hub_split}'")
    return raw


# --- mapping to (text, label) -----------------------------------------------------------------


def _to_text_label(table: datasets.Dataset, cfg, split: str, where: str) -> datasets.Dataset:
    """Keep only `text` (the text column(s), joined with newlines) and `label` (an id into
    label_names); rows whose text is empty or not a string are left out."""
    from datasets import ClassLabel, Features, Value

    text_columns = [cfg["text_column"]] if isinstance(cfg["text_column"], str) else list(cfg["text_column"])
    label_column = cfg["label_column"]
    for setting, column in [("text_column", c) for c in text_columns] + [("label_column", label_column)]:
        if column not in table.column_names:
            raise ConfigError(
                f"data.{setting}: column '{column}' not in {where} (columns: {', '.join(table.column_names)}); "
                f"set data.{setting}=<one of them>"
            )
    for column in text_columns:
        dtype = getattr(table.features[column], "dtype", "string")
        if dtype not in ("string", "large_string"):
            raise ConfigError(
                f"data.text_column: column '{column}' in {where} holds {dtype} values, not text; set "
                f"data.text_column to the column with the texts (columns: {', '.join(table.column_names)})"
            )
    label_ids = _label_ids(table.unique(label_column), cfg["label_names"], split, where)

    def to_text_label(batch):
        out = {"text": [], "label": []}
        for i, label in enumerate(batch[label_column]):
            parts = [batch[c][i] for c in text_columns]
            text = "\n".join(p.strip() for p in parts if isinstance(p, str) and p.strip())
            if text:
                out["text"].append(text)
                out["label"].append(label_ids[label])
        return out

    features = Features({"text": Value("string"), "label": ClassLabel(names=list(cfg["label_names"]))})
    return table.map(
        to_text_label,
        batched=True,
        remove_columns=table.column_names,
        features=features,
        desc=f"{split}: text and label",
    )


def _label_ids(values, label_names: list[str], split: str, where: str) -> dict:
    """Map each label value in the data to its id: strings by name (case-insensitive),
    integers (or strings of digits that are no name) as ids in range."""
    names = [n.lower() for n in label_names]

    def label_id(value):
        if isinstance(value, str):
            key = value.strip().lower()
            if key in names:
                return names.index(key)
            value = int(key) if key.lstrip("-").isdigit() else None
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < len(names):
            return value
        return None

    ids = {value: label_id(value) for value in values}
    unknown = sorted((v for v, i in ids.items() if i is None), key=str)
    if any(isinstance(v, float) for v in unknown):
        raise ConfigError(
            f"data.label_column: {split} ({where}) has fractional labels such as {show(unknown[:3])}: scores, "
            f"not classes; labels must be class names {show(label_names)} or ids 0..{len(label_names) - 1} "
            "(set data.label_column to the column of classes, or bin the scores into classes first)"
        )
    if unknown:
        raise ConfigError(
            f"data.label_names: labels {unknown} in {split} ({where}) are not among label_names "
            f"{show(label_names)} (fix the data or set data.label_names)"
        )
    return ids


def _carve_val(train: datasets.Dataset, cfg) -> tuple[datasets.Dataset, datasets.Dataset]:
    """Split val off train: stratified by label, seeded."""
    fraction = cfg["val_fraction"]
    try:
        parts = train.train_test_split(test_size=fraction, stratify_by_column="label", seed=cfg["seed"])
    except ValueError as error:
        reason = str(error).strip().splitlines()[0]
        raise ConfigError(
            f"data.val_fraction: cannot carve a stratified val split of {fraction} from {len(train)} train rows "
            f"({reason}); change data.val_fraction or give a val file"
        ) from None
    return parts["train"], parts["test"]
