"""sentlab.export writes the run's model card as the folder's README.md, and --push-to-hub uploads the folder
through huggingface_hub (the upload call itself patched: it needs the network)."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import FAST, all_runs, tiny_args


@pytest.fixture
def uploads(monkeypatch):
    """HfApi.upload_folder replaced by a recorder: [(kwargs, files in the folder at upload time)]."""
    from huggingface_hub import HfApi

    calls = []

    def upload_folder(self, **kwargs):
        calls.append((kwargs, sorted(p.name for p in Path(kwargs["folder_path"]).iterdir())))

    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    return calls


def test_model_card_of_a_run_with_repeats_and_its_upload(tiny_models, train, store, runs_dir, tmp_path, uploads):
    from huggingface_hub import ModelCard

    from sentlab import export

    train("-m", *tiny_args(tiny_models, "bert"), *FAST, "lora.r=4", "train.seed=1,2")
    runs = [r for r in all_runs(store()) if r.data.tags.get("sentlab.sweep") != "parent"]
    assert len(runs) == 2
    run = runs[0]
    store().log_metric(run.info.run_id, "test_ece", 0.123)  # a calibration metric, as issue 18 part 3 logs it
    out, uri = tmp_path / "card", f"sqlite:///{runs_dir}/mlflow.db"
    argv = [run.info.run_id, str(out), "--tracking-uri", uri, "--push-to-hub", "me/demo-model"]
    assert export.main(argv) == 0

    card = ModelCard.load(out / "README.md")
    assert card.data.library_name == "peft" and card.data.pipeline_tag == "text-classification"
    results = {r.metric_type: r.metric_value for r in card.data.eval_results}
    assert results["accuracy"] == round(run.data.metrics["test_accuracy"], 4)
    assert {r.dataset_name for r in card.data.eval_results} == {"demo"}
    text = card.text
    assert "LoRA r=4, alpha=16" in text and "LoRA on: query, value" in text  # the method
    assert "splits (rows): train 48, val 24, test 24" in text  # the data set's splits as logged
    assert f"| test_accuracy | {run.data.metrics['test_accuracy']:.4f} |" in text
    assert "mean over 2 seeds [95 % interval]" in text  # the setting was repeated over seeds
    assert "| test_ece | 0.1230 |" in text  # calibration
    assert f"python -m sentlab.train {run.data.tags['sentlab.overrides']}" in text and "train.seed=" in text
    assert "## Intended use and limits" in text and "synthetic demo data" in text
    assert "\nlora:\n" in text and "\n  r: 4\n" in text  # the resolved config

    ((kwargs, files),) = uploads
    assert kwargs["folder_path"] == str(out) and kwargs["repo_id"] == "me/demo-model"
    assert kwargs["repo_type"] == "model"
    assert {"README.md", "adapter_config.json", "adapter_model.safetensors", "config.json"} <= set(files)


@pytest.mark.parametrize("repo", ["no-owner", "two//slashes", "me/bad name"])
def test_a_bad_repo_id_is_refused_before_any_export(repo, tmp_path, uploads, capsys):
    from sentlab import export

    assert export.main(["NO_SUCH_RUN", str(tmp_path / "out"), "--push-to-hub", repo]) == 2
    assert "--push-to-hub" in capsys.readouterr().err and not (tmp_path / "out").exists() and not uploads


def test_a_failed_upload_is_one_line_and_the_folder_stays(
    tiny_models, train, store, runs_dir, tmp_path, monkeypatch, capsys
):
    from huggingface_hub import HfApi

    from sentlab import export

    def offline(self, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(HfApi, "upload_folder", offline)
    train(*tiny_args(tiny_models, "bert"), *FAST)
    (run,) = all_runs(store())
    out = tmp_path / "out"
    argv = [run.info.run_id, str(out), "--tracking-uri", f"sqlite:///{runs_dir}/mlflow.db", "--push-to-hub", "me/m"]
    assert export.main(argv) == 1
    assert "upload to me/m failed (no network)" in capsys.readouterr().err and (out / "README.md").exists()


def test_the_method_section_names_the_method_and_only_its_own_settings():
    """LoRA's family shows the lora.* knobs; another method shows its own settings, never LoRA's."""
    from omegaconf import OmegaConf

    from sentlab import modelcard
    from sentlab.config import compose

    cfg = compose([])
    lora = modelcard.method(cfg)
    assert lora.startswith("- method: lora") and f"LoRA r={cfg.lora.r}, alpha={cfg.lora.alpha}" in lora
    ia3 = OmegaConf.create(OmegaConf.to_container(cfg))  # not in struct mode: the method node replaced
    ia3.method = {"name": "ia3", "target_modules": ["key", "value"]}
    text = modelcard.method(ia3)
    assert text.startswith("- method: ia3: ") and "target_modules=['key', 'value']" in text and "LoRA" not in text
