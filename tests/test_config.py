"""Every config composes; every bad input is a one-line error naming the setting, before any run starts."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import CONF, FAST, REPO, SHARED_DATA, all_runs
from hydra import compose, initialize_config_dir


def options(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_with(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(config_name="config", overrides=list(overrides), return_hydra_config=False)


@pytest.mark.parametrize(
    "override",
    [
        f"{group}={name}"
        for group in ("backbone", "head", "quant", "lora", "data", "train", "tracking", "experiment")
        for name in options(group)
    ],
)
def test_every_config_composes_and_resolves(override):
    from omegaconf import OmegaConf

    cfg = compose_with(override)
    container = OmegaConf.to_container(cfg, resolve=True)  # every interpolation resolves
    assert container["backbone"]["source"] and container["data"]["label_names"]


def test_every_config_opens_with_the_command_that_runs_it():
    for path in CONF.rglob("*.yaml"):
        if path.parent.name == "hydra":
            continue
        lines = [line for line in path.read_text().splitlines() if line and not line.startswith("# @package")]
        first = lines[0]
        assert first.startswith("# python -m sentlab."), f"{path.relative_to(REPO)}: {first}"


BAD = [
    (["lora.r=0"], "lora.r"),
    (["lora.r=-4"], "lora.r"),
    (["lora.dropout=1.0"], "lora.dropout"),
    (["lora.dropout=-0.1"], "lora.dropout"),
    (["train.lr=0"], "train.lr"),
    (["train.lr=-1e-4"], "train.lr"),
    (["train.patience=0"], "train.patience"),
    (["train.checkpoint_every=-5"], "train.checkpoint_every"),
    (["train.keep_checkpoints=0"], "train.keep_checkpoints"),
    (["train.calibration=platt"], "train.calibration"),
    (["data.dir=/no/such/folder"], "data.dir"),
    (["data=sst2", f"data.dir={SHARED_DATA / 'sst2'}", "data.files.train=missing.tsv"], "data.files.train"),
    (["data=sst2", f"data.dir={SHARED_DATA / 'sst2'}", "data.text_column=review"], "data.text_column"),
    (["data=sst2", f"data.dir={SHARED_DATA / 'sst2'}", "data.label_column=stars"], "data.label_column"),
    (["data.label_names=[bad,good]"], "data.label_names"),
]


@pytest.mark.parametrize("overrides,setting", BAD, ids=[b[1] + ":" + b[0][-1] for b in BAD])
def test_bad_input_is_a_clear_error_and_leaves_no_run(overrides, setting, train, store, capsys):
    with pytest.raises(SystemExit) as exit_info:
        train(*overrides, *FAST)
    assert exit_info.value.code == 2
    message = capsys.readouterr().err.strip().splitlines()
    assert len(message) == 1 and message[0].startswith(f"sentlab: error: {setting}"), message
    assert all_runs(store()) == []


def test_empty_split_is_an_error(tmp_path, train, capsys):
    (tmp_path / "train.csv").write_text("text,label\ngood,positive\nbad,negative\n")
    (tmp_path / "test.csv").write_text("text,label\ngood,positive\n")
    (tmp_path / "val.csv").write_text("text,label\n,positive\n")  # only an empty row
    with pytest.raises(SystemExit):
        train("data=csv", f"data.dir={tmp_path}", "data.label_names=[negative,positive]", *FAST)
    assert "empty" in capsys.readouterr().err


def test_cli_exit_code_and_one_line(tmp_path):
    """The real command line: a bad value exits 2 with one line (unknown group options: test_bad_input.py)."""
    run = lambda *args: subprocess.run(  # noqa: E731
        [sys.executable, "-m", "sentlab.train", *args, f"runs_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    bad = run("lora.r=0")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "sentlab: error: lora.r: must be a positive integer, got 0 (e.g. lora.r=8)"
