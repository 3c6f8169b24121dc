"""sentlab.data: every data config and file format through load_data, and every config error.

Real data comes from ../shared/data (never copied into the repo); max_samples keeps it fast.
"""

import json
import logging
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from omegaconf import OmegaConf

from sentlab.config import SPLITS
from sentlab.config import check_data as check_data_config
from sentlab.data import load_data
from sentlab.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "sentlab" / "conf"
SHARED_DATA = Path(__file__).parents[1].parent / "shared" / "data"
DATA_CONFIGS = sorted(p.stem for p in (CONF / "data").glob("*.yaml"))

needs_shared_data = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason=f"no shared data at {SHARED_DATA}")


def data_cfg(name: str, **overrides):
    """conf/data/<name>.yaml on its own, with the seed (an interpolation into train) set."""
    return OmegaConf.merge(OmegaConf.load(CONF / "data" / f"{name}.yaml"), {"seed": 0}, overrides)


def write_csv(path: Path, rows, header=("text", "label")) -> None:
    import csv

    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def assert_text_label(data) -> None:
    """The contract: splits train/val/test, columns exactly text (str) and label (int id)."""
    assert list(data.splits) == list(SPLITS) and list(data.dropped) == list(SPLITS)
    for split, ds in data.splits.items():
        assert ds.column_names == ["text", "label"], split
        assert len(ds) > 0, split
        row = ds[0]
        assert isinstance(row["text"], str) and row["text"], split
        assert isinstance(row["label"], int) and 0 <= row["label"] < len(data.label_names), split
        assert set(ds.unique("label")) <= set(range(len(data.label_names))), split


# --- every config and format ------------------------------------------------------------------


def test_every_data_config_has_the_schema():
    keys = None
    for name in DATA_CONFIGS:
        text = (CONF / "data" / f"{name}.yaml").read_text()
        assert text.startswith("# python -m sentlab.train"), f"{name}.yaml must open with a command that uses it"
        cfg = OmegaConf.load(CONF / "data" / f"{name}.yaml")
        assert cfg.name == name
        assert keys is None or set(cfg) == keys, name
        keys = set(cfg)
        assert set(cfg.max_samples) == set(SPLITS) and set(cfg.files) == set(SPLITS), name
    assert {
        "demo",
        "sst2",
        "imdb",
        "rotten_tomatoes",
        "tweet_eval",
        "amazon_polarity",
        "amazon_multidomain",
        "csv",
    } <= set(DATA_CONFIGS)


@pytest.mark.parametrize("name", DATA_CONFIGS)
def test_configs_compose_and_check(name):
    """Composed into the run config (seed from train.seed): hub configs pass; local-only ones ask for data.dir."""
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"data={name}"])
    assert cfg.data.seed == cfg.train.seed
    assert list(cfg.data.label_words) == list(cfg.data.label_names)
    if cfg.data.dir is None and cfg.data.hub_id is None:
        with pytest.raises(ConfigError, match=r"^data\.dir: "):
            check_data_config(cfg.data)
    else:
        check_data_config(cfg.data)


def test_demo():
    data = load_data(data_cfg("demo"))
    assert_text_label(data)
    assert data.name == "demo" and Path(data.source) == REPO / "sentlab" / "demo_data"
    assert data.label_names == data.label_words == ["negative", "neutral", "positive"]
    assert {split: len(ds) for split, ds in data.splits.items()} == {"train": 450, "val": 120, "test": 120}
    for ds in data.splits.values():  # balanced
        assert len(set(Counter(ds["label"]).values())) == 1
    texts = [t for ds in data.splits.values() for t in ds["text"]]
    assert len(texts) == len(set(texts))  # no duplicates, within or across splits


def test_demo_csvs_are_what_the_generator_writes(tmp_path):
    from sentlab.demo_data import generate

    generate.write(tmp_path)
    for split in SPLITS:
        assert (tmp_path / f"{split}.csv").read_text() == (REPO / "sentlab" / "demo_data" / f"{split}.csv").read_text()


@needs_shared_data
def test_sst2_tsv():
    data = load_data(data_cfg("sst2", dir=str(SHARED_DATA / "sst2"), max_samples={"train": 300, "test": 200}))
    assert_text_label(data)
    assert {split: len(ds) for split, ds in data.splits.items()} == {"train": 300, "val": 872, "test": 200}
    assert Counter(data.splits["val"]["label"]) == {1: 444, 0: 428}  # GLUE dev figures
    assert data.source == str((SHARED_DATA / "sst2").resolve())  # ../shared may be a link


@needs_shared_data
def test_imdb_jsonl_val_carved_stratified():
    data = load_data(data_cfg("imdb", dir=str(SHARED_DATA / "imdb"), max_samples={"train": 200, "test": 100}))
    assert_text_label(data)
    assert Counter(data.splits["val"]["label"]) == {0: 1250, 1: 1250}  # 10% of a balanced 25,000, stratified
    assert len(data.splits["train"]) == 200 and len(data.splits["test"]) == 100
    assert data.dropped == {"train": 0, "val": 0, "test": 0}


@needs_shared_data
def test_rotten_tomatoes_jsonl():
    data = load_data(data_cfg("rotten_tomatoes", dir=str(SHARED_DATA / "rotten_tomatoes"), max_samples={"train": 200}))
    assert_text_label(data)
    assert {split: len(ds) for split, ds in data.splits.items()} == {"train": 200, "val": 1066, "test": 1066}


@needs_shared_data
def test_tweet_eval_text_label_pairs():
    data = load_data(data_cfg("tweet_eval", dir=str(SHARED_DATA / "tweet_eval_sentiment"), max_samples={"test": 300}))
    assert_text_label(data)
    assert len(data.splits["train"]) + len(data.splits["val"]) == 2000  # val carved from the 2,000 val tweets
    assert len(data.splits["val"]) == 200 and len(data.splits["test"]) == 300
    for ds in data.splits.values():
        assert set(ds.unique("label")) == {0, 1, 2}


@needs_shared_data
def test_amazon_multidomain_jsonl():
    data = load_data(data_cfg("amazon_multidomain", dir=str(SHARED_DATA / "amazon_multidomain")))
    assert_text_label(data)
    assert {split: len(ds) for split, ds in data.splits.items()} == {"train": 1530, "val": 170, "test": 300}
    assert "\n" in data.splits["test"][0]["text"]  # title, then the review


def test_csv_config_with_string_labels(tmp_path):
    write_csv(
        tmp_path / "train.csv", [(f"review number {i}", ["Negative", "neutral", "POSITIVE "][i % 3]) for i in range(30)]
    )
    write_csv(tmp_path / "val.csv", [("bad, really", "negative"), ("fine", "neutral"), ("NA", "positive")])
    write_csv(tmp_path / "test.csv", [("awful", "negative"), ("great", "positive")])
    data = load_data(data_cfg("csv", dir=str(tmp_path)))
    assert_text_label(data)
    assert data.splits["val"]["text"] == ["bad, really", "fine", "NA"]  # quoted commas; "NA" is text, not missing
    assert data.splits["val"]["label"] == [0, 1, 2]
    assert data.splits["train"]["label"][:3] == [0, 1, 2]  # names matched case-insensitively


def test_parquet_and_joined_text_columns(tmp_path):
    from datasets import Dataset

    rows = {
        "title": ["Great", "Broken", None, "Meh"],
        "content": ["love it", "returned it", "no title", ""],
        "stars": [1, 0, 1, 0],
    }
    for split in SPLITS:
        Dataset.from_dict(rows).to_parquet(tmp_path / f"{split}.parquet")
    files = {split: f"{split}.parquet" for split in SPLITS}
    data = load_data(
        data_cfg(
            "csv",
            dir=str(tmp_path),
            files=files,
            text_column=["title", "content"],
            label_column="stars",
            label_names=["negative", "positive"],
        )
    )
    assert_text_label(data)
    assert data.splits["test"]["text"] == ["Great\nlove it", "Broken\nreturned it", "no title", "Meh"]
    assert data.splits["test"]["label"] == [1, 0, 1, 0]


def test_hub_path_maps_columns_like_files(monkeypatch):
    """The hub branch (datasets.load_dataset(hub_id, subset, split=...)), with the hub faked."""
    import datasets

    calls = []

    def fake_load_dataset(path, name=None, split=None):
        calls.append((path, name, split))
        return datasets.Dataset.from_dict(
            {"sentence": [f"{split} text {i}" for i in range(20)], "label": [0, 1] * 10, "idx": list(range(20))}
        )

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    data = load_data(data_cfg("sst2"))
    assert calls == [("nyu-mll/glue", "sst2", "train"), ("nyu-mll/glue", "sst2", "validation")]
    assert data.source == "nyu-mll/glue/sst2"
    assert_text_label(data)
    assert len(data.splits["train"]) == 18 and len(data.splits["val"]) == 2  # val carved from the hub's train
    assert data.splits["test"][0]["text"] == "validation text 0"


# --- dropped rows, seeds ----------------------------------------------------------------------


def test_empty_and_non_string_texts_are_dropped_and_counted(tmp_path, caplog):
    lines = [
        {"text": "good", "label": 1},
        {"text": "", "label": 0},
        {"text": "   ", "label": 0},
        {"text": None, "label": 1},
        {"text": "bad", "label": 0},
    ]
    for split in SPLITS:
        (tmp_path / f"{split}.jsonl").write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    files = {split: f"{split}.jsonl" for split in SPLITS}
    with caplog.at_level(logging.WARNING, logger="sentlab.data"):
        data = load_data(data_cfg("csv", dir=str(tmp_path), files=files, label_names=["negative", "positive"]))
    assert data.dropped == {"train": 3, "val": 3, "test": 3}
    assert data.splits["test"]["text"] == ["good", "bad"]
    assert "dropped 3 of 5 train rows" in caplog.text


def test_carved_split_is_seeded(tmp_path):
    write_csv(tmp_path / "train.csv", [(f"text {i}", ["negative", "neutral", "positive"][i % 3]) for i in range(90)])
    write_csv(tmp_path / "test.csv", [("t", "neutral")])
    files = {"train": "train.csv", "val": None, "test": "test.csv"}

    def val_texts(seed):
        return load_data(data_cfg("csv", dir=str(tmp_path), files=files, seed=seed, val_fraction=0.2)).splits["val"][
            "text"
        ]

    assert val_texts(0) == val_texts(0)
    assert val_texts(0) != val_texts(1)
    data = load_data(data_cfg("csv", dir=str(tmp_path), files=files, val_fraction=0.2))
    assert Counter(data.splits["val"]["label"]) == {0: 6, 1: 6, 2: 6}  # stratified
    assert not set(data.splits["val"]["text"]) & set(data.splits["train"]["text"])


def test_max_samples_is_seeded():
    def train_texts(seed):
        return load_data(data_cfg("demo", seed=seed, max_samples={"train": 20})).splits["train"]["text"]

    assert train_texts(3) == train_texts(3) != train_texts(4)


# --- errors: one line, naming the setting -----------------------------------------------------


def one_line_error(cfg, setting: str) -> str:
    with pytest.raises(ConfigError) as error:
        load_data(cfg)
    message = str(error.value)
    assert message.startswith(setting + ":") and "\n" not in message, message
    return message


def test_error_missing_file(tmp_path):
    message = one_line_error(data_cfg("csv", dir=str(tmp_path)), "data.files.train")
    assert f"file not found: {tmp_path / 'train.csv'}" in message and "data.dir" in message


def test_error_missing_folder(tmp_path):
    assert "folder not found" in one_line_error(data_cfg("csv", dir=str(tmp_path / "nope")), "data.dir")


def test_error_dir_and_hub_both_null():
    assert "set data.dir" in one_line_error(data_cfg("csv"), "data.dir")


def test_error_missing_text_column(tmp_path):
    for split in SPLITS:
        write_csv(tmp_path / f"{split}.csv", [("fine", "neutral")], header=("review", "label"))
    message = one_line_error(data_cfg("csv", dir=str(tmp_path)), "data.text_column")
    assert "column 'text' not in train.csv (columns: review, label)" in message


def test_error_unknown_label(tmp_path):
    for split in SPLITS:
        write_csv(tmp_path / f"{split}.csv", [("fine", "neutral"), ("wow", "great")])
    message = one_line_error(data_cfg("csv", dir=str(tmp_path)), "data.label_names")
    assert "labels ['great'] in train" in message and "[negative, neutral, positive]" in message


def test_error_label_id_out_of_range(tmp_path):
    (tmp_path / "texts.txt").write_text("a\nb\nc\n")
    (tmp_path / "labels.txt").write_text("0\n1\n3\n")
    files = {"train": ["texts.txt", "labels.txt"], "val": None, "test": ["texts.txt", "labels.txt"]}
    message = one_line_error(data_cfg("csv", dir=str(tmp_path), files=files), "data.label_names")
    assert "labels ['3'] in train" in message


def test_error_empty_split(tmp_path):
    write_csv(tmp_path / "train.csv", [("good", "positive"), ("bad", "negative")])
    write_csv(tmp_path / "val.csv", [("fine", "neutral")])
    write_csv(tmp_path / "test.csv", [("", "neutral"), ("  ", "positive")])
    message = one_line_error(data_cfg("csv", dir=str(tmp_path)), "data")
    assert "split 'test' is empty after dropping empty rows" in message


def test_error_misaligned_pair(tmp_path):
    (tmp_path / "texts.txt").write_text("a\nb\n")
    (tmp_path / "labels.txt").write_text("0\n")
    files = {"train": ["texts.txt", "labels.txt"], "val": None, "test": ["texts.txt", "labels.txt"]}
    assert "line-aligned" in one_line_error(data_cfg("csv", dir=str(tmp_path), files=files), "data.files.train")


@pytest.mark.parametrize(
    "overrides, setting",
    [
        ({"label_names": []}, "data.label_names"),
        ({"label_names": ["pos", "POS"]}, "data.label_names"),
        ({"label_words": ["bad", "good"]}, "data.label_words"),
        ({"files": {"test": None}}, "data.files.test"),
        ({"files": {"train": "train.xlsx"}}, "data.files.train"),
        ({"files": {"val": None}, "val_fraction": 1.5}, "data.val_fraction"),
        ({"max_samples": {"train": 0}}, "data.max_samples.train"),
    ],
)
def test_check_data_config_errors(overrides, setting):
    demo = OmegaConf.merge(data_cfg("demo"), overrides)
    with pytest.raises(ConfigError, match="^" + setting.replace(".", r"\.") + ":"):
        check_data_config(demo)


def test_check_data_config_reads_nothing_heavy():
    """Validation runs before anything heavy loads: it must not import `datasets`."""
    code = (
        "import sys; from omegaconf import OmegaConf; from sentlab.config import check_data as check_data_config; "
        f"check_data_config(OmegaConf.merge(OmegaConf.load('{CONF / 'data' / 'demo.yaml'}'), {{'seed': 0}})); "
        "assert 'datasets' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)
