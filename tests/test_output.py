"""What a run prints: sentlab's own story on stdout, nothing on stderr, every dependency's detail in train.log."""

from __future__ import annotations

import subprocess
import sys

import mlflow
from conftest import FAST, REPO, tiny_args

NOISE = (
    "kernels-community",
    "LOAD REPORT",
    "FutureWarning",
    "Map:",
    "text and label",
    "Loading weights",
    "Creating initial MLflow database tables",
)


def test_a_run_prints_its_own_story_only(tiny_models, tmp_path):
    run = subprocess.run(
        [sys.executable, "-m", "sentlab.train", *tiny_args(tiny_models, "bert"), *FAST, f"runs_dir={tmp_path}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert run.stderr == ""  # not a terminal: no progress bars either
    out = run.stdout
    for noise in NOISE:
        assert noise not in out, noise
    lines = out.splitlines()
    assert lines[0].startswith("data demo: train 48 (")  # rows and label balance per split
    assert lines[1].startswith("new classification head (classifier.bias, classifier.weight)")
    assert lines[2].startswith("model minilm (") and "trainable of" in lines[2]
    assert lines[3].startswith("epoch 1: val_loss=")
    assert lines[4] == "test (24 rows):" and lines[5].lstrip().startswith("accuracy ")
    assert [line.split()[0] for line in lines[7:10]] == ["negative", "neutral", "positive"]
    assert lines[-2].startswith("MLflow run ") and lines[-1].startswith(f"open it: make ui RUNS={tmp_path}")

    # The full detail is in the run's train.log, which is also an artifact of the MLflow run.
    (log_file,) = (tmp_path / "hydra").glob("*/train.log")
    detail = log_file.read_text()
    assert "LOAD REPORT" in detail and "is_gradient_checkpointing" in detail and "epoch 1: val_loss" in detail
    assert "kernels-community" not in detail  # bitsandbytes was never imported: no quantization was asked for
    run_id = lines[-2].split()[2]
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    logged = client.download_artifacts(run_id, "logs/train.log", str(tmp_path / "download"))
    assert "epoch 1: val_loss" in open(logged).read()


def test_bitsandbytes_comes_back_for_a_quantized_job_after_a_plain_one(tiny_models, tmp_path):
    """In a fresh process, a sweep job with quant=none hides bitsandbytes; the next job, quant=int8, still loads it
    and quantizes (no fallback to full precision)."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "sentlab.train",
            "-m",
            *tiny_args(tiny_models, "gpt_neox"),
            "head=generative_tweet",
            "data.label_words=[terrible,okay,great]",
            "quant=none,int8",
            *FAST,
            f"runs_dir={tmp_path}",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr
    client = mlflow.MlflowClient(f"sqlite:///{tmp_path}/mlflow.db")
    jobs = {r.data.params["quant.name"]: r for r in client.search_runs(["1"]) if "quant.name" in r.data.params}
    assert {name: job.info.status for name, job in jobs.items()} == {"none": "FINISHED", "int8": "FINISHED"}
    assert "sentlab.quant_fallback" not in jobs["int8"].data.tags
    assert jobs["int8"].data.metrics["trainable_params"] == jobs["none"].data.metrics["trainable_params"]
