"""Bad input a user will hit: one line on stderr naming the setting and the fix, exit code 2, no run left behind;
what can only fail during training: a FAILED run with the error, and the same one line (exit code 1)."""

from __future__ import annotations

import logging
import subprocess
import sys

import pytest
from conftest import CONF, FAST, REPO, all_runs, tiny_args


@pytest.fixture
def bad_files(tmp_path):
    """A folder per kind of bad file, each with a good val and test file beside the bad train file."""

    def folder(name: str, train: bytes):
        path = tmp_path / name
        path.mkdir()
        (path / "train.csv").write_bytes(train)
        for split in ("val", "test"):
            (path / f"{split}.csv").write_text("text,label\ngood,positive\nbad,negative\nfine,neutral\n")
        return path

    good = b"text,label\n" + b"".join(
        b"review %d,%s\n" % (i, w) for i, w in enumerate([b"positive", b"negative", b"neutral"] * 4)
    )
    return {
        "header_only": folder("header_only", b"text,label\n"),
        "latin1": folder("latin1", good + b"caf\xe9 au lait was great,positive\n"),
        "float_labels": folder("float_labels", b"text,label\ngood,0.9\nbad,0.1\nokay,0.5\n"),
        "numeric_text": folder("numeric_text", b"text,label\n1,positive\n2,negative\n3,neutral\n"),
        "one_class": folder("one_class", b"text,label\n" + b"".join(b"nice %d,positive\n" % i for i in range(12))),
        "good": folder("good", good),
    }


def one_error_line(capsys) -> str:
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("sentlab: error: ")
    return lines[0].removeprefix("sentlab: error: ")


def assert_refused(train, store, capsys, args, setting: str, words: list[str]) -> None:
    """The run is refused: exit code 2, one line naming `setting` with all of `words`, no run in the store."""
    with pytest.raises(SystemExit) as exit_info:
        train(*args)
    assert exit_info.value.code == 2
    line = one_error_line(capsys)
    assert line.startswith(setting), line
    for word in words:
        assert word in line, (word, line)
    assert all_runs(store()) == []


BAD_FILES = [  # (folder, extra overrides, the setting named, words the line must contain)
    ("header_only", [], "data.files.train", ["header_only/train.csv", "no rows"]),
    ("latin1", [], "data.encoding", ["latin1/train.csv line 14", "0xe9", "data.encoding=latin-1"]),
    ("float_labels", [], "data.label_column", ["fractional", "0.1"]),
    ("numeric_text", [], "data.text_column", ["column 'text'", "int64"]),
]


@pytest.mark.parametrize("name,extra,setting,words", BAD_FILES, ids=[b[0] for b in BAD_FILES])
def test_bad_files(name, extra, setting, words, bad_files, tiny_models, train, store, capsys):
    args = ["data=csv", f"data.dir={bad_files[name]}", *extra, *tiny_args(tiny_models, "bert"), *FAST]
    assert_refused(train, store, capsys, args, setting, words)


BAD_SETTINGS = [  # (overrides, the setting named, words the line must contain)
    (["backbone.source=nobody/no-such-model"], "backbone.source", ["not a local folder", "hub", "backbone=minilm"]),
    (["head=generative"], "head", ["needs a decoder", "bert encoder", "head=seq_cls"]),
    (["data.dir=DEMO/train.csv"], "data.dir", ["is a file", "data.files.train=train.csv"]),
]


@pytest.mark.parametrize("overrides,setting,words", BAD_SETTINGS, ids=[b[1] for b in BAD_SETTINGS])
def test_bad_settings(overrides, setting, words, tiny_models, train, store, capsys):
    demo = REPO / "sentlab" / "demo_data"
    args = [*tiny_args(tiny_models, "bert"), *[o.replace("DEMO", str(demo)) for o in overrides], *FAST]
    assert_refused(train, store, capsys, args, setting, words)


def test_a_file_in_another_encoding_reads_with_data_encoding(bad_files, tiny_models, train, store):
    train(
        "data=csv", f"data.dir={bad_files['latin1']}", "data.encoding=latin-1", *tiny_args(tiny_models, "bert"), *FAST
    )
    (run,) = all_runs(store())
    assert run.info.status == "FINISHED" and run.data.params["dataset.train_size"] == "13"  # the café row read


def test_train_without_some_class_is_a_warning(bad_files, caplog):
    from omegaconf import OmegaConf

    from sentlab.data import load_data

    cfg = OmegaConf.merge(OmegaConf.load(CONF / "data" / "csv.yaml"), {"dir": str(bad_files["one_class"]), "seed": 0})
    with caplog.at_level(logging.WARNING, logger="sentlab.data"):
        load_data(cfg)
    (record,) = [r for r in caplog.records if r.name == "sentlab.data"]
    assert "no train rows of [negative, neutral]" in record.getMessage()


def test_max_length_beyond_the_model_is_capped(tiny_models, train, store, capsys):
    train(*tiny_args(tiny_models, "bert"), *FAST, "train.max_length=100000")
    (run,) = all_runs(store())
    assert run.info.status == "FINISHED"
    assert run.data.params["train.max_length"] == "512"  # the tiny BERT's (and MiniLM tokenizer's) limit
    out = capsys.readouterr().out
    assert "train.max_length=100000 is more than the 512 tokens the backbone takes: capped to 512" in out


def test_nan_loss_is_one_line_and_a_failed_run(tiny_models, train, store, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(*tiny_args(tiny_models, "bert"), *FAST, "train.lr=1e6")
    assert exit_info.value.code == 1
    line = one_error_line(capsys)
    assert line.startswith("train loss is nan") and "lower train.lr" in line, line
    (run,) = all_runs(store())
    assert run.info.status == "FAILED" and run.data.tags["error"].startswith("RunError: train loss is nan")


def test_unknown_group_option_on_the_command_line(tmp_path):
    """Checked before Hydra starts: one line naming the group's options, for a plain value and in a sweep list."""
    for arg in ("backbone=llama9", "backbone=minilm,llama9"):
        run = subprocess.run(
            [sys.executable, "-m", "sentlab.train", arg, f"runs_dir={tmp_path}"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 2
        assert run.stderr.strip() == (
            "sentlab: error: backbone: no option 'llama9' in sentlab/conf/backbone/ (choose one of: distilbert, "
            "gpt_neo, minilm, mpnet, pythia, roberta, smollm2)"
        )
    assert not (tmp_path / "mlflow.db").exists()
