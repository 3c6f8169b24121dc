"""The experiments sentlab creates are model-training experiments (MLflow 3's experiment kind), so that the MLflow
UI opens them on their runs, not on the GenAI view of traces."""

from __future__ import annotations

import mlflow
from omegaconf import OmegaConf

from sentlab import tags, tracking


def _tracking(tmp_path, name="sentlab"):
    return OmegaConf.create(
        {"uri": f"sqlite:///{tmp_path}/mlflow.db", "artifact_dir": str(tmp_path / "art"), "experiment": name}
    )


def _kind(experiment_id: str) -> str | None:
    return mlflow.MlflowClient().get_experiment(experiment_id).tags.get(tags.EXPERIMENT_KIND)


def test_a_new_experiment_is_a_model_training_experiment(tmp_path):
    experiment_id = tracking.connect(_tracking(tmp_path))
    assert _kind(experiment_id) == "custom_model_development"
    assert tracking.connect(_tracking(tmp_path)) == experiment_id  # found again, not created twice


def test_an_untagged_experiment_gets_the_kind_and_a_chosen_kind_is_kept(tmp_path):
    cfg = _tracking(tmp_path)
    mlflow.set_tracking_uri(cfg.uri)
    old = mlflow.create_experiment("old")  # as sentlab created them before
    chosen = mlflow.create_experiment("chosen", tags={tags.EXPERIMENT_KIND: "genai_development"})
    assert _kind(old) is None
    assert tracking.connect(_tracking(tmp_path, "old")) == old and _kind(old) == tags.MODEL_TRAINING
    assert tracking.connect(_tracking(tmp_path, "chosen")) == chosen and _kind(chosen) == "genai_development"
